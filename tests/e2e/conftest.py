"""End-to-end fixtures: the real Pulumi CLI, a throwaway copy of the project, a temp backend.

Nothing here mocks the engine. Each test project is a copy of this repository
(so stack files written by `pulumi stack init` never touch the checkout) with
`.venv` linked in, its own file backend and passphrase, and hosts whose state
directories and ports are private to the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gin_deploy import automation
from tests.net import free_ports

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "build", ".pulumi-state", ".pulumi-passphrase", "__pycache__",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", "bench", "Pulumi.*.yaml",
)


def require_cli() -> None:
    if not (TOOLS / "bin" / "pulumi").exists():
        pytest.fail("the Pulumi CLI is missing from .tools/bin: run scripts/setup.sh")


def consecutive_free_ports(n: int) -> int:
    """A base port with n free ports after it (instances use basePort..basePort+n-1)."""
    for _ in range(200):
        base = free_ports(1)[0]
        if base + n > 65535:
            continue
        try:
            socks = []
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


@dataclass
class Project:
    """A private copy of gin-deploy with its own backend, passphrase and host ports."""

    root: Path
    state_dir: Path
    settings: automation.Settings
    https_port: int
    http_port: int
    base_port: int
    instances: int
    extra: dict[str, Any] = field(default_factory=dict)

    def dev_config(self, **target: Any) -> dict[str, Any]:
        """The dev stack's config with this test's ports and state dir."""
        import yaml

        config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
        host = {
            **config["gin-deploy:targets"][0],
            "stateDir": str(self.state_dir), "instances": self.instances,
            "basePort": self.base_port, "httpPort": self.http_port,
            "httpsPort": self.https_port, "readyTimeout": 10, **target,
        }
        config["gin-deploy:targets"] = [host]
        return config

    def write_stack_file(self, stack: str, config: dict[str, Any]) -> None:
        import yaml

        path = self.root / f"Pulumi.{stack}.yaml"
        existing = yaml.safe_load(path.read_text()) if path.exists() else {}
        existing = existing or {}
        existing["config"] = config
        path.write_text(yaml.safe_dump(existing, sort_keys=False))

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.env()}

    def pulumi(self, *args: str, check: bool = True, timeout: int = 600,
               ) -> subprocess.CompletedProcess[str]:
        """The `pulumi` CLI exactly as the README tells users to run it."""
        proc = subprocess.run([str(TOOLS / "bin" / "pulumi"), *args, "--non-interactive"],
                              cwd=self.root, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.state_dir / "tls" / "ca.crt"))

    def stack_export(self, stack: str) -> dict[str, Any]:
        return json.loads(self.pulumi("stack", "export", "--stack", stack).stdout)


def make_project(tmp: Path, *, backend_url: str | None = None,
                 passphrase_file: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> Project:
    """A private copy of the project under `tmp` (a file backend of its own by default)."""
    root = tmp / "project"
    shutil.copytree(ROOT, root, ignore=_COPY_IGNORE, symlinks=True)
    (root / ".venv").symlink_to(ROOT / ".venv")
    if backend_url is None:
        backend = tmp / "backend"
        backend.mkdir()
        backend_url = f"file://{backend}"
    settings = automation.Settings(
        work_dir=root, tools_dir=TOOLS, backend_url=backend_url,
        passphrase_file=passphrase_file or tmp / "passphrase",
        extra_env={"PULUMI_HOME": str(tmp / "pulumi-home"), **(extra_env or {})},
    )
    http_port, https_port = free_ports(2)
    return Project(root=root, state_dir=tmp / "state", settings=settings,
                   https_port=https_port, http_port=http_port,
                   # A canary's candidates take the ports after the instances'.
                   base_port=consecutive_free_ports(4), instances=2)


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    require_cli()
    tmp = Path(tempfile.mkdtemp(prefix="gd-e2e-"))
    tmp.chmod(0o755)
    proj = make_project(tmp)
    try:
        yield proj
    finally:
        _kill_everything_under(proj.state_dir)
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_everything_under(state_dir: Path) -> None:
    """Last resort when a test failed before `destroy`: stop what the stack started."""
    from gin_deploy.agent.layout import Layout
    from gin_deploy.agent.processes import target_processes

    if state_dir.exists():
        for pid in target_processes(Layout(str(state_dir))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A throwaway sshd on 127.0.0.1 accepting one generated key for the current user."""
    for tool in ("/usr/sbin/sshd", "ssh-keygen", "ssh", "sftp"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: scripts/setup.sh installs openssh")
    if not os.path.isdir("/run/sshd"):  # sshd's privilege-separation directory
        if os.geteuid() != 0:
            pytest.fail("/run/sshd is missing and we are not root: create it (sshd needs it)")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "wrong_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = free_ports(1)[0]
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / "host_key"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv GIN_* PULUMI_COMMAND_*
Subsystem sftp internal-sftp
""")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))  # noqa: SIM115
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sshd did not start:\n{(d / 'sshd.log').read_text()}")
                time.sleep(0.1)
        yield {"dir": d, "port": port, "user": pwd.getpwuid(os.geteuid()).pw_name,
               "key": (d / "client_key").read_text(), "wrong": (d / "wrong_key").read_text()}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
