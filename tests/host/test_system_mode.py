"""System mode for real, as root on this machine: the host's own supervisord and nginx
(started here if they are not running, and stopped again by pid), each stack with its own
project/stack names so nothing of the host is touched. Issue 16: the app never runs as
root, stacks never meet each other's files, foreign files are refused, old-named files
move, and ACME renewals are scheduled and reload nginx without a failed request. Issue 14
under those names: a canary's candidates run like the instances."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent.payload import (
    AcmeTls,
    DeployPayload,
    Instance,
    Release,
    Rollout,
    SelfSignedTls,
    serialise,
)
from gin_deploy.agent.processes import pid_alive, read_pid
from gin_deploy.render.host import (
    HostService,
    access_log_path,
    candidate_share_dir,
    instance_name,
    render_host_files,
)
from tests.host.conftest import (
    Binary,
    Load,
    free_ports,
    kill_target,
    port_free,
    require,
    result_of,
    run_agent,
    wait_for,
)
from tests.host.test_acme_pebble import (
    DOMAIN,
    EMAIL,
    PinnedLoad,
    served_cert,
    start_pebble,
    stop_pebble,
)

pytestmark = [pytest.mark.host, pytest.mark.timeout(180),
              pytest.mark.skipif(os.geteuid() != 0, reason="system mode needs root")]

SUPERVISORD_CONF = "/etc/supervisor/supervisord.conf"
SUPERVISORD_PID = "/var/run/supervisord.pid"
NGINX_PID = "/run/nginx.pid"
CONF_D = Path("/etc/nginx/conf.d")
PROGRAMS_D = Path("/etc/supervisor/conf.d")


@pytest.fixture(scope="module")
def system_daemons() -> Iterator[None]:
    """The host's supervisord and nginx; whatever this fixture (or the agent) started is
    stopped again by its pid, nothing else."""
    for tool in ("nginx", "supervisord", "supervisorctl", "useradd", "userdel"):
        require(tool)
    if not Path(SUPERVISORD_CONF).exists():
        pytest.skip(f"{SUPERVISORD_CONF} does not exist")
    nginx_before = pid_alive(read_pid(NGINX_PID))
    if not nginx_before and not port_free(80):
        pytest.skip("the system nginx is not running and port 80 (its default site) is busy")
    started_supervisord = None
    if not pid_alive(read_pid(SUPERVISORD_PID)):
        subprocess.run([require("supervisord"), "-c", SUPERVISORD_CONF], check=True,
                       timeout=30)
        assert wait_for(lambda: pid_alive(read_pid(SUPERVISORD_PID)), 10)
        started_supervisord = read_pid(SUPERVISORD_PID)
        assert wait_for(lambda: subprocess.run(
            [require("supervisorctl"), "pid"], capture_output=True, text=True,
            check=False).stdout.strip().isdigit(), 15)
    try:
        yield
    finally:
        nginx_now = read_pid(NGINX_PID)
        if not nginx_before and nginx_now and pid_alive(nginx_now):
            os.kill(nginx_now, signal.SIGQUIT)
            wait_for(lambda: not pid_alive(nginx_now), 15)
        if started_supervisord:
            os.kill(started_supervisord, signal.SIGTERM)
            wait_for(lambda: not pid_alive(started_supervisord), 30)


@dataclass
class SysStack:
    """One system-mode target: a unique project/stack name, its own ports and state dir."""

    root: Path
    service: HostService
    binaries: dict[str, Binary]
    tls_ca: str | None = None  # PEM the HTTPS client trusts (default: the stack's CA)
    acme: AcmeTls | None = None

    @property
    def state_dir(self) -> Path:
        return Path(self.service.state_dir)

    @property
    def https_port(self) -> int:
        return self.service.https_port

    def payload(self, version: str = "v1", name: str | None = "default") -> dict[str, Any]:
        s = self.service
        files = render_host_files(s)
        binary = self.binaries[version]
        payload = DeployPayload(
            app=s.app, state_dir=s.state_dir, mode="system", supervisor="supervisord",
            instances=tuple(Instance(instance_name(s.app, p), p) for p in s.instance_ports),
            release=Release(id=f"{version}-0", binary=str(binary.path), sha256=binary.sha256),
            nginx=files.nginx, supervisord=files.supervisord,
            tls=self.acme or SelfSignedTls(("localhost",)),
            env={"GIN_MODE": "release", "SHUTDOWN_TIMEOUT": "2s",
                 "TRUSTED_PROXIES": "127.0.0.1/32", "DB_PASSWORD": "s3cret-value"},
            secret_env_keys=("DB_PASSWORD",), ready_timeout_seconds=20,
            name=s.system_name if name == "default" else name,
            rollout=Rollout(
                strategy="canary", steps=(50, 100), bake_seconds=2, min_requests=20,
                candidates=tuple(Instance(instance_name(s.app, p), p)
                                 for p in s.candidate_ports),
                access_log=access_log_path(s.state_dir),
                share_dir=candidate_share_dir(s.state_dir)) if s.candidate_ports else Rollout(),
        )
        data: dict[str, Any] = json.loads(serialise(payload))
        return data

    def deploy(self, **kw: Any) -> dict[str, Any]:
        return result_of(run_agent("deploy", self.payload(**kw), timeout=300))

    def destroy(self) -> subprocess.CompletedProcess[str]:
        s = self.service
        return run_agent("destroy", {
            "app": s.app, "stateDir": s.state_dir, "mode": "system",
            "supervisor": "supervisord",
            "instances": [{"name": instance_name(s.app, p), "port": p}
                          for p in s.instance_ports]})

    def files(self) -> list[Path]:
        """Every system file this stack may have made (new and old names)."""
        names = (self.service.system_name, f"gin-deploy-{self.service.app}")
        return [d / f"{n}.conf" for d in (CONF_D, PROGRAMS_D) for n in names]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(
            cadata=self.tls_ca or (self.state_dir / "tls" / "ca.crt").read_text())

    def get(self, path: str = "/healthz") -> int:
        import http.client

        conn = http.client.HTTPSConnection("localhost", self.https_port,
                                           context=self.tls_context(), timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()

    def instance_pids(self) -> dict[str, int]:
        out = subprocess.run([require("supervisorctl"), "status"], capture_output=True,
                             text=True, check=False).stdout
        pids = {}
        for line in out.splitlines():
            parts = line.split()
            name = parts[0].split(":")[-1] if parts else ""
            if name.startswith(f"{self.service.app}-") and "pid" in parts:
                pids[name] = int(parts[parts.index("pid") + 1].rstrip(","))
        return pids


@pytest.fixture
def make_sys_stack(system_daemons: None, binaries: dict[str, Binary]) -> Iterator[Any]:
    made: list[SysStack] = []

    def make(app: str | None = None, stack: str | None = None, acme: bool = False,
             instances: int = 2, canary: bool = False) -> SysStack:
        root = Path(tempfile.mkdtemp(prefix="hostctl-sys-"))
        root.chmod(0o755)  # the app's account and nginx's workers traverse it
        ports = free_ports(instances * (2 if canary else 1) + 2)
        service = HostService(
            app=app or f"hg{secrets.token_hex(3)}", stack=stack or "t", target="host",
            state_dir=str(root / "state"), mode="system", supervisor="supervisord",
            instance_ports=tuple(ports[:instances]), http_port=ports[-2],
            https_port=ports[-1], server_names=("localhost",), acme=acme, shutdown_timeout=2,
            project="test16",
            candidate_ports=tuple(ports[instances:2 * instances]) if canary else ())
        made.append(SysStack(root, service, binaries))
        return made[-1]

    yield make
    for st in made:
        if st.state_dir.exists():
            with contextlib.suppress(Exception):
                st.destroy()
        kill_target(st.state_dir)
        for path in st.files():
            if path.exists() and str(st.state_dir) in path.read_text(errors="replace"):
                path.unlink()
        with contextlib.suppress(KeyError):
            pwd.getpwnam(st.service.account)
            subprocess.run([require("userdel"), st.service.account], check=False)
        shutil.rmtree(st.root, ignore_errors=True)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


# --------------------------------------------------------------------------- 16.1


def test_the_app_runs_as_its_own_unprivileged_account(make_sys_stack: Any) -> None:
    """Before: the host's supervisord ran the app as root, with its secrets, and its logs
    were world-readable."""
    st = make_sys_stack()
    result = st.deploy()
    assert [i["ready"] for i in result["instances"]] == [True, True]
    assert st.get() == 200
    account = pwd.getpwnam(st.service.account)
    pids = st.instance_pids()
    assert len(pids) == 2
    for pid in pids.values():
        status = proc_status(pid)
        assert status["Uid"].split() == [str(account.pw_uid)] * 4, status["Uid"]
        assert status["Umask"] == "0077"
    assert account.pw_uid != 0 and account.pw_shell.endswith("nologin")
    logs = st.state_dir / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    env = next((st.state_dir / "releases").glob("*/env.json"))
    assert stat.S_IMODE(env.stat().st_mode) == 0o640
    assert (env.stat().st_uid, env.stat().st_gid) == (0, account.pw_gid)
    # a redeploy changes nothing (env.json keeps its owner and mode)
    assert st.deploy()["changed"] is False


def test_a_canary_runs_its_candidates_as_the_app_and_the_host_nginx_sends_them_requests(
        make_sys_stack: Any) -> None:
    """The candidates follow the system names and accounts: programs of the target's own
    file in the group `<name>-candidates`, never started by supervisord itself, run as the
    app's account with umask 077; the host's nginx (unprivileged workers) reads the share
    files in the state dir, so the steps are judged on real requests."""
    st = make_sys_stack(canary=True)
    st.deploy()
    name = st.service.system_name
    assert f"[group:{name}-candidates]" in (PROGRAMS_D / f"{name}.conf").read_text()
    candidates = {instance_name(st.service.app, p) for p in st.service.candidate_ports}
    assert not candidates & set(st.instance_pids())
    account = pwd.getpwnam(st.service.account)
    seen: dict[str, dict[str, str]] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for program, pid in st.instance_pids().items():
                if program in candidates and program not in seen:
                    with contextlib.suppress(OSError):
                        seen[program] = proc_status(pid)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with Load(st, "/whoami") as load:
            result = st.deploy(version="v2")
    finally:
        stop.set()
        watcher.join(10)
    assert result["strategy"] == "canary", result
    assert [s["percent"] for s in result["steps"]] == [50, 100]
    assert all(s["requests"] >= 20 and s["errors"] == 0 for s in result["steps"]), result
    assert not load.failures, load.failures
    assert candidates <= set(load.instances), load.instances
    assert set(seen) == candidates
    for status in seen.values():
        assert status["Uid"].split() == [str(account.pw_uid)] * 4, status["Uid"]
        assert status["Umask"] == "0077"
    assert not candidates & set(st.instance_pids())  # stopped once promoted
    assert result_of(st.destroy())["destroyed"]
    assert not (PROGRAMS_D / f"{name}.conf").exists()


# --------------------------------------------------------------------------- 16.4


def test_two_stacks_with_the_same_app_keep_to_their_own_files(make_sys_stack: Any) -> None:
    """Before: both wrote gin-deploy-<app>.conf; the second overwrote the first's site and
    programs, and destroying one took the other's down."""
    first = make_sys_stack(stack="blue")
    second = make_sys_stack(app=first.service.app, stack="green")
    first.deploy()
    second.deploy()
    assert first.get() == 200 and second.get() == 200
    for st in (first, second):
        assert (CONF_D / f"{st.service.system_name}.conf").exists()
        assert (PROGRAMS_D / f"{st.service.system_name}.conf").exists()
    assert first.service.account != second.service.account
    assert result_of(first.destroy())["destroyed"]
    assert not (CONF_D / f"{first.service.system_name}.conf").exists()
    assert second.get() == 200
    assert len(second.instance_pids()) == 2


