"""A host fleet simulated on this machine: one sshd per machine on its own loopback
address (balancer 127.0.0.1, hosts 127.0.0.2...), its own host key, one client key; the
fleet's payload made by the program's own mapping (gin_deploy/program/fleet.py) and the
component's (components/fleet.py), run by the agent's coordinator over real SSH."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import random
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.fleet import fleet_payload
from gin_deploy.agent.fleet_payload import FleetPayload
from gin_deploy.agent.wire import dump
from gin_deploy.config import RawValue, parse_stack_config
from gin_deploy.program.fleet import fleet_args
from tests.host.conftest import AGENT, REPO, Binary, Load, run_agent
from tests.net import free_ports

ADDRESSES = {"lb": "127.0.0.1", "app1": "127.0.0.2", "app2": "127.0.0.3",
             "app3": "127.0.0.4", "app4": "127.0.0.5", "app5": "127.0.0.6"}


@dataclass
class Sshd:
    address: str
    port: int
    dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def host_key(self) -> str:
        return (self.dir / "host_key.pub").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sshd(address: str, d: Path, client_pub: Path, host_key: Path | None = None) -> Sshd:
    """An sshd on `address` (a free port); `host_key`: keep that machine's key."""
    d.mkdir(parents=True, exist_ok=True)
    if host_key is not None:
        shutil.copy(host_key, d / "host_key")
        shutil.copy(f"{host_key}.pub", d / "host_key.pub")
        (d / "host_key").chmod(0o600)
    else:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(d / "host_key")], check=True)
    shutil.copy(client_pub, d / "authorized_keys")
    port = free_ports(1)[0]
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress {address}
HostKey {d / "host_key"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
""")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return Sshd(address, port, d, proc)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd on {address} did not start:\n{(d / 'sshd.log').read_text()}")
            time.sleep(0.1)


def _listen_ports(n: int, low: int = 20000, high: int = 32000) -> list[int]:
    """A run of `n` consecutive ports free on every address, outside the ephemeral range."""
    from gin_deploy.agent.network import port_free

    for _ in range(200):
        start = random.randrange(low, high - n)
        if all(port_free(p) for p in range(start, start + n)):
            return list(range(start, start + n))
    raise RuntimeError(f"no {n} consecutive free ports in {low}-{high}")


@dataclass
class Sim:
    """The simulated machines and the fleet's settings."""

    root: Path
    key: Path
    sshds: dict[str, Sshd]
    binaries: dict[str, Binary]
    http_port: int
    https_port: int
    private_port: int
    base_ports: dict[str, int]
    instances: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return pwd.getpwuid(os.geteuid()).pw_name

    def restart_sshd(self, name: str) -> None:
        """The machine's sshd back up (stopped or not), same address and key, a new port."""
        old = self.sshds[name]
        old.stop()
        keep = old.dir.parent / f"{name}.key"
        shutil.copy(old.dir / "host_key", keep)
        shutil.copy(old.dir / "host_key.pub", f"{keep}.pub")
        shutil.rmtree(old.dir)
        self.sshds[name] = start_sshd(old.address, old.dir, Path(f"{self.key}.pub"),
                                      host_key=keep)

    def state_dir(self, machine: str) -> Path:
        return self.root / f"state-{machine}"

    def target(self, hosts: list[str], balancers: bool = True, **over: Any) -> dict[str, Any]:
        def entry(name: str) -> dict[str, Any]:
            s = self.sshds[name]
            return {"name": name, "host": s.address, "sshPort": s.port, "hostKey": s.host_key}

        return {
            "name": "fleet", "kind": "host", "connection": "ssh", "user": self.user,
            "privateKeyPath": str(self.key), "mode": "user",
            "stateDir": str(self.root / "state"), "instances": self.instances,
            "httpPort": self.http_port, "httpsPort": self.https_port,
            "privatePort": self.private_port, "readyTimeout": 10,
            "hosts": [{**entry(h), "basePort": self.base_ports[h]} for h in hosts],
            "balancers": [entry("lb")] if balancers else [],
            **over,
        }

    def payload(self, hosts: list[str], version: str = "v1", *, balancers: bool = True,
                env: dict[str, str] | None = None, **over: Any) -> FleetPayload:
        """What the program would send the coordinator for this fleet."""
        raw = {"app": RawValue({"name": "hello-gin", "env": env or {}}, False),
               "targets": RawValue([self.target(hosts, balancers, **over)], False)}
        cfg = parse_stack_config(raw, project="gin-deploy", stack="sim", project_dir=REPO)
        binary = self.binaries[version]
        args = fleet_args(cfg.targets[0], cfg, version=version,  # type: ignore[arg-type]
                          binary_path=str(binary.path), binary_sha256=binary.sha256,
                          agent=(str(AGENT), "0" * 64), probe_keys=False)
        staged = {m.name: (str(AGENT), str(binary.path))
                  for m in (*args.hosts, *args.balancers)}
        return fleet_payload("fleet", args, staged, binary.sha256, self.key.read_text(),
                             None, ())

    def release(self, payload: FleetPayload) -> subprocess.CompletedProcess[str]:
        return run_agent("fleet-release", dump(payload), timeout=900)


@contextlib.contextmanager
def simulated(root: Path, binaries: dict[str, Binary]) -> Iterator[Sim]:
    for tool in ("/usr/sbin/sshd", "ssh", "ssh-agent", "ssh-add", "ssh-keygen"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    key = root / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sshds: dict[str, Sshd] = {}
    try:
        for name, address in ADDRESSES.items():
            sshds[name] = start_sshd(address, root / "sshd" / name, Path(f"{key}.pub"))
        # Below the ephemeral range: a port a host binds only when it joins (its instances,
        # its private nginx) must not be taken meanwhile by a client's outgoing connection.
        ports = iter(_listen_ports(3 + 2 * (len(ADDRESSES) - 1)))
        http, https, private = next(ports), next(ports), next(ports)
        base = {}
        for name in ADDRESSES:
            if name != "lb":
                base[name] = next(ports)
                next(ports)  # its second instance
        yield Sim(root, key, sshds, binaries, http, https, private, base)
    finally:
        for s in sshds.values():
            s.stop()


class Front:
    """The balancer as Load sees it."""

    def __init__(self, sim: Sim) -> None:
        self.https_port = sim.https_port
        self.ca = sim.state_dir("lb") / "tls" / "ca.crt"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


class FleetLoad(Load):
    """Load through the balancer by a client that, like Go's, curl and browsers, resends
    an idempotent request once when a *reused* keep-alive connection was closed before any
    response came (RFC 9112, 9.3.1): every balancer reload (a drain, a join) closes the
    idle client connections of its old workers. Those resends are counted apart
    (`resent`); an error on a fresh connection, or any answer but 200, is a failure."""

    resent = 0

    def _worker(self) -> None:
        ctx = self.stack.tls_context()
        conn: http.client.HTTPSConnection | None = None
        used = False
        while not self.stop_event.is_set():
            if conn is None:
                conn = http.client.HTTPSConnection("127.0.0.1", self.stack.https_port,
                                                   context=ctx, timeout=10)
                used = False
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                used = True
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                    else:
                        self.failures[f"HTTP {resp.status}"] += 1
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as exc:
                conn.close()
                conn = None
                with self.lock:
                    if used:
                        self.resent += 1  # the next loop resends on a fresh connection
                    else:
                        self.failures[f"{type(exc).__name__}: {exc}"] += 1
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                with self.lock:
                    self.failures[f"{type(exc).__name__}: {exc}"] += 1
        if conn is not None:
            conn.close()

    def summary(self) -> str:
        return f"{super().summary()}, resent on closed keep-alive connections: {self.resent}"


def get(sim: Sim, path: str, headers: dict[str, str] | None = None,
        source: str = "127.0.0.9") -> tuple[int, dict[str, Any]]:
    """A request through the balancer from `source` (a client that is not the balancer)."""
    conn = http.client.HTTPSConnection("127.0.0.1", sim.https_port, timeout=10,
                                       context=Front(sim).tls_context(),
                                       source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if body.startswith(b"{") else {}
    finally:
        conn.close()


def versions(sim: Sim, hosts: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for h in hosts:
        base = sim.base_ports[h]
        for port in range(base, base + sim.instances):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
            try:
                conn.request("GET", "/version")
                out.setdefault(h, set()).add(json.loads(conn.getresponse().read())["version"])
            except OSError:
                out.setdefault(h, set()).add("down")
            finally:
                conn.close()
    return out


class Hey:
    """`hey` (Go's HTTP client: it resends on a reused connection the server closed, as
    browsers do) for the duration of the block; `errors` counts every non-200 and error."""

    def __init__(self, sim: Sim, concurrency: int = 4) -> None:
        self.sim = sim
        self.concurrency = concurrency
        self.proc: subprocess.Popen[str] | None = None
        self.ok = 0
        self.errors = 0
        self.output = ""

    def __enter__(self) -> Hey:
        hey = shutil.which("hey")
        if hey is None:
            pytest.fail("hey is not installed (scripts/setup.sh installs it)")
        # hey does not verify the certificate; the stack's CA is checked by the other load.
        self.proc = subprocess.Popen(
            [hey, "-z", "1h", "-c", str(self.concurrency),
             f"https://127.0.0.1:{self.sim.https_port}/healthz"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        import re
        import signal as sig

        assert self.proc is not None
        self.proc.send_signal(sig.SIGINT)  # hey prints its summary on ^C
        self.output, _ = self.proc.communicate(timeout=30)
        for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", self.output):
            if code == "200":
                self.ok += int(count)
            else:
                self.errors += int(count)
        errors = self.output.split("Error distribution:")[1:]
        if errors:
            self.errors += sum(int(n) for n in re.findall(r"\[(\d+)\]", errors[0]))
