"""The origin lock on a host target, for real: the nginx files a HostTarget sends
behind a CDN (components.host.deploy_payload with edge routing's EdgeOrigin), run
by a real nginx in front of the real Gin service built from app/, on free loopback
ports. No cloud: the test client plays CloudFront (127.0.0.1 stands in for its
origin-facing addresses).

Proves: without the secret header (or with a wrong one) nginx answers 403 and the app
is never reached; with it, 200 from the app; the health check path is open without
it (and cannot be used to reach anything else); the client address CloudFront puts
last in X-Forwarded-For is the one the app sees; the target's own edge name is
served with a certificate that covers it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.endpoint import EdgeOrigin
from components.host import HostTargetArgs, deploy_payload
from gin_deploy.agent.payload import SelfSignedTls
from gin_deploy.config import AppConfig
from gin_deploy.program.host import app_env
from gin_deploy.render.host import HostService
from tests import pki

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "api.example.com"
OWN_NAME = f"edge-sin.origin.{DOMAIN}"
HEADER = "X-Origin-Verify"
SECRET = "k3Yq9TmW2pXv7RbN4sLd8HcF6gJz1AeU5oIy0wQrStVuPxMn"   # like the RandomPassword
CDN_CIDRS = ("127.0.0.0/8",)   # where "CloudFront" connects from in this test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def write_tls(directory: Path) -> Path:
    """A throwaway CA and a server certificate for the domain and the edge name, at the
    host's stable TLS paths; the CA certificate's path is returned (what clients trust)."""
    tls = directory / "tls"
    return pki.issue(tls / "ca.crt", tls / "server.crt", tls / "server.key",
                     names=(DOMAIN, OWN_NAME), ips=(), ca_name="origin lock test CA").ca_path


@pytest.fixture(scope="module")
def gin_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (needed to build app/)")
    out = tmp_path_factory.mktemp("gin") / "app"
    subprocess.run([go, "build", "-trimpath", "-o", str(out), "."], cwd=ROOT / "app",
                   env={**os.environ, "CGO_ENABLED": "0"}, check=True, timeout=600,
                   capture_output=True)
    return out


@dataclass
class Origin:
    https_port: int
    ca: Path
    site: str

    def request(self, path: str, *, headers: dict[str, str] | None = None,
                method: str = "GET", host: str = DOMAIN) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.https_port, timeout=10,
                                           context=context)
        # SNI and certificate check for `host`, as CloudFront (or a health check) does.
        conn.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", self.https_port), timeout=10),
            server_hostname=host)
        try:
            conn.request(method, path, headers={"Host": host, **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def origin(gin_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    state = tmp_path_factory.mktemp("state")
    app_port, http_port, https_port = free_port(), free_port(), free_port()
    edge = EdgeOrigin(names=(OWN_NAME,), verify_header=HEADER, verify_value=SECRET,
                      open_path="/readyz", cdn_cidrs=CDN_CIDRS)
    env = app_env(AppConfig())
    args = HostTargetArgs(
        service=HostService(
            app="hello-gin", stack="test", target="edge-sin", state_dir=str(state),
            mode="user", supervisor="supervisord", instance_ports=(app_port,),
            http_port=http_port, https_port=https_port,
            server_names=(DOMAIN, "localhost", OWN_NAME)),
        tls=SelfSignedTls((DOMAIN, "localhost", OWN_NAME)), domain=DOMAIN, env=env,
        ready_path="/readyz", ready_timeout=30, keep_releases=5, install=False, version="1",
        binary_path=str(gin_binary), binary_sha256="0" * 64, agent_path="unused",
        agent_sha256="0" * 64, staging_dir="unused", edge=edge)
    # Exactly what the deploy payload would carry to the host.
    nginx_files = deploy_payload(args, str(gin_binary), "0" * 64, SECRET, CDN_CIDRS).nginx
    assert nginx_files.main is not None
    ca = write_tls(state)
    for sub in ("logs", "nginx/temp"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "nginx" / "site.conf").write_text(nginx_files.site)
    (state / "nginx" / "nginx.conf").write_text(nginx_files.main)

    env = {**env, "PORT": str(app_port), "BIND_ADDR": "127.0.0.1",
           "INSTANCE_ID": "edge-sin-0", "PATH": os.environ.get("PATH", "")}
    app = subprocess.Popen([str(gin_binary)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    # As root, nginx's workers would run as nobody, who cannot read the test's files.
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    proxy = subprocess.Popen(
        [nginx, "-p", str(state), "-c", str(state / "nginx" / "nginx.conf"),
         "-e", str(state / "logs" / "nginx-error.log"), "-g", globals_],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(app_port, app)
        wait_for_port(https_port, proxy)
        yield Origin(https_port, ca, nginx_files.site)
    finally:
        stop(proxy)
        stop(app)


def whoami(body: bytes) -> dict[str, str]:
    data: dict[str, str] = json.loads(body)
    return data


def test_the_rendered_site_holds_the_lock(origin: Origin) -> None:
    assert f'if ($http_x_origin_verify = "{SECRET}")' in origin.site
    assert "set_real_ip_from 127.0.0.0/8;" in origin.site


def test_requests_without_the_secret_header_get_403(origin: Origin) -> None:
    for path in ("/whoami", "/", "/version", "/healthz"):
        status, body = origin.request(path)
        assert status == 403, path
        assert b"clientIP" not in body and b"version" not in body
    status, _ = origin.request("/whoami", method="POST")
    assert status == 403


def test_a_wrong_or_partial_secret_gets_403(origin: Origin) -> None:
    for value in ("wrong", SECRET[:-1], SECRET + "x", SECRET.lower(), f" {SECRET}x"):
        status, _ = origin.request("/whoami", headers={HEADER: value})
        assert status == 403, value


def test_requests_with_the_secret_header_reach_the_app(origin: Origin) -> None:
    status, body = origin.request("/whoami", headers={HEADER: SECRET})
    assert status == 200
    assert whoami(body)["instance"] == "edge-sin-0"
    status, body = origin.request("/version", headers={HEADER: SECRET})
    assert status == 200 and b"version" in body


def test_the_health_check_path_is_open_and_only_that_path(origin: Origin) -> None:
    status, body = origin.request("/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    status, _ = origin.request("/readyz?probe=route53")
    assert status == 200
    # nginx normalizes the path before the check: no detour through the open path.
    for sneaky in ("/readyz/../whoami", "/readyz/", "/readyzx", "//readyz/../whoami"):
        status, _ = origin.request(sneaky)
        assert status in (403, 404) and status != 200, sneaky
        if "whoami" in sneaky:
            assert status == 403, sneaky


def test_the_targets_own_edge_name_is_served_and_certified(origin: Origin) -> None:
    # What a Route 53 health check (SNI on) and CloudFront's failover origin use.
    status, _ = origin.request("/readyz", host=OWN_NAME)
    assert status == 200
    status, _ = origin.request("/whoami", host=OWN_NAME)
    assert status == 403
    status, _ = origin.request("/whoami", host=OWN_NAME, headers={HEADER: SECRET})
    assert status == 200


def test_the_app_sees_the_viewer_address_cloudfront_appended(origin: Origin) -> None:
    # CloudFront appends the viewer's address to whatever X-Forwarded-For it got;
    # nginx trusts CloudFront's addresses only, the app trusts nginx only.
    status, body = origin.request("/whoami", headers={
        HEADER: SECRET, "X-Forwarded-For": "198.51.100.7"})
    assert status == 200 and whoami(body)["clientIP"] == "198.51.100.7"
    status, body = origin.request("/whoami", headers={
        HEADER: SECRET, "X-Forwarded-For": "192.0.2.66, 198.51.100.7"})
    assert status == 200 and whoami(body)["clientIP"] == "198.51.100.7", "forged entry won"