def test_a_file_that_is_not_ours_is_neither_overwritten_nor_removed(
        make_sys_stack: Any) -> None:
    st = make_sys_stack()
    foreign = PROGRAMS_D / f"{st.service.system_name}.conf"
    foreign.write_text("; the admin's own programs\n")
    try:
        proc = run_agent("deploy", st.payload(), timeout=300)
        assert proc.returncode == 1
        assert f"refusing to overwrite {foreign}: it was not generated by gin-deploy" \
            in proc.stderr
        assert foreign.read_text() == "; the admin's own programs\n"
        st.destroy()
        assert foreign.read_text() == "; the admin's own programs\n"
    finally:
        foreign.unlink()


def test_a_stack_deployed_under_the_old_names_moves_to_the_new_ones(
        make_sys_stack: Any) -> None:
    st = make_sys_stack()
    old_site = CONF_D / f"gin-deploy-{st.service.app}.conf"
    old_programs = PROGRAMS_D / f"gin-deploy-{st.service.app}.conf"
    # What today's main deployed: no name in the payload, files named after the app.
    old = render_host_files(replace(st.service, project="", stack=""))
    data = st.payload(name=None)
    data["nginx"]["site"] = old.nginx.site
    assert old.supervisord is not None  # and before 16.1, no account of its own
    data["supervisord"]["programs"] = "".join(
        line for line in old.supervisord.programs.splitlines(keepends=True)
        if not line.startswith(("user=", "umask=")))
    del data["supervisord"]["user"]
    result_of(run_agent("deploy", data, timeout=300))
    assert old_site.exists() and old_programs.exists()
    assert st.get() == 200
    st.deploy()
    assert not old_site.exists() and not old_programs.exists()
    assert (CONF_D / f"{st.service.system_name}.conf").exists()
    assert st.get() == 200 and len(st.instance_pids()) == 2
    assert result_of(st.destroy())["destroyed"]
    assert not (CONF_D / f"{st.service.system_name}.conf").exists()


