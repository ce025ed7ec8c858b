"""The agent's pieces without nginx or supervisord: payload validation as the agent
reads it, release files, the current switch, pruning, the lock, TLS issuance, the systemd
strategy against a fake systemctl, rolling restart and rollback logic, `run`, and secret
redaction. Commands run the agent's zip archive, as hosts do."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent import processes, tls
from gin_deploy.agent.certs import CertTool, CryptographyCertTool, OpensslCertTool, utcnow
from gin_deploy.agent.cli import read_payload
from gin_deploy.agent.deploy import destroy
from gin_deploy.agent.layout import Layout, ensure_state_dir, save_state, state_lock
from gin_deploy.agent.nginx import SystemNginx, make_nginx, nginx_settle_seconds
from gin_deploy.agent.output import HostError, emit, log, set_secrets
from gin_deploy.agent.payload import DeployPayload, Instance, TargetPayload
from gin_deploy.agent.preflight import ensure_tools
from gin_deploy.agent.releases import (
    current_release,
    install_release,
    prune_releases,
    releases_to_prune,
    switch_current,
)
from gin_deploy.agent.rollout import Target, rollout
from gin_deploy.agent.supervisors import Systemd, make_supervisor, supervisor_groups
from tests.host.conftest import AGENT, free_ports, require, run_agent

pytestmark = [pytest.mark.host, pytest.mark.timeout(60)]


def parse_deploy(data: dict[str, Any]) -> DeployPayload:
    """The payload as the agent reads it from stdin."""
    return read_payload(DeployPayload, io.StringIO(json.dumps(data)))


def minimal(tmp_path: Path, **over: Any) -> dict[str, Any]:
    binary = tmp_path / "staged-app"
    if not binary.exists():
        binary.write_bytes(b"#!/bin/sh\necho hi\n")
    payload: dict[str, Any] = {
        "app": "hello-gin",
        "stateDir": str(tmp_path / "state"),
        "mode": "user",
        "supervisor": "supervisord",
        "release": {"id": "r1", "binary": str(binary),
                    "sha256": hashlib.sha256(binary.read_bytes()).hexdigest()},
        "env": {"A": "1", "DB_PASSWORD": "hunter2-secret"},
        "secretEnvKeys": ["DB_PASSWORD"],
        "instances": [{"name": "hello-gin-9080", "port": 9080}],
        "nginx": {"httpPort": 8080, "httpsPort": 8443, "site": "# site\n",
                  "main": "http { include x; }"},
        "supervisord": {"main": "[supervisord]\n", "programs": "[program:hello-gin-9080]\n"},
        "systemd": None,
        "tls": {"mode": "self-signed", "domains": ["localhost"]},
    }
    payload.update(over)
    return payload


# --------------------------------------------------------------------------- payload


def test_valid_payload_parses_with_defaults(tmp_path: Path) -> None:
    p = parse_deploy(minimal(tmp_path))
    assert p.ready_path == "/readyz" and p.ready_timeout_seconds == 30 and p.keep_releases == 5
    assert p.instances == (Instance("hello-gin-9080", 9080),)
    assert p.install is False and p.tls is not None and p.tls.mode == "self-signed"


@pytest.mark.parametrize(("change", "message"), [
    ({"app": "bad name"}, "app must match"),
    ({"stateDir": "relative/dir"}, "stateDir must be an absolute path"),
    ({"stateDir": "/"}, "stateDir must be a dedicated directory"),
    ({"mode": "cluster"}, "mode must be one of user, system"),
    ({"supervisor": "systemd", "systemd": {"unit": "x"}}, "systemd needs mode system"),
    ({"instances": []}, "instances must not be empty"),
    ({"instances": [{"name": "a", "port": 70000}]}, "instances[0].port must be in 1..65535"),
    ({"instances": [{"name": "a", "port": 1}, {"name": "b", "port": 1}]}, "unique ports"),
    ({"release": {"id": "../x", "binary": "/b", "sha256": "0" * 64}}, "release.id must match"),
    ({"release": {"id": "r", "binary": "/b", "sha256": "xyz"}},
     "release.sha256 must be 64 lowercase hex"),
    ({"nginx": {"httpPort": 1, "httpsPort": 1, "site": "s", "main": "m"}}, "must differ"),
    ({"nginx": {"httpPort": 1, "httpsPort": 2, "site": "s"}}, "nginx.main is required"),
    ({"supervisord": {"main": "m", "programs": "[program:other]"}},
     "has no [program:hello-gin-9080] section"),
    ({"tls": {"mode": "acme", "domains": ["a.example"]}}, "tls.email is required"),
    ({"tls": {"mode": "self-signed", "domains": ["bad domain"]}}, "invalid name"),
    ({"env": {"1BAD": "x"}}, "key '1BAD' must match"),
    ({"readyTimeoutSeconds": 0}, "readyTimeoutSeconds must be in 0.5..3600"),
    ({"readyTimeout": 3}, "readyTimeout is not a known field"),
])
def test_invalid_payload_names_the_field(tmp_path: Path, change: dict[str, Any],
                                         message: str) -> None:
    with pytest.raises(HostError) as err:
        parse_deploy(minimal(tmp_path, **change))
    assert message in str(err.value)
    assert str(err.value).startswith("invalid payload: ")


def test_a_relative_binary_path_is_taken_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Over SSH, files are staged relative to the login user's home.
    monkeypatch.chdir(tmp_path)
    data = minimal(tmp_path)
    data["release"] = {**data["release"], "binary": ".cache/gin-deploy/x/app"}
    p = parse_deploy(data)
    assert p.release is not None
    assert p.release.binary == str(tmp_path / ".cache/gin-deploy/x/app")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = minimal(tmp_path)
    del data["nginx"], data["tls"]
    with pytest.raises(HostError) as err:
        parse_deploy(data)
    assert "nginx is required" in str(err.value) and "tls is required" in str(err.value)


def test_destroy_needs_only_the_basics(tmp_path: Path) -> None:
    p = read_payload(TargetPayload, io.StringIO(json.dumps(
        {"app": "a", "stateDir": str(tmp_path / "s/"), "mode": "user",
         "supervisor": "supervisord", "instances": [{"name": "a-1", "port": 1000}]})))
    assert p == TargetPayload("a", str(tmp_path / "s"), "user", "supervisord",
                              (Instance("a-1", 1000),))


def test_cli_reports_missing_and_broken_payloads_with_exit_1(tmp_path: Path) -> None:
    proc = run_agent("deploy", None)
    assert proc.returncode == 1 and "no JSON payload on stdin" in proc.stderr
    proc = subprocess.run([sys.executable, str(AGENT), "deploy"], input="{nope",
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr
    assert proc.stdout == ""
    proc = run_agent("deploy", minimal(tmp_path, mode="cluster"))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("hostctl: error: invalid payload: mode must be one of")


def test_missing_tool_says_what_to_do(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing findable on PATH...
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from gin_deploy.agent import cli, processes; "
            "processes.SBIN_DIRS = (); sys.executable = '/nonexistent/python'; "
            "sys.exit(cli.main(['deploy']))")
    proc = subprocess.run([sys.executable, "-c", code, str(AGENT)],
                          input=json.dumps(minimal(tmp_path)), env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 1
    assert "nginx, supervisord, supervisorctl not found on host; install them or set " \
           "install: true" in proc.stderr


# --------------------------------------------------------------------------- releases


def test_release_install_verifies_sha_and_keeps_env_private(tmp_path: Path) -> None:
    p = parse_deploy(minimal(tmp_path))
    layout = Layout(p.state_dir)
    ensure_state_dir(layout)
    assert install_release(p, layout) is True
    app = Path(layout.release_app("r1"))
    assert app.stat().st_mode & 0o777 == 0o755
    env = Path(layout.release_env("r1"))
    assert env.stat().st_mode & 0o777 == 0o600
    assert json.loads(env.read_text()) == {"A": "1", "DB_PASSWORD": "hunter2-secret"}
    assert install_release(p, layout) is False  # idempotent

    bad = minimal(tmp_path)
    bad["release"] = {**bad["release"], "id": "r2", "sha256": "0" * 64}
    with pytest.raises(HostError, match=r"has sha256 .* expected 0{64}; upload it again"):
        install_release(parse_deploy(bad), layout)
    assert not Path(layout.release_dir("r2"), "app").exists()


def test_systemd_env_file_is_rendered_when_not_given(tmp_path: Path) -> None:
    data = minimal(tmp_path, mode="system", supervisor="systemd", supervisord=None,
                   systemd={"unit": "[Service]\n"})
    data["env"]["PORT"] = "1"
    data["env"]["Q"] = 'a"b$c'
    p = parse_deploy(data)
    layout = Layout(p.state_dir)
    ensure_state_dir(layout)
    install_release(p, layout)
    app_env = Path(layout.release_app_env("r1"))
    assert app_env.stat().st_mode & 0o777 == 0o600
    text = app_env.read_text()
    assert 'DB_PASSWORD="hunter2-secret"' in text and 'Q="a\\"b\\$c"' in text
    assert "PORT=" not in text


def test_current_switch_is_atomic(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path))
    for rid in ("a", "b"):
        os.makedirs(layout.release_dir(rid))
    switch_current(layout, "a")
    assert current_release(layout) == "a"
    missing = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not os.path.exists(layout.current):
                missing.append(1)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(300):
        switch_current(layout, "b" if i % 2 == 0 else "a")
    stop.set()
    t.join()
    assert not missing
    assert os.readlink(layout.current) == "releases/a"
    assert sorted(os.listdir(tmp_path)) == ["current", "releases"]  # no temp links left


def test_prune_keeps_newest_and_never_current_or_previous(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path))
    now = time.time()
    for i, rid in enumerate(["r0", "r1", "r2", "r3", "r4", "r5", "r6"]):
        os.makedirs(layout.release_dir(rid))
        os.utime(layout.release_dir(rid), (now - 100 + i, now - 100 + i))
    # r0 is current (an old release re-deployed? no: protected), r1 previous
    assert releases_to_prune(layout, 3, ("r0", "r1")) == ["r3", "r2"]
    assert prune_releases(layout, 3, ("r0", "r1")) == ["r3", "r2"]
    assert sorted(os.listdir(layout.releases)) == ["r0", "r1", "r4", "r5", "r6"]
    assert releases_to_prune(layout, 1, ("r6", None)) == ["r5", "r4", "r1", "r0"]


def _hold_lock(layout: Layout, seconds: float) -> subprocess.Popen[bytes]:
    """Another operation: a process holding the state lock (its pid inside) for a while."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); "
            "print('held', flush=True); time.sleep(float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", code, layout.lock, str(seconds)],
                              stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    return holder


