"""Real ACME end to end: certbot, run by the agent, gets the host's certificate from a local
Pebble (Let's Encrypt's test CA) over HTTP-01 answered by the stack's nginx; nginx serves it;
a forced renewal under HTTPS load swaps the certificate through the deploy hook without a
failed request; a redeploy does not ask for another certificate; destroy cleans up.

Everything stays on 127.0.0.1: Pebble listens there, its VA resolves `localhost` through the
system resolver (/etc/hosts) and fetches the challenge from nginx's HTTP port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent import cli
from gin_deploy.agent import tls as agent_tls
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.processes import pid_alive, target_processes
from tests import pki
from tests.host.conftest import (
    Binary,
    Stack,
    cleanup_stack,
    free_ports,
    port_free,
    require,
    result_of,
    run_agent,
    wait_for,
)
from tests.unit.test_renewal_record import serve_cert

pytestmark = [pytest.mark.host, pytest.mark.timeout(120)]

DOMAIN = "localhost"
EMAIL = "ops@example.com"
_ISSUED_RE = re.compile(r"Issued certificate serial ([0-9a-fA-F]+)")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- Pebble


def _pebble_tls(directory: Path) -> str:
    """A throwaway CA and a localhost/127.0.0.1 certificate for Pebble's own HTTPS endpoints
    (Debian's pebble ships no test certificates). Returns the CA PEM."""
    return pki.issue(directory / "ca.pem", directory / "cert.pem", directory / "key.pem",
                     names=("localhost",), ca_name="gin-deploy test pebble CA").ca_pem


@dataclass
class Pebble:
    proc: subprocess.Popen[bytes]
    port: int
    management_port: int
    tls_ca: str  # PEM of the CA behind Pebble's own HTTPS endpoints (certbot's caBundle)
    log: Path

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def get(self, url: str) -> bytes:
        ctx = ssl.create_default_context(cadata=self.tls_ca)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=ctx))
        with opener.open(url, timeout=5) as resp:
            return bytes(resp.read())

    def root(self) -> str:
        """Pebble's current root (a new one every start), from the management interface."""
        return self.get(f"https://127.0.0.1:{self.management_port}/roots/0").decode()

    def issued(self) -> list[int]:
        """Serials of every certificate this Pebble has issued, in order."""
        return [int(s, 16) for s in _ISSUED_RE.findall(self.log.read_text(errors="replace"))]


def start_pebble(workdir: Path, http_port: int) -> Pebble:
    pebble = require("pebble")
    workdir.mkdir(parents=True, exist_ok=True)
    tls_ca = _pebble_tls(workdir)
    listen, management, tls_port = free_ports(3)
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{listen}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(workdir / "cert.pem"),
        "privateKey": str(workdir / "key.pem"),
        "httpPort": http_port,  # the VA fetches http://<domain>:<httpPort>/.well-known/...
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}
    (workdir / "pebble.json").write_text(json.dumps(config))
    log = workdir / "pebble.log"
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
           # Always validate afresh, so the renewal's HTTP-01 also goes through nginx.
           "PEBBLE_AUTHZREUSE": "0"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([pebble, "-config", str(workdir / "pebble.json")],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=workdir)
    peb = Pebble(proc, listen, management, tls_ca, log)

    def answers() -> bool:
        if proc.poll() is not None:
            return True
        with contextlib.suppress(OSError):
            return b"newOrder" in peb.get(peb.directory)
        return False

    if not wait_for(answers, 20, 0.2) or proc.poll() is not None:
        stop_pebble(peb)
        pytest.fail(f"pebble did not come up:\n{log.read_text(errors='replace')}")
    return peb


def stop_pebble(peb: Pebble) -> None:
    if peb.proc.poll() is None:
        peb.proc.terminate()
        try:
            peb.proc.wait(10)
        except subprocess.TimeoutExpired:
            peb.proc.kill()
            peb.proc.wait(10)


# --------------------------------------------------------------------------- HTTPS client


class PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port whatever the name resolves to; SNI and the hostname check use
    the name."""

    def __init__(self, name: str, port: int, ctx: ssl.SSLContext, timeout: float = 10) -> None:
        super().__init__(name, port, context=ctx, timeout=timeout)
        self.ctx = ctx

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self.ctx.wrap_socket(raw, server_hostname=self.host)


def served_cert(stack: Stack, root_pem: str) -> Any:
    """The leaf nginx serves for SNI=DOMAIN, after verifying it (chain + name) against
    root_pem."""
    from cryptography import x509

    ctx = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection(("127.0.0.1", stack.https_port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def challenges_served(stack: Stack) -> set[str]:
    """HTTP-01 tokens nginx served from the webroot (its JSON access log); any other answer
    to a challenge request fails the test."""
    access = [json.loads(line) for line in
              (stack.state_dir / "logs" / "nginx-access.log").read_text().splitlines()]
    hits = [a for a in access if a["uri"].startswith("/.well-known/acme-challenge/")]
    assert all(a["status"] == 200 for a in hits), hits
    return {a["uri"] for a in hits}


def nginx_pid(stack: Stack) -> int:
    return int((stack.state_dir / "nginx" / "nginx.pid").read_text().strip())


def _cn(name: Any) -> str:
    from cryptography.x509.oid import NameOID

    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _sans(cert: Any) -> list[str]:
    from cryptography import x509

    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return list(ext.value.get_values_for_type(x509.DNSName))


class PinnedLoad:
    """HTTPS load through nginx, trusting only Pebble's root (SNI and hostname check =
    DOMAIN), from two kinds of client threads:

    - `fresh`: a new TLS connection per request (Connection: close). No retries at all.
    - `keepalive`: one persistent connection per thread. When nginx reloads, its old workers
      close their idle keep-alive connections, so a request sent on such a connection just
      then gets no response byte at all. Like browsers, curl and Go's net/http (RFC 9112
      9.3.1), the client then retries that idempotent GET once on a new connection; these
      retries are counted in `stale_retries`. Any other error, any error on a new
      connection, a failed retry or a non-200 is a failure.
    """

    RETRYABLE = (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError)  # incl. RemoteDisconnected

    def __init__(self, stack: Stack, root_pem: str, path: str = "/healthz",
                 fresh: int = 4, keepalive: int = 4) -> None:
        self.stack, self.root_pem, self.path = stack, root_pem, path
        self.kinds = ["fresh"] * fresh + ["keepalive"] * keepalive
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok: Counter[str] = Counter()
        self.stale_retries = 0
        self.failures: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []

    def _once(self, conn: PinnedHTTPS, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Send the request and read the status line (the part that may be retried)."""
        conn.request("GET", self.path, headers=headers)
        return conn.getresponse()

    def _worker(self, kind: str) -> None:
        ctx = ssl.create_default_context(cadata=self.root_pem)
        headers = {"Connection": "close"} if kind == "fresh" else {}
        conn: PinnedHTTPS | None = None
        reused = False
        while not self.stop_event.is_set():
            if conn is None:
                conn, reused = PinnedHTTPS(DOMAIN, self.stack.https_port, ctx), False
            try:
                try:
                    resp = self._once(conn, headers)
                except self.RETRYABLE:
                    if not reused:
                        raise
                    with self.lock:
                        self.stale_retries += 1
                    conn.close()
                    conn, reused = PinnedHTTPS(DOMAIN, self.stack.https_port, ctx), False
                    resp = self._once(conn, headers)
                resp.read()
                with self.lock:
                    if resp.status == 200:
                        self.ok[kind] += 1
                    else:
                        self.failures[f"{kind}: HTTP {resp.status}"] += 1
                reused = True
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures[f"{kind}: {type(exc).__name__}: {exc}"] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def __enter__(self) -> PinnedLoad:
        for kind in self.kinds:
            t = threading.Thread(target=self._worker, args=(kind,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)

    def summary(self) -> str:
        return (f"ok {dict(self.ok)}, stale keep-alive retries {self.stale_retries}, "
                f"failures: {dict(self.failures)}")


# --------------------------------------------------------------------------- fixtures


@dataclass
class AcmeEnv:
    stack: Stack
    pebble: Pebble

    def payload(self) -> dict[str, Any]:
        return self.stack.payload("v1", acme={
            "domains": (DOMAIN,), "email": EMAIL, "server": self.pebble.directory,
            "ca_bundle": self.pebble.tls_ca})


@pytest.fixture(scope="module")
def acme(binaries: dict[str, Binary]) -> Iterator[AcmeEnv]:
    for tool in ("nginx", "supervisord", "supervisorctl", "certbot", "pebble"):
        require(tool)
    root = Path(tempfile.mkdtemp(prefix="hostctl-acme-"))
    root.chmod(0o755)  # nginx workers (nobody when run as root) read the webroot inside
    ports = free_ports(4)
    stack = Stack(root / "state", ports[:2], ports[2], ports[3], binaries)
    pebble: Pebble | None = None
    try:
        pebble = start_pebble(root / "pebble", stack.http_port)
        yield AcmeEnv(stack, pebble)
    finally:
        try:
            if pebble is not None:
                stop_pebble(pebble)
        finally:
            cleanup_stack(stack, root)  # destroy, kill leftovers, remove root


@pytest.fixture(scope="module")
def deployed(acme: AcmeEnv) -> dict[str, Any]:
    proc = acme.stack.deploy(acme.payload())
    result = result_of(proc)
    result["stderr"] = proc.stderr
    return result


# --------------------------------------------------------------------------- tests


def test_renew_force_passes_force_renewal_to_certbot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(agent_tls, "tool", lambda name: f"/fake/{name}")
    monkeypatch.setattr(agent_tls, "run_cmd",
                        lambda args, what, **kw: calls.append(list(args)))
    monkeypatch.setattr(cli, "emit", lambda result: None)
    (tmp_path / "acme" / "config").mkdir(parents=True)
    serve_cert(tmp_path, 80)  # renew checks what is served afterwards
    assert cli.main(["renew", "--state", str(tmp_path)]) == 0
    assert cli.main(["renew", "--state", str(tmp_path), "--force"]) == 0
    assert [c[:2] for c in calls] == [["/fake/certbot", "renew"]] * 2
    assert "--force-renewal" not in calls[0]
    # never certbot's random pre-renewal sleep (up to 8 min) while holding the state lock
    assert "--no-random-sleep-on-renew" in calls[0]
    assert calls[1][-1] == "--force-renewal"
    assert calls[1][:-1] == calls[0]


def test_deploy_obtains_a_pebble_certificate_that_nginx_serves(
        acme: AcmeEnv, deployed: dict[str, Any]) -> None:
    stack, pebble = acme.stack, acme.pebble
    assert [i["ready"] for i in deployed["instances"]] == [True, True]
    assert f"requesting an ACME certificate for {DOMAIN}" in deployed["stderr"]
    issued = pebble.issued()
    assert len(issued) == 1, pebble.log.read_text()

    cert = served_cert(stack, pebble.root())  # verifies chain and name against Pebble's root
    assert _cn(cert.issuer).startswith("Pebble Intermediate CA"), cert.issuer
    assert DOMAIN in _sans(cert)
    assert cert.serial_number == issued[0]
    with pytest.raises(ssl.SSLCertVerificationError):  # not the agent's self-signed CA
        served_cert(stack, stack.ca.read_text())

    live = stack.state_dir / "acme" / "config" / "live" / DOMAIN
    assert (stack.state_dir / "tls" / "server.crt").resolve() == \
        (live / "fullchain.pem").resolve()
    assert (stack.state_dir / "tls" / "server.key").resolve() == \
        (live / "privkey.pem").resolve()

    # Pebble's VA fetched the HTTP-01 token from nginx (plain HTTP port, not redirected).
    assert len(challenges_served(stack)) == 1

    # and the app answers through it
    conn = PinnedHTTPS(DOMAIN, stack.https_port, ssl.create_default_context(
        cadata=pebble.root()))
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()


def test_forced_renewal_under_load_swaps_the_certificate_without_failed_requests(
        acme: AcmeEnv, deployed: dict[str, Any]) -> None:
    stack, pebble = acme.stack, acme.pebble
    root = pebble.root()
    before = served_cert(stack, root)
    nginx_master = nginx_pid(stack)
    start = time.monotonic()
    with PinnedLoad(stack, root) as load:
        time.sleep(1.5)
        renew = run_agent("renew", None, "--state", str(stack.state_dir), "--force",
                          timeout=120)
        time.sleep(max(1.5, 8 - (time.monotonic() - start)))
    assert renew.returncode == 0, renew.stderr
    result = json.loads(renew.stdout)
    # renew also reports what is served now (recorded for `status`).
    assert result["renewed"] is True and result["daysLeft"] > 14, result
    assert not load.failures, load.summary()
    assert load.ok["fresh"] > 100 and load.ok["keepalive"] > 200, load.summary()
    # one reload: about one stale connection per keep-alive thread, not a stream of errors
    assert load.stale_retries <= 2 * load.kinds.count("keepalive"), load.summary()

    issued = pebble.issued()
    assert len(issued) == 2, pebble.log.read_text()
    after = served_cert(stack, root)
    assert after.serial_number != before.serial_number
    assert after.serial_number == issued[1]
    assert _cn(after.issuer).startswith("Pebble Intermediate CA")
    assert DOMAIN in _sans(after)
    # Every challenge nginx was asked for, it answered (200); whether the renewal needed a
    # fresh HTTP-01 is the CA's call (Pebble may still reuse a valid authorization).
    assert len(challenges_served(stack)) in (1, 2)
    # Only a reload makes nginx read the new files: the deploy hook reloaded it (same master).
    assert nginx_pid(stack) == nginx_master


def test_redeploy_does_not_request_another_certificate(
        acme: AcmeEnv, deployed: dict[str, Any]) -> None:
    stack, pebble = acme.stack, acme.pebble
    issued = pebble.issued()
    served = served_cert(stack, pebble.root()).serial_number
    logs_before = sorted(p.name for p in (stack.state_dir / "acme" / "logs").iterdir())
    proc = stack.deploy(acme.payload())
    result = result_of(proc)
    assert result["changed"] is False, proc.stderr
    assert "requesting an ACME certificate" not in proc.stderr
    assert pebble.issued() == issued
    assert served_cert(stack, pebble.root()).serial_number == served
    # certbot did not even run (it rotates a log file per run)
    assert sorted(p.name for p in (stack.state_dir / "acme" / "logs").iterdir()) == logs_before


def test_destroy_removes_everything(acme: AcmeEnv, deployed: dict[str, Any]) -> None:
    stack = acme.stack
    pids = set(stack.daemon_pids())
    assert len(pids) == 2
    pids.update(target_processes(Layout(str(stack.state_dir))))
    proc = stack.destroy()
    assert proc.returncode == 0, proc.stderr
    assert not stack.state_dir.exists()
    assert not [p for p in pids if pid_alive(p)]
    for port in [*stack.ports, stack.http_port, stack.https_port]:
        assert wait_for(lambda port=port: port_free(port), 5), port
