"""A real Kubernetes control plane for tests, with nodes and pods faked by kwok.

    with Cluster.start(tmp_path) as cluster:
        cluster.kubectl("get", "nodes")

It runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (all
built by scripts/install-kubernetes.sh into .tools/kubernetes) on free loopback ports,
with fresh data and a throwaway PKI under the given directory, and writes a kubeconfig
for the cluster admin. `start` returns only once every part reports healthy and a kwok
node is Ready; `stop` ends exactly the processes this object started, by pid.

kwok runs the stages shipped in its module (nodes Ready with a lease; pods Ready,
completed, deleted) and ours in tests/k8s/stages/ (a pod of an image in a repository
named `never-ready` runs but never gets Ready).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.net import free_ports
from tests.pki import Ca, key_pem

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "kubernetes"
BIN = TOOLS / "bin"
STAGES = TOOLS / "kwok-stages"
# Stages of our own for fault injection (each file says which pods it selects).
TEST_STAGES = Path(__file__).resolve().parent / "stages"
COMMANDS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
            "kubectl")
NODE_NAME = "kwok-node-0"
# kwok manages only nodes with this annotation, so a real node would be left alone.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` service: a SAN of the API server's certificate
POD_CIDR = "10.244.0.0/16"
# kwok renews each node's lease at this period; without it nodes go stale after ~40 s.
NODE_LEASE_SECONDS = 40
START_TIMEOUT = 180.0


def pinned_versions() -> dict[str, str]:
    """tools/versions.env, the one place the toolchain's versions are written."""
    lines = (ROOT / "tools" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


class NotInstalledError(RuntimeError):
    """A binary of the control plane is missing."""


class StartError(RuntimeError):
    """A part of the control plane did not become healthy; the message ends with its log."""


def missing_tools() -> list[Path]:
    paths = [BIN / c for c in COMMANDS] + [STAGES]
    return [p for p in paths if not p.exists()]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    """A running control plane: its URL, admin kubeconfig and the processes it started."""

    workdir: Path
    server: str = ""
    kubeconfig: Path = field(init=False)
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kubeconfig = self.workdir / "admin.kubeconfig"

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def start(cls, workdir: Path, timeout: float = START_TIMEOUT) -> Cluster:
        missing = missing_tools()
        if missing:
            raise NotInstalledError(
                f"{', '.join(map(str, missing))} not installed: run scripts/install-kubernetes.sh"
                " (scripts/setup.sh runs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = cls(workdir)
        try:
            cluster._start(time.monotonic() + timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM each process this cluster started, newest first, then SIGKILL stragglers."""
        for proc in reversed(self.processes):
            if proc.popen.poll() is None:
                proc.popen.terminate()
                try:
                    proc.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.popen.wait()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def _start(self, deadline: float) -> None:
        names = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        pki = self._write_pki()
        self._write_kubeconfig()
        self._etcd()
        self._wait(deadline, "etcd", self._etcd_healthy)
        self._apiserver(pki)
        for path in ("/livez", "/readyz"):
            self._wait(deadline, "kube-apiserver",
                       functools.partial(self._https_ok, self.ports["apiserver"], path))
        self._controller_manager(pki)
        self._scheduler(pki)
        self._kwok()
        self._wait(deadline, "kube-controller-manager",
                   lambda: self._https_ok(self.ports["controller-manager"], "/healthz"))
        for path in ("/livez", "/readyz"):
            self._wait(deadline, "kube-scheduler",
                       functools.partial(self._https_ok, self.ports["scheduler"], path))
        self._wait(deadline, "kwok", lambda: self._http_ok(self.ports["kwok"], "/healthz"))
        self.request("POST", "/api/v1/nodes", self._node())
        self._wait(deadline, "kwok", self.node_ready, what=f"node {NODE_NAME} Ready")
        # Pods need their namespace's default ServiceAccount, made by the controller manager.
        self._wait(deadline, "kube-controller-manager", self._default_service_account,
                   what="the default ServiceAccount")

    # ------------------------------------------------------------ certificates, kubeconfig

    def _write_pki(self) -> dict[str, Path]:
        d = self.workdir / "pki"
        ca = Ca("gin-deploy test cluster CA")
        paths = {name: d / name for name in
                 ("ca.crt", "serving.crt", "serving.key", "admin.crt", "admin.key", "sa.key",
                  "sa.pub")}
        ca.write(paths["ca.crt"])
        # One serving certificate for every component's loopback port.
        ca.server(paths["serving.crt"], paths["serving.key"],
                  ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local", "localhost"],
                  ips=["127.0.0.1", SERVICE_IP])
        # The admin (group system:masters) is also every component's identity.
        ca.client(paths["admin.crt"], paths["admin.key"], "admin", ["system:masters"])
        # The key that signs service account tokens, and its public half that verifies them.
        sa_key = ec.generate_private_key(ec.SECP256R1())
        paths["sa.key"].write_bytes(key_pem(sa_key))
        paths["sa.pub"].write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return paths

    def _write_kubeconfig(self) -> None:
        pki = self.workdir / "pki"

        def b64(name: str) -> str:
            return base64.b64encode((pki / name).read_bytes()).decode()

        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.server, "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": b64("admin.crt"),
                "client-key-data": b64("admin.key")}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    # ------------------------------------------------------------ processes

    def _spawn(self, name: str, args: list[str]) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{name}.log"
        home = self.workdir / "home"   # nothing reads the user's ~/.kube or ~/.kwok
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(self.kubeconfig),
               "KWOK_WORKDIR": str(self.workdir / "kwok")}
        with log.open("wb") as out:
            popen = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.workdir, start_new_session=True)
        self.processes.append(Process(name, popen, log))

    def _etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn("etcd", [
            "etcd", "--name=test", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}", "--initial-cluster-state=new",
            "--listen-metrics-urls=", "--log-level=warn",
            "--unsafe-no-fsync",  # throwaway data: durability only costs time
        ])

    def _apiserver(self, pki: dict[str, Path]) -> None:
        self._spawn("kube-apiserver", [
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={pki['serving.crt']}", f"--tls-private-key-file={pki['serving.key']}",
            f"--client-ca-file={pki['ca.crt']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki['sa.pub']}",
            f"--service-account-signing-key-file={pki['sa.key']}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            # The `kubernetes` Service would point at 127.0.0.1, which Endpoints reject.
            "--endpoint-reconciler-type=none",
        ])

    def _component_flags(self, port: str, pki: dict[str, Path]) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports[port]}",
            f"--tls-cert-file={pki['serving.crt']}", f"--tls-private-key-file={pki['serving.key']}",
            "--leader-elect=false",
        ]

    def _controller_manager(self, pki: dict[str, Path]) -> None:
        self._spawn("kube-controller-manager", [
            "kube-controller-manager", *self._component_flags("controller-manager", pki),
            f"--service-account-private-key-file={pki['sa.key']}",
            f"--root-ca-file={pki['ca.crt']}",
        ])

    def _scheduler(self, pki: dict[str, Path]) -> None:
        self._spawn("kube-scheduler",
                    ["kube-scheduler", *self._component_flags("scheduler", pki)])

    def _kwok(self) -> None:
        stages = sorted(STAGES.glob("*.yaml"))
        if not stages:
            raise NotInstalledError(f"kwok stages in {STAGES} not installed: "
                                    "run scripts/install-kubernetes.sh")
        key, value = KWOK_ANNOTATION
        self._spawn("kwok", [
            "kwok", f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={key}={value}",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
            f"--cidr={POD_CIDR}",
            f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
            *(f"--config={s}" for s in [*stages, *sorted(TEST_STAGES.glob("*.yaml"))]),
        ])

    # ------------------------------------------------------------ health

    def _wait(self, deadline: float, name: str, check: Callable[[], bool],
              what: str = "healthy") -> None:
        proc = next(p for p in self.processes if p.name == name)
        while True:
            if proc.popen.poll() is not None:
                raise StartError(f"{name} exited with {proc.popen.returncode} before it was "
                                 f"{what}; its log ({proc.log}):\n{proc.tail()}")
            try:
                if check():
                    return
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise StartError(f"{name} was not {what} in time; its log ({proc.log}):\n"
                                 f"{proc.tail()}")
            time.sleep(0.2)

    def tls_context(self) -> ssl.SSLContext:
        """Trusts the cluster CA and presents the admin's client certificate."""
        pki = self.workdir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _https_ok(self, port: int, path: str) -> bool:
        url = f"https://127.0.0.1:{port}{path}"
        with urllib.request.urlopen(url, context=self.tls_context(), timeout=5) as resp:
            return bool(resp.status == 200)

    def _http_ok(self, port: int, path: str) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return bool(resp.status == 200)

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['etcd']}/health",
                                    timeout=5) as resp:
            return bool(json.load(resp).get("health") == "true")

    def node_ready(self, name: str = NODE_NAME) -> bool:
        status, node = self.request("GET", f"/api/v1/nodes/{name}", check=False)
        if status != 200:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node.get("status", {}).get("conditions", []))

    def _default_service_account(self) -> bool:
        status, _ = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default",
                                 check=False)
        return status == 200

    @staticmethod
    def _node() -> dict[str, Any]:
        key, value = KWOK_ANNOTATION
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "annotations": {key: value},
                         "labels": {"kubernetes.io/hostname": NODE_NAME,
                                    "kubernetes.io/os": "linux", "type": "kwok"}},
            "status": {"capacity": capacity, "allocatable": capacity},
        }

    # ------------------------------------------------------------ clients

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", check: bool = True,
                ) -> tuple[int, dict[str, Any]]:
        """One API call as the admin: (HTTP status, decoded JSON body)."""
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method,  # noqa: S310
                                     headers={"Content-Type": content_type,
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.tls_context(), timeout=30) as resp:  # noqa: S310
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            payload = err.read()
            if check:
                raise AssertionError(f"{method} {path}: HTTP {err.code}: {payload!r}") from err
            with contextlib.suppress(ValueError):
                return err.code, json.loads(payload)
            return err.code, {"raw": payload.decode(errors="replace")}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, input=input, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)