def test_a_busy_lock_is_waited_for_with_a_notice_naming_the_holder(tmp_path: Path) -> None:
    """The holder lets go once the agent has said it waits (not after a fixed time, which
    a busy machine's slow agent start could outlast)."""
    data = minimal(tmp_path)
    layout = Layout(data["stateDir"])
    ensure_state_dir(layout)
    holder = _hold_lock(layout, 60)
    target = {k: data[k] for k in ("app", "instances", "mode", "stateDir", "supervisor")}
    agent = subprocess.Popen([sys.executable, str(AGENT), "destroy"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stdin is not None and agent.stderr is not None
        agent.stdin.write(json.dumps(target))
        agent.stdin.close()
        notice = agent.stderr.readline()
    finally:
        holder.kill()
        holder.wait()
    rest = agent.stderr.read()
    agent.wait(timeout=60)
    assert agent.stdout is not None
    agent.stdout.close()
    agent.stderr.close()
    assert f"waiting for another gin-deploy operation (pid {holder.pid}) holding " \
           f"{layout.lock} to finish" in notice, notice + rest
    assert agent.returncode == 0, notice + rest


def test_the_lock_is_private_and_names_its_holder(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    with state_lock(layout):
        assert stat.S_IMODE(os.stat(layout.lock).st_mode) == 0o600
        assert Path(layout.lock).read_text().strip() == str(os.getpid())


def test_a_lock_held_past_the_wait_fails_naming_the_holder(tmp_path: Path) -> None:
    data = minimal(tmp_path)
    layout = Layout(data["stateDir"])
    ensure_state_dir(layout)
    holder = _hold_lock(layout, 30)
    try:
        start = time.monotonic()
        proc = run_agent("deploy", data, timeout=20,
                         env={**os.environ, "GIN_DEPLOY_LOCK_WAIT": "1"})
        assert time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    assert f"another gin-deploy operation (pid {holder.pid}) holds {layout.lock}" in proc.stderr


def test_refuses_a_foreign_non_empty_state_dir(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "precious.txt").write_text("x")
    layout = Layout(str(tmp_path / "state"))
    with pytest.raises(HostError, match=r"has no \.gin-deploy marker"):
        ensure_state_dir(layout)
    proc = run_agent("destroy", {"app": "a", "stateDir": layout.state_dir, "mode": "user",
                                 "supervisor": "supervisord",
                                 "instances": [{"name": "a-1", "port": 1000}]})
    assert proc.returncode == 1 and "refusing to delete" in proc.stderr
    assert (tmp_path / "state" / "precious.txt").exists()


# --------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("backend", ["cryptography", "openssl"])
def test_self_signed_ca_is_reused_and_leaf_follows_domains(tmp_path: Path, backend: str) -> None:
    openssl = require("openssl")
    certs: CertTool = (CryptographyCertTool() if backend == "cryptography"
                               else OpensslCertTool())
    layout = Layout(str(tmp_path))
    ensure_state_dir(layout)
    cert, key, issued = tls.ensure_self_signed(layout, "app", ["api.example.com",
                                                                   "localhost"], certs)
    assert issued
    assert Path(layout.ca_key).stat().st_mode & 0o777 == 0o600
    assert Path(key).stat().st_mode & 0o777 == 0o600
    info = certs.inspect(cert)
    assert info.sans == {"DNS:api.example.com", "DNS:localhost", "IP:127.0.0.1"}
    assert 360 < (info.not_after - utcnow()).days <= 365
    verify = subprocess.run([openssl, "verify", "-CAfile", layout.ca_crt, cert],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    ca_text = subprocess.run([openssl, "x509", "-in", layout.ca_crt, "-noout", "-text"],
                             capture_output=True, text=True, check=True).stdout
    assert "CA:TRUE" in ca_text
    ca_before = Path(layout.ca_crt).read_bytes()
    leaf_before = Path(cert).read_bytes()

    assert tls.ensure_self_signed(layout, "app", ["localhost", "api.example.com"],
                                      certs)[2] is False
    assert Path(cert).read_bytes() == leaf_before
    assert tls.ensure_self_signed(layout, "app", ["localhost"], certs)[2] is True
    assert Path(layout.ca_crt).read_bytes() == ca_before  # the CA is created once
    assert certs.inspect(cert).sans == {"DNS:localhost", "IP:127.0.0.1"}


def test_leaf_close_to_expiry_is_reissued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(str(tmp_path))
    ensure_state_dir(layout)
    monkeypatch.setattr(tls, "LEAF_DAYS", 20)
    tls.ensure_self_signed(layout, "app", ["localhost"])
    monkeypatch.setattr(tls, "LEAF_DAYS", 365)
    assert tls.ensure_self_signed(layout, "app", ["localhost"])[2] is True
    assert tls.ensure_self_signed(layout, "app", ["localhost"])[2] is False


def test_stable_tls_paths_are_relative_symlinks(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path))
    ensure_state_dir(layout)
    cert, key, _ = tls.ensure_self_signed(layout, "app", ["localhost"])
    assert tls.point_tls(layout, cert, key) is True
    assert tls.point_tls(layout, cert, key) is False
    assert os.readlink(layout.server_crt) == "self-signed/server.crt"
    assert Path(layout.server_key).resolve() == Path(key).resolve()


# --------------------------------------------------------------------------- supervisors


def test_supervisor_groups_are_parsed() -> None:
    text = ("[group:hello-gin]\nprograms=hello-gin-1,hello-gin-2\n\n[program:hello-gin-1]\n"
            "command=x\n[program:hello-gin-2]\ncommand=y\n[program:lonely]\ncommand=z\n")
    groups = supervisor_groups(text)
    assert groups == {"hello-gin-1": "hello-gin", "hello-gin-2": "hello-gin"}
    multi = "[group:g]\nprograms=a,\n  b\n[program:a]\n"
    assert supervisor_groups(multi) == {"a": "g", "b": "g"}


class ReadyServer:
    """Tiny HTTP servers standing in for instances: /readyz answers 200 or 503."""

    def __init__(self, ports: list[int]) -> None:
        self.healthy = dict.fromkeys(ports, True)
        self.servers = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = owner.healthy[int(self.server.server_address[1])]  # type: ignore[index]
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        for port in ports:
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers.append(srv)

    def close(self) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()


FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{log}"
case "$1" in
  is-active) exit 0 ;;
esac
exit 0
"""


def unit_text(tmp_path: Path) -> str:
    return (f"# Generated by gin-deploy; local edits are overwritten.\n[Service]\n"
            f"ExecStart={tmp_path}/state/current/app\n")


@pytest.fixture
def systemd_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   ) -> Iterator[tuple[Target, Path, ReadyServer]]:
    fake = tmp_path / "fakebin"
    fake.mkdir()
    calls = tmp_path / "systemctl.log"
    (fake / "systemctl").write_text(FAKE_SYSTEMCTL.format(log=calls))
    (fake / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    ports = free_ports(3)
    data = minimal(tmp_path, mode="system", supervisor="systemd", supervisord=None,
                   systemd={"unit": unit_text(tmp_path),
                            "unitDir": str(tmp_path / "units")},
                   instances=[{"name": f"hello-gin-{p}", "port": p} for p in ports],
                   readyTimeoutSeconds=1)
    payload = parse_deploy(data)
    target = Target.create(payload)
    assert isinstance(target.supervisor, Systemd)
    ensure_state_dir(target.layout)
    for rid in ("old", "new"):
        os.makedirs(target.layout.release_dir(rid))
    switch_current(target.layout, "old")
    servers = ReadyServer(ports)
    try:
        yield target, calls, servers
    finally:
        servers.close()


def calls_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_systemd_strategy_writes_unit_enables_and_cleans_up(
        systemd_target: tuple[Target, Path, ReadyServer]) -> None:
    target, calls, _ = systemd_target
    ports = [i.port for i in target.payload.instances]
    assert target.supervisor.apply() is True
    unit = Path(target.supervisor.conf_dir, "hello-gin@.service")
    assert unit.read_text() == target.payload.systemd.unit  # type: ignore[union-attr]
    assert calls_of(calls) == ["daemon-reload", *[f"enable hello-gin@{p}.service" for p in ports]]
    assert target.supervisor.apply() is False  # unchanged unit
    # an instance dropped from the payload is disabled and stopped
    save_state(target.layout, {"instances": [{"name": "old", "port": 1234}]})
    calls.unlink()
    target.supervisor.apply()
    assert "disable --now hello-gin@1234.service" in calls_of(calls)
    calls.unlink()
    target.supervisor.destroy(target.payload.instances)
    assert calls_of(calls) == [*[f"disable --now hello-gin@{p}.service" for p in ports],
                               "daemon-reload"]
    assert not unit.exists()


def test_destroy_finds_the_system_files_where_the_last_deploy_put_them(
        systemd_target: tuple[Target, Path, ReadyServer], tmp_path: Path) -> None:
    # The destroy payload names no directories; state.json remembers them.
    target, calls, _ = systemd_target
    target.supervisor.apply()
    unit = tmp_path / "units" / "hello-gin@.service"
    assert unit.exists()
    instances = [{"name": i.name, "port": i.port} for i in target.payload.instances]
    save_state(target.layout, {"app": "hello-gin", "mode": "system", "supervisor": "systemd",
                               "instances": instances,
                               "supervisorConfDir": str(tmp_path / "units"),
                               "nginxConfDir": str(tmp_path / "conf.d")})
    p = target.payload
    result = destroy(TargetPayload(p.app, p.state_dir, p.mode, p.supervisor, p.instances))
    assert result["destroyed"] and not unit.exists()
    assert f"disable --now hello-gin@{instances[0]['port']}.service" in calls_of(calls)


def test_rolling_restart_goes_one_by_one_through_systemctl(
        systemd_target: tuple[Target, Path, ReadyServer]) -> None:
    target, calls, _ = systemd_target
    ports = [i.port for i in target.payload.instances]
    assert rollout(target, "new", "old", force=False) is True
    restarts = [c for c in calls_of(calls) if c.startswith("restart")]
    assert restarts == [f"restart hello-gin@{p}.service" for p in ports]
    assert current_release(target.layout) == "new"
    calls.unlink()
    # same release, everything ready: nothing is restarted
    assert rollout(target, "new", "new", force=False) is False
    assert not [c for c in calls_of(calls) if c.startswith("restart")]


def test_failed_instance_rolls_back_the_restarted_ones(
        systemd_target: tuple[Target, Path, ReadyServer],
        capsys: pytest.CaptureFixture[str]) -> None:
    target, calls, servers = systemd_target
    ports = [i.port for i in target.payload.instances]
    servers.healthy[ports[1]] = False
    log_file = Path(target.layout.logs, f"hello-gin-{ports[1]}.log")
    log_file.write_text("".join(f"line {i} hunter2-secret\n" for i in range(30)))
    with pytest.raises(HostError) as err:
        rollout(target, "new", "old", force=False)
    message = str(err.value)
    assert message.startswith(f"instance hello-gin-{ports[1]} (http://127.0.0.1:{ports[1]}"
                              f"/readyz) was not ready within 1s; rolled back to release old")
    assert f"--- last 20 lines of {log_file} ---" in message
    assert "line 29" in message and "line 9 " not in message
    assert current_release(target.layout) == "old"
    restarts = [c for c in calls_of(calls) if c.startswith("restart")]
    assert restarts == [f"restart hello-gin@{p}.service" for p in
                        (ports[0], ports[1], ports[0], ports[1])]
    # the secret never reaches the output
    log(message)
    assert "hunter2-secret" not in capsys.readouterr().err


def test_redaction_masks_every_secret_value(capsys: pytest.CaptureFixture[str]) -> None:
    set_secrets(["pa55word", "longer-pa55word-value"])
    try:
        log("a longer-pa55word-value b pa55word")
        emit({"x": "pa55word"})
    finally:
        set_secrets([])
    out = capsys.readouterr()
    assert "pa55word" not in out.err + out.out
    assert out.err == "hostctl: a *** b ***\n" and json.loads(out.out) == {"x": "***"}


# --------------------------------------------------------------------------- run


def test_run_execs_the_current_release_with_its_env(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    rdir = Path(layout.release_dir("r1"))
    rdir.mkdir()
    out = tmp_path / "env.out"
    (rdir / "app").write_text(f'#!/bin/sh\necho "$$ $PWD" > {out}\nenv >> {out}\n')
    (rdir / "app").chmod(0o755)
    (rdir / "env.json").write_text(json.dumps({"GREETING": "hi there", "PORT": "1"}))
    switch_current(layout, "r1")
    proc = subprocess.Popen([sys.executable, str(AGENT), "run", "--state",
                             layout.state_dir, "--port", "9099", "--name", "hello-gin-9099"])
    assert proc.wait(timeout=20) == 0
    lines = out.read_text().splitlines()
    pid, cwd = lines[0].split(" ", 1)
    assert int(pid) == proc.pid  # exec, not a child: supervisord signals the app itself
    assert cwd == str(rdir)
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert env["GREETING"] == "hi there"
    assert env["PORT"] == "9099" and env["BIND_ADDR"] == "127.0.0.1"
    assert env["INSTANCE_ID"] == "hello-gin-9099"


def test_run_without_a_release_fails_clearly(tmp_path: Path) -> None:
    proc = run_agent("run", None, "--state", str(tmp_path), "--port", "1", "--name", "x")
    assert proc.returncode == 1
    assert f"{tmp_path}/current does not exist; deploy a release first" in proc.stderr


# --------------------------------------------------------------------------- more pieces


def test_settle_time_follows_the_upstream_failure_settings() -> None:
    site = ("upstream a_backend {\n    least_conn;\n"
            "    server 127.0.0.1:1 weight=1 max_fails=2 fail_timeout=5s;\n"
            "    server 127.0.0.1:2 max_fails=2 fail_timeout=30s backup;\n    keepalive 3;\n}\n"
            "server { listen 80; }\n")
    assert nginx_settle_seconds(site) == 5
    assert nginx_settle_seconds("upstream b { server x:1; }") == 10  # nginx defaults
    assert nginx_settle_seconds("upstream b { server x:1 max_fails=0; }") == 0
    assert nginx_settle_seconds("upstream b { server x:1 fail_timeout=500ms; }") == 0.5


def test_log_tail_skips_rotated_and_other_instances_logs(tmp_path: Path) -> None:
    p = parse_deploy(minimal(tmp_path))
    layout = Layout(p.state_dir)
    ensure_state_dir(layout)
    for name in ("hello-gin-9080.log", "hello-gin-9080.err.log", "hello-gin-9080.log.1",
                 "hello-gin-90801.log"):
        Path(layout.logs, name).write_text(f"from {name}\n")
    sup = make_supervisor(p, layout)
    files = [Path(f).name for f in sup.log_files(p.instances[0])]
    assert files == ["hello-gin-9080.err.log", "hello-gin-9080.log"]


def test_install_true_uses_apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("install: true needs root")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    calls = tmp_path / "apt.log"
    (fake / "apt-get").write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1] == 'install':\n"
        "    for tool in ('nginx', 'supervisord', 'supervisorctl'):\n"
        f"        path = os.path.join({str(fake)!r}, tool)\n"
        "        open(path, 'w').write('#!/bin/sh\\n')\n"
        "        os.chmod(path, 0o755)\n")
    (fake / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    monkeypatch.setattr(processes, "SBIN_DIRS", ())
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python3"))
    p = parse_deploy(minimal(tmp_path, install=True))
    ensure_tools(p)
    assert calls.read_text().splitlines() == ["update -q", "install -y -q nginx supervisor"]
    (fake / "nginx").unlink()
    p = parse_deploy(minimal(tmp_path))
    with pytest.raises(HostError, match="nginx not found on host; install it or set"):
        ensure_tools(p)


FAKE_NGINX = """#!{python}
import glob, json, os, re, sys
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(" ".join(args) + "\\n")
if args[0] == "-t":
    conf = args[args.index("-c") + 1] if "-c" in args else {main!r}
    pattern = re.search(r"include\\s+(\\S+?);", open(conf).read()).group(1)
    files = {{os.path.basename(f): open(f).read() for f in sorted(glob.glob(pattern))}}
    live = open({site!r}).read() if os.path.exists({site!r}) else None
    with open({seen!r}, "a") as fh:
        fh.write(json.dumps({{"validated": files, "live": live}}) + "\\n")
    if any("BROKEN" in text for text in files.values()):
        print('nginx: [emerg] unknown directive "BROKEN"', file=sys.stderr)
        sys.exit(1)
"""


def _site(tmp_path: Path, body: str) -> str:
    return (f"# Generated by gin-deploy for \"x\"; local edits are overwritten.\n{body}\n"
            f"ssl_certificate {tmp_path}/state/tls/server.crt;\n")


@pytest.fixture
def system_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SystemNginx, Path]:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "neighbour.conf").write_text("# another site\n")
    main = tmp_path / "nginx.conf"
    main.write_text(f"http {{\n    include {conf_d}/*.conf;\n}}\n")
    site_path = conf_d / "gin-deploy-p-s-hello-gin.conf"
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "nginx").write_text(FAKE_NGINX.format(
        python=sys.executable, log=str(tmp_path / "nginx.log"), main=str(main),
        site=str(site_path), seen=str(tmp_path / "seen.jsonl")))
    (fake / "nginx").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(processes, "SBIN_DIRS", ())
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # "running"
    monkeypatch.setattr(SystemNginx, "PID_FILE", str(pid_file))
    monkeypatch.setattr(SystemNginx, "MAIN_CONF", str(main))
    monkeypatch.setattr(SystemNginx, "master_pid", lambda self: None)
    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    nginx = make_nginx(layout, "system", "hello-gin", str(conf_d), "gin-deploy-p-s-hello-gin")
    assert isinstance(nginx, SystemNginx) and nginx.site_path == str(site_path)
    return nginx, tmp_path


def _seen(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]


def test_system_nginx_validates_a_staged_config_before_the_site_goes_live(
        system_nginx: tuple[SystemNginx, Path]) -> None:
    """Before: the site was written into the live conf.d, then tested, then put back on
    failure; a reload by anyone else in between loaded an unvalidated site."""
    nginx, tmp_path = system_nginx
    site_path = Path(nginx.site_path)
    good = _site(tmp_path, "server { good; }")
    assert nginx.apply(good, "") is True
    assert site_path.read_text() == good and stat.S_IMODE(site_path.stat().st_mode) == 0o600
    first = _seen(tmp_path)[-1]
    assert first["live"] is None  # validated while nothing was live yet
    assert first["validated"] == {"neighbour.conf": "# another site\n",
                                  site_path.name: good}
    calls = (tmp_path / "nginx.log").read_text().splitlines()
    assert calls[0].startswith("-t -c ") and calls[-1] == "-s reload"
    broken = _site(tmp_path, "BROKEN;")
    for attempt in (nginx.apply, nginx.check):
        with pytest.raises(HostError, match='unknown directive "BROKEN"'):
            attempt(broken, "")
        assert _seen(tmp_path)[-1]["live"] == good  # the live site never was the bad one
        assert site_path.read_text() == good
    assert (tmp_path / "nginx.log").read_text().splitlines()[-1].startswith("-t -c ")
    # nothing staged is left where nginx could pick it up
    assert sorted(p.name for p in site_path.parent.iterdir()) == [
        "gin-deploy-p-s-hello-gin.conf", "neighbour.conf"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".staged.conf")]
    nginx.remove()
    assert not site_path.exists() and (site_path.parent / "neighbour.conf").exists()


def test_system_nginx_refuses_a_site_file_that_is_not_ours(
        system_nginx: tuple[SystemNginx, Path]) -> None:
    nginx, tmp_path = system_nginx
    site_path = Path(nginx.site_path)
    site_path.write_text("# hand-written\nserver { }\n")
    with pytest.raises(HostError, match=r"refusing to overwrite .* not generated by gin-deploy"):
        nginx.apply(_site(tmp_path, "server { good; }"), "")
    nginx.remove()
    assert site_path.read_text() == "# hand-written\nserver { }\n"


def test_renew_loop_runs_certbot_renew_repeatedly(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    os.makedirs(layout.acme_dir("config"))
    fake = tmp_path / "fakebin"
    fake.mkdir()
    calls = tmp_path / "certbot.log"
    (fake / "certbot").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    (fake / "certbot").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, str(AGENT), "renew-loop", "--state",
                             layout.state_dir, "--interval-seconds", "0.2"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(calls_of(calls)) < 2:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = calls_of(calls)
    assert len(lines) >= 2
    assert lines[0].startswith(f"renew --config-dir {layout.state_dir}/acme/config ")
    assert "--deploy-hook" in lines[0] and "--non-interactive" in lines[0]


@pytest.mark.parametrize(("challenge", "plugins", "expected"), [
    ("http-01", "", ["--webroot", "-w"]),
    ("dns-01-route53", "* dns-route53\nDescription: Obtain certificates using a DNS TXT "
     "record (if you are using AWS Route53 for DNS).", ["--dns-route53"]),
])
def test_certbot_uses_the_challenge_the_payload_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, challenge: str, plugins: str,
        expected: list[str]) -> None:
    from gin_deploy.agent import tls as agent_tls
    from gin_deploy.agent.payload import AcmeTls

    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    calls: list[list[str]] = []

    def fake_run(args: list[str], what: str, **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        return subprocess.CompletedProcess(args, 0, plugins if "plugins" in args else "", "")

    monkeypatch.setattr(agent_tls, "run_cmd", fake_run)
    monkeypatch.setattr(agent_tls, "tool", lambda name: f"/usr/bin/{name}")
    agent_tls.acme_obtain(layout, AcmeTls(
        domains=("api.example.com",), email="ops@example.com",
        server="https://acme.example/dir", webroot=f"{layout.state_dir}/acme/webroot",
        challenge=challenge))  # type: ignore[arg-type]
    certonly = next(c for c in calls if "certonly" in c)
    assert certonly[2:2 + len(expected)] == expected
    assert ("--webroot" in certonly) == (challenge == "http-01")


def test_dns01_without_the_route53_plugin_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gin_deploy.agent import tls as agent_tls
    from gin_deploy.agent.payload import AcmeTls

    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    monkeypatch.setattr(agent_tls, "run_cmd", lambda args, what, **_: subprocess.CompletedProcess(
        args, 0, "* webroot\n* standalone\n", ""))
    monkeypatch.setattr(agent_tls, "tool", lambda name: f"/usr/bin/{name}")
    with pytest.raises(HostError, match="python3-certbot-dns-route53"):
        agent_tls.acme_obtain(layout, AcmeTls(
            domains=("api.example.com",), email="ops@example.com",
            server="https://acme.example/dir", webroot=f"{layout.state_dir}/acme/webroot",
            challenge="dns-01-route53"))


def test_systemd_units_are_named_after_the_stack_and_renew_on_a_timer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `app.name: user` wrote and then deleted systemd's own user@.service."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    calls = tmp_path / "systemctl.log"
    (fake / "systemctl").write_text(FAKE_SYSTEMCTL.format(log=calls))
    (fake / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    units = tmp_path / "units"
    units.mkdir()
    systemds_own = units / "user@.service"
    systemds_own.write_text("[Unit]\nDescription=User Manager for UID %i\n")
    head = f"# Generated by gin-deploy; local edits are overwritten.\n# {tmp_path}/state/x\n"
    data = minimal(tmp_path, app="user", mode="system", supervisor="systemd",
                   supervisord=None, name="gin-deploy-p-s-user",
                   instances=[{"name": "user-9080", "port": 9080}],
                   systemd={"unit": head, "unitDir": str(units),
                            "renewService": head + "[Service]\n",
                            "renewTimer": head + "[Timer]\n"})
    target = Target.create(parse_deploy(data))
    ensure_state_dir(target.layout)
    target.supervisor.apply()
    assert sorted(p.name for p in units.iterdir()) == [
        "gin-deploy-p-s-user-renew.service", "gin-deploy-p-s-user-renew.timer",
        "gin-deploy-p-s-user@.service", "user@.service"]
    assert "enable gin-deploy-p-s-user@9080.service" in calls_of(calls)
    assert "enable --now gin-deploy-p-s-user-renew.timer" in calls_of(calls)
    target.supervisor.destroy(target.payload.instances)
    assert sorted(p.name for p in units.iterdir()) == ["user@.service"]
    assert "disable --now gin-deploy-p-s-user-renew.timer" in calls_of(calls)
    assert not [c for c in calls_of(calls) if "user@9080" in c and "gin-deploy" not in c]
