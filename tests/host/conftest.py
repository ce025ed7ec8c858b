"""Fixtures for the host agent tests: the agent runner (the zip archive hosts get), free
ports, the Gin binaries, payloads rendered with gin_deploy.render and typed by
gin_deploy.agent.payload, and stacks that are always torn down."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent import bundle
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.network import port_free as agent_port_free
from gin_deploy.agent.payload import (
    AcmeTls,
    DeployPayload,
    Instance,
    NginxFiles,
    Release,
    SelfSignedTls,
    SupervisordFiles,
    Tls,
    serialise,
)
from gin_deploy.agent.processes import target_processes, which

REPO = Path(__file__).resolve().parents[2]
# The agent as hosts get it: its zip archive, built where the program builds it.
(REPO / "build").mkdir(exist_ok=True)
AGENT = Path(bundle.build(str(REPO / "build"))[0])
APP_DIR = REPO / "app"
APP = "hello-gin"


def run_agent(
    command: str,
    payload: dict[str, Any] | None = None,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 240,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """Run `python <agent archive> command args` with the payload as JSON on stdin."""
    return subprocess.run(
        [python, str(AGENT), command, *args],
        input=json.dumps(payload) if payload is not None else "",
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"agent failed (exit {proc.returncode}):\n{proc.stderr}"
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports that were free a moment ago (bind to port 0)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int) -> bool:
    return agent_port_free(port)


def require(tool: str) -> str:
    found = which(tool)
    if not found:
        pytest.skip(f"{tool} is not installed")
    return found


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory (unix socket paths must stay under 108 bytes), world-traversable
    so nginx workers running as nobody can read an ACME webroot inside it."""
    d = Path(tempfile.mkdtemp(prefix="hostctl-test-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        kill_target(d / "state")
        shutil.rmtree(d, ignore_errors=True)


def kill_target(state_dir: Path) -> None:
    """Last-resort cleanup: kill every process that belongs to a state dir."""
    pids = target_processes(Layout(str(state_dir)))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- app binaries


@dataclass(frozen=True)
class Binary:
    version: str
    path: Path
    sha256: str


@pytest.fixture(scope="session")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Binary]:
    """The Gin reference app built twice, as versions v1 and v2."""
    go = require("go")
    out = tmp_path_factory.mktemp("bin")
    built = {}
    for version in ("v1", "v2"):
        path = out / f"app-{version}"
        subprocess.run(
            [go, "build", "-trimpath", "-ldflags", f"-s -w -X main.version={version}",
             "-o", str(path), "."],
            cwd=APP_DIR, env={**os.environ, "CGO_ENABLED": "0"}, check=True, timeout=600,
            capture_output=True,
        )
        built[version] = Binary(version, path, hashlib.sha256(path.read_bytes()).hexdigest())
    return built


# --------------------------------------------------------------------------- payloads


def build_payload(
    state_dir: Path,
    binary: Binary,
    ports: list[int],
    http_port: int,
    https_port: int,
    *,
    env: dict[str, str] | None = None,
    secret_env_keys: tuple[str, ...] = (),
    release_id: str | None = None,
    ready_timeout: float = 20,
    keep_releases: int = 5,
    acme: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A user-mode supervisord payload whose configs come from gin_deploy.render."""
    from gin_deploy.render import nginx, supervisor

    sd = str(state_dir)
    names = [f"{APP}-{p}" for p in ports]
    site = nginx.NginxSite(
        name=APP,
        server_names=("localhost",),
        upstreams=tuple(nginx.UpstreamServer(f"127.0.0.1:{p}") for p in ports),
        tls_certificate=f"{sd}/tls/server.crt",
        tls_certificate_key=f"{sd}/tls/server.key",
        access_log=f"{sd}/logs/nginx-access.log",
        error_log=f"{sd}/logs/nginx-error.log",
        http_port=http_port,
        https_port=https_port,
        acme_webroot=f"{sd}/acme/webroot" if acme else None,
    )
    programs = [
        supervisor.SupervisorProgram(
            name=name,
            command=f"/usr/bin/env python3 {sd}/bin/hostctl.py run --state {sd} --port {port} "
                    f"--name {name}",
            directory=sd,
            stdout_log=f"{sd}/logs/{name}.log",
            stderr_log=f"{sd}/logs/{name}.err.log",
            stop_wait_s=15,
        )
        for name, port in zip(names, ports, strict=True)
    ]
    app_env = {"GIN_MODE": "release", "SHUTDOWN_TIMEOUT": "10s",
               "TRUSTED_PROXIES": "127.0.0.1/32,::1/128", **(env or {})}
    env_digest = hashlib.sha256(json.dumps(sorted(app_env.items())).encode()).hexdigest()
    tls: Tls = SelfSignedTls(domains=("localhost",))
    if acme:
        tls = AcmeTls(**{"domains": ("localhost",), "webroot": f"{sd}/acme/webroot", **acme})
    payload = DeployPayload(
        app=APP,
        state_dir=sd,
        mode="user",
        supervisor="supervisord",
        release=Release(
            id=release_id or f"{binary.version}-{env_digest[:8]}",
            binary=str(binary.path),
            sha256=binary.sha256,
        ),
        env=app_env,
        secret_env_keys=secret_env_keys,
        instances=tuple(Instance(n, p) for n, p in zip(names, ports, strict=True)),
        ready_path="/readyz",
        ready_timeout_seconds=ready_timeout,
        keep_releases=keep_releases,
        nginx=NginxFiles(
            http_port=http_port,
            https_port=https_port,
            site=nginx.render_site(site),
            main=nginx.render_main_config(
                site_include=f"{sd}/nginx/site.conf",
                pid_file=f"{sd}/nginx/nginx.pid",
                error_log=f"{sd}/logs/nginx-error.log",
                temp_dir=f"{sd}/nginx/temp",
            ),
        ),
        supervisord=SupervisordFiles(
            main=supervisor.render_main_config(
                state_dir=sd,
                socket_file=f"{sd}/supervisor/supervisor.sock",
                pid_file=f"{sd}/supervisor/supervisord.pid",
                log_file=f"{sd}/logs/supervisord.log",
                include=f"{sd}/supervisor/programs.conf",
            ),
            programs=supervisor.render_programs(APP, tuple(programs)),
        ),
        tls=tls,
    )
    # As JSON values, as the agent reads them.
    data: dict[str, Any] = json.loads(serialise(payload))
    return data


# --------------------------------------------------------------------------- a running stack


@dataclass
class Stack:
    """One user-mode target on this machine: state dir, ports and helpers to probe it."""

    state_dir: Path
    ports: list[int]
    http_port: int
    https_port: int
    binaries: dict[str, Binary]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.state_dir / "tls" / "ca.crt"

    def payload(self, version: str = "v1", **kw: Any) -> dict[str, Any]:
        kw.setdefault("env", self.env)
        return build_payload(self.state_dir, self.binaries[version], self.ports, self.http_port,
                             self.https_port, **kw)

    def deploy(self, payload: dict[str, Any], **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_agent("deploy", payload, **kw)

    def destroy(self) -> subprocess.CompletedProcess[str]:
        return run_agent("destroy", {
            "app": APP, "stateDir": str(self.state_dir), "mode": "user",
            "supervisor": "supervisord",
            "instances": [{"name": f"{APP}-{p}", "port": p} for p in self.ports],
        })

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def https(self, path: str, headers: dict[str, str] | None = None,
              conn: http.client.HTTPSConnection | None = None,
              ) -> tuple[int, http.client.HTTPMessage, bytes]:
        c = conn or http.client.HTTPSConnection("127.0.0.1", self.https_port,
                                                context=self.tls_context(), timeout=5)
        try:
            c.request("GET", path, headers=headers or {})
            resp = c.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            if conn is None:
                c.close()

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run(
            [require("supervisorctl"), "-c", str(self.state_dir / "supervisor" /
                                                 "supervisord.conf"), *args],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout

    def instance_pids(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for line in self.supervisorctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = parts[3].rstrip(",") if len(parts) > 3 and parts[2] == "pid" else None
                out[parts[0].split(":")[-1]] = int(pid) if pid else None
        return out

    def daemon_pids(self) -> list[int]:
        pids = []
        for rel in ("supervisor/supervisord.pid", "nginx/nginx.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.state_dir / rel).read_text().strip()))
        return pids

    def instance_version(self, port: int) -> str:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        try:
            c.request("GET", "/version")
            return str(json.loads(c.getresponse().read())["version"])
        finally:
            c.close()


@pytest.fixture
def make_stack(binaries: dict[str, Binary]) -> Iterator[Any]:
    """Factory for stacks in short temporary dirs; every one is destroyed afterwards and
    any process of it that survived is killed."""
    made: list[tuple[Stack, Path]] = []

    def make(instances: int = 3) -> Stack:
        root = Path(tempfile.mkdtemp(prefix="hostctl-test-"))
        root.chmod(0o755)
        ports = free_ports(instances + 2)
        stack = Stack(root / "state", ports[:instances], ports[-2], ports[-1], binaries)
        made.append((stack, root))
        return stack

    yield make
    for stack, root in made:
        cleanup_stack(stack, root)


def cleanup_stack(stack: Stack, root: Path) -> None:
    if stack.state_dir.exists():
        with contextlib.suppress(Exception):
            stack.destroy()
    kill_target(stack.state_dir)
    shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- load


class Load:
    """Constant HTTPS load through nginx from a few threads (keep-alive connections, the
    stack's CA); counts every response that is not a 200 and every connection error."""

    def __init__(self, stack: Stack, path: str = "/healthz", threads: int = 8) -> None:
        self.stack = stack
        self.path = path
        self.n_threads = threads
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.instances: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []

    def _worker(self) -> None:
        ctx = self.stack.tls_context()
        conn: http.client.HTTPSConnection | None = None
        while not self.stop_event.is_set():
            if conn is None:
                conn = http.client.HTTPSConnection("127.0.0.1", self.stack.https_port,
                                                   context=ctx, timeout=10)
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        if self.path == "/whoami":
                            self.instances[json.loads(body)["instance"]] += 1
                    else:
                        self.failures[f"HTTP {resp.status}"] += 1
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures[f"{type(exc).__name__}: {exc}"] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Load:
        for _ in range(self.n_threads):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)

    def summary(self) -> str:
        return f"{self.ok} ok, failures: {dict(self.failures)}"


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