# --------------------------------------------------------------------------- 16.3


def test_acme_in_system_mode_keeps_renewing_and_a_renewal_reloads_without_failures(
        make_sys_stack: Any) -> None:
    """Before: only user mode had a renewal loop, and certbot's private --config-dir hides
    these certificates from the distro's timer: a system-mode host served an expired
    certificate after 90 days."""
    require("certbot")
    st = make_sys_stack(acme=True)
    pebble = start_pebble(st.root / "pebble", st.service.http_port)
    try:
        st.acme = AcmeTls(domains=(DOMAIN,), email=EMAIL, server=pebble.directory,
                          ca_bundle=pebble.tls_ca, webroot=f"{st.state_dir}/acme/webroot")
        st.deploy()
        root = pebble.root()
        before = served_cert(st, root)
        # The renewal is scheduled: a program of the host's supervisord, as root (certbot's
        # files and nginx's reload), running this target's renew loop.
        renew_program = f"{st.service.system_name}-certbot-renew"
        status = subprocess.run([require("supervisorctl"), "status"], capture_output=True,
                                text=True, check=False).stdout
        line = next(ln for ln in status.splitlines() if renew_program in ln.split()[0])
        assert line.split()[1] == "RUNNING", line
        pid = int(line.split("pid ")[1].split(",")[0])
        assert proc_status(pid)["Uid"].split()[0] == "0"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert [b"renew-loop", b"--state", str(st.state_dir).encode()] == cmdline[2:5]

        master = read_pid(NGINX_PID)
        start = time.monotonic()
        with PinnedLoad(st, root) as load:  # type: ignore[arg-type]
            time.sleep(1.5)
            # what the loop runs, forced
            renew = run_agent("renew", None, "--state", str(st.state_dir), "--force",
                              timeout=120)
            time.sleep(max(1.5, 8 - (time.monotonic() - start)))
        assert renew.returncode == 0, renew.stderr
        assert not load.failures, load.summary()
        assert load.ok["fresh"] > 50 and load.ok["keepalive"] > 100, load.summary()
        after = served_cert(st, root)
        assert after.serial_number != before.serial_number
        assert after.serial_number == pebble.issued()[-1]
        assert read_pid(NGINX_PID) == master  # reloaded by the deploy hook, not restarted
        assert result_of(st.destroy())["destroyed"]
        assert renew_program not in subprocess.run(
            [require("supervisorctl"), "status"], capture_output=True, text=True,
            check=False).stdout
    finally:
        stop_pebble(pebble)
