"""The agent against real nginx, supervisord and the Gin app: one user-mode stack with
three instances and self-signed TLS, driven through its life in order (deploy, idempotent
redeploy, TLS policy, client IP, crash recovery, rolling update, failed release with
rollback, rejected nginx config, destroy)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.host.conftest import (
    APP,
    Binary,
    Load,
    Stack,
    cleanup_stack,
    free_ports,
    port_free,
    require,
    result_of,
    run_agent,
    wait_for,
)

pytestmark = [pytest.mark.host, pytest.mark.timeout(180)]

SECRET = "s3cret-Value-never-printed"


@pytest.fixture(scope="module")
def stack(binaries: dict[str, Binary]) -> Iterator[Stack]:
    for tool in ("nginx", "supervisord", "supervisorctl"):
        require(tool)
    root = Path(tempfile.mkdtemp(prefix="hostctl-test-"))
    root.chmod(0o755)
    ports = free_ports(5)
    st = Stack(root / "state", ports[:3], ports[3], ports[4], binaries,
               env={"DB_PASSWORD": SECRET})
    try:
        yield st
    finally:
        cleanup_stack(st, root)


@pytest.fixture(scope="module")
def first_deploy(stack: Stack) -> dict[str, Any]:
    proc = stack.deploy(stack.payload("v1", secret_env_keys=("DB_PASSWORD",)))
    assert SECRET not in proc.stdout + proc.stderr
    return result_of(proc)


def v1(stack: Stack, **kw: Any) -> dict[str, Any]:
    return stack.payload("v1", secret_env_keys=("DB_PASSWORD",), **kw)


def v2(stack: Stack, **kw: Any) -> dict[str, Any]:
    return stack.payload("v2", secret_env_keys=("DB_PASSWORD",), **kw)


def test_deploy_serves_https_with_hsts_and_redirects_http(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    assert first_deploy["changed"] is True and first_deploy["previous"] is None
    assert first_deploy["caCert"] == str(stack.ca)
    assert [i["ready"] for i in first_deploy["instances"]] == [True, True, True]
    current = stack.state_dir / "current"
    assert os.readlink(current) == f"releases/{first_deploy['release']}"
    env_json = current / "env.json"
    assert env_json.stat().st_mode & 0o777 == 0o600
    assert json.loads(env_json.read_text())["DB_PASSWORD"] == SECRET
    assert (stack.state_dir / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600

    status, headers, body = stack.https("/healthz")
    assert status == 200, body
    assert "max-age=" in headers["Strict-Transport-Security"]
    status, _, body = stack.https("/version")
    assert status == 200 and json.loads(body)["version"] == "v1"

    c = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=5)
    c.request("GET", "/version?x=1", headers={"Host": "localhost"})
    resp = c.getresponse()
    assert resp.status in (301, 308)
    assert resp.getheader("Location") == f"https://localhost:{stack.https_port}/version?x=1"
    c.close()


def test_redeploy_of_the_same_release_restarts_nothing(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    before = stack.instance_pids()
    daemons = stack.daemon_pids()
    assert len(before) == 3 and all(before.values())
    result = result_of(stack.deploy(v1(stack)))
    assert result["changed"] is False
    assert result["release"] == first_deploy["release"]
    assert stack.instance_pids() == before
    assert stack.daemon_pids() == daemons


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_is_refused_and_1_2_accepted(stack: Stack, first_deploy: dict[str, Any]) -> None:
    def handshake(version: ssl.TLSVersion) -> str:
        ctx = ssl.create_default_context(cafile=str(stack.ca))
        # Let the client offer old protocols at all (OpenSSL 3 hides them by default),
        # so a failure is the server's refusal.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", stack.https_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return str(tls.version())

    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError) as err:
        handshake(ssl.TLSVersion.TLSv1_1)
    assert "PROTOCOL_VERSION" in str(err.value).upper() or "UNSUPPORTED_PROTOCOL" in \
        str(err.value).upper(), err.value


def test_client_ip_cannot_be_forged_and_load_spreads(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    status, _, body = stack.https("/whoami", headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    who = json.loads(body)
    assert who["clientIP"] == "127.0.0.1"
    assert "203.0.113.9" not in who["forwardedFor"]
    assert who["proto"] == "https"

    seen = set()
    conn = http.client.HTTPSConnection("127.0.0.1", stack.https_port,
                                       context=stack.tls_context(), timeout=5)
    for _ in range(30):
        status, _, body = stack.https("/whoami", conn=conn)
        assert status == 200
        seen.add(json.loads(body)["instance"])
    conn.close()
    assert seen == {f"{APP}-{p}" for p in stack.ports}


def test_killed_instance_costs_no_request_and_comes_back(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    name = f"{APP}-{stack.ports[1]}"
    victim = stack.instance_pids()[name]
    assert victim
    with Load(stack) as load:
        time.sleep(1.5)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()

        def back() -> bool:
            pid = stack.instance_pids().get(name)
            return bool(pid and pid != victim and stack.instance_version(stack.ports[1]))

        came_back = wait_for(lambda: _quiet(back), 5)
        back_after = time.monotonic() - killed_at
        time.sleep(max(0.0, 4 - back_after))
    assert came_back, f"{name} not back within 5 s"
    assert load.ok > 100, load.summary()
    assert not load.failures, load.summary()


def _quiet(fn: Any) -> bool:
    with contextlib.suppress(OSError, http.client.HTTPException, ValueError, KeyError):
        return bool(fn())
    return False


def test_rolling_update_under_load_loses_no_request(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    payload = v2(stack)
    with Load(stack) as load:
        time.sleep(0.5)
        proc = stack.deploy(payload)
        time.sleep(0.5)
    result = result_of(proc)
    assert result["changed"] is True
    assert result["previous"] == first_deploy["release"]
    # with secrets the agent appends its keyed HMAC of their values (issue 16.5)
    assert re.fullmatch(re.escape(payload["release"]["id"]) + "-[0-9a-f]{10}",
                        result["release"])
    assert not load.failures, load.summary()
    assert load.ok > 100, load.summary()
    for port in stack.ports:
        assert stack.instance_version(port) == "v2"
    status, _, body = stack.https("/version")
    assert status == 200 and json.loads(body)["version"] == "v2"
    # instances were restarted one at a time, in order
    lines = [ln for ln in proc.stderr.splitlines() if "restarting" in ln or "is ready" in ln]
    assert lines == [f"hostctl: {verb} {APP}-{p}" if verb == "restarting" else
                     f"hostctl: {APP}-{p} is ready"
                     for p in stack.ports for verb in ("restarting", "ready")]


def test_release_that_never_gets_ready_is_rolled_back(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    good = os.readlink(stack.state_dir / "current")
    good_id = good.split("/")[-1]
    bad = v2(stack, env={**stack.env, "STARTUP_DELAY": "1h"}, ready_timeout=4)
    assert bad["release"]["id"] != good_id
    with Load(stack) as load:
        time.sleep(0.5)
        proc = stack.deploy(bad)
        time.sleep(0.5)
    assert proc.returncode == 1, proc.stderr
    first = f"{APP}-{stack.ports[0]}"
    message = proc.stderr
    assert f"instance {first} (http://127.0.0.1:{stack.ports[0]}/readyz)" in message
    assert "was not ready within 4s" in message
    assert f"rolled back to release {good_id}" in message
    assert f"lines of {stack.state_dir}/logs/{first}.log" in message
    assert SECRET not in message + proc.stdout
    assert os.readlink(stack.state_dir / "current") == good
    assert not load.failures, load.summary()
    assert load.ok > 100, load.summary()
    # every instance is back on the good release and ready
    for port in stack.ports:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        c.request("GET", "/readyz")
        assert c.getresponse().status == 200
        c.close()
        assert stack.instance_version(port) == "v2"
    status = result_of(_status(stack))
    assert status["current"] == good_id
    assert all(i["ready"] for i in status["instances"])


def _status(stack: Stack) -> Any:
    return run_agent("status", None, "--state", str(stack.state_dir))


def test_invalid_nginx_site_is_rejected_and_old_config_keeps_serving(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    site_conf = stack.state_dir / "nginx" / "site.conf"
    before_site = site_conf.read_text()
    before_pids = stack.instance_pids()
    broken = v2(stack)
    broken["nginx"]["site"] += "\nthis_is_not_a_directive on;\n"
    proc = stack.deploy(broken)
    assert proc.returncode == 1
    assert "nginx -t" in proc.stderr
    assert 'unknown directive "this_is_not_a_directive"' in proc.stderr
    assert site_conf.read_text() == before_site
    assert not list(site_conf.parent.glob("*.staged"))
    assert stack.instance_pids() == before_pids
    status, _, body = stack.https("/version")
    assert status == 200 and json.loads(body)["version"] == "v2"


def test_destroy_leaves_no_process_port_or_file(
        stack: Stack, first_deploy: dict[str, Any]) -> None:
    pids = [p for p in stack.instance_pids().values() if p] + stack.daemon_pids()
    assert len(pids) == 5
    from gin_deploy.agent.layout import Layout
    from gin_deploy.agent.processes import pid_alive, target_processes

    pids += target_processes(Layout(str(stack.state_dir)))  # nginx workers
    proc = stack.destroy()
    assert proc.returncode == 0, proc.stderr
    assert not stack.state_dir.exists()
    alive = [p for p in set(pids) if pid_alive(p)]
    assert not alive
    for port in [*stack.ports, stack.http_port, stack.https_port]:
        assert port_free(port), port
    again = stack.destroy()
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["existed"] is False


# --------------------------------------------------------------------------- smaller stacks


def test_failed_first_deploy_stops_the_instances(make_stack: Any) -> None:
    st = make_stack(instances=1)
    proc = st.deploy(st.payload("v1", env={"STARTUP_DELAY": "1h"}, ready_timeout=2))
    assert proc.returncode == 1
    name = f"{APP}-{st.ports[0]}"
    assert f"instance {name}" in proc.stderr
    assert "no previous release to roll back to; instances stopped" in proc.stderr
    assert not (st.state_dir / "current").exists()
    assert wait_for(lambda: port_free(st.ports[0]), 5)
    # a good deploy afterwards starts it again
    result = result_of(st.deploy(st.payload("v1")))
    assert result["previous"] is None and result["instances"][0]["ready"]


def test_busy_port_fails_preflight_naming_it(make_stack: Any) -> None:
    st = make_stack(instances=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", st.ports[1]))
        s.listen()
        proc = st.deploy(st.payload("v1"))
    assert proc.returncode == 1
    assert f"port {st.ports[1]} (instance {APP}-{st.ports[1]}) already in use" in proc.stderr
    assert not (st.state_dir / "supervisor" / "supervisord.pid").exists()


FAKE_CERTBOT = r'''#!{python}
"""Stand-in for certbot: records its arguments, issues a cert from a throwaway CA."""
import datetime, json, os, subprocess, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

args = sys.argv[1:]
with open(os.environ["FAKE_CERTBOT_LOG"], "a") as fh:
    fh.write(json.dumps({{"args": args, "bundle": os.environ.get("REQUESTS_CA_BUNDLE")}}) + "\n")
opt = lambda name: args[args.index(name) + 1]
if args[0] == "certonly":
    webroot = opt("-w")
    assert os.path.isdir(os.path.join(webroot, ".well-known", "acme-challenge")), webroot
    domain = opt("-d")
    live = os.path.join(opt("--config-dir"), "live", domain)
    os.makedirs(live, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-acme " + domain)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(live, "fullchain.pem"), "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(live, "privkey.pem"), "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
subprocess.run(opt("--deploy-hook"), shell=True, check=True)
'''


def test_acme_uses_certbot_with_webroot_and_reloads_nginx(
        make_stack: Any, tmp_path: Path) -> None:
    st = make_stack(instances=1)
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    certbot = fake_bin / "certbot"
    certbot.write_text(FAKE_CERTBOT.format(python=sys.executable))
    certbot.chmod(0o755)
    calls = tmp_path / "certbot.jsonl"
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
           "FAKE_CERTBOT_LOG": str(calls)}
    bundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    payload = st.payload("v1", acme={"email": "ops@example.com",
                                     "server": "https://acme.test/dir", "ca_bundle": bundle})
    proc = st.deploy(payload, env=env)
    result_of(proc)

    call = json.loads(calls.read_text().splitlines()[0])
    args = call["args"]
    sd = str(st.state_dir)
    assert args[:4] == ["certonly", "--webroot", "-w", f"{sd}/acme/webroot"]
    for flag, value in (("-d", "localhost"), ("--server", "https://acme.test/dir"),
                        ("--email", "ops@example.com"), ("--config-dir", f"{sd}/acme/config"),
                        ("--work-dir", f"{sd}/acme/work"), ("--logs-dir", f"{sd}/acme/logs")):
        assert args[args.index(flag) + 1] == value
    assert "--agree-tos" in args and "--non-interactive" in args
    assert args[args.index("--deploy-hook") + 1].endswith(
        f"{sd}/bin/hostctl.py reload-nginx --state {sd}")
    assert call["bundle"] == f"{sd}/acme/ca-bundle.pem"

    live = st.state_dir / "acme" / "config" / "live" / "localhost"
    assert (st.state_dir / "tls" / "server.crt").resolve() == live / "fullchain.pem"
    ctx = ssl.create_default_context(cafile=str(live / "fullchain.pem"))
    ctx.check_hostname = False
    try:
        with socket.create_connection(("127.0.0.1", st.https_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            peer = tls.getpeercert()
    except ssl.SSLError as exc:
        errors = (st.state_dir / "logs" / "nginx-error.log").read_text()[-3000:]
        served = ssl.get_server_certificate(("127.0.0.1", st.https_port))
        raise AssertionError(f"{exc}\n{proc.stderr}\n{errors}\n{served}\n"
                             f"{(live / 'fullchain.pem').read_text()}") from exc
    assert peer and ("commonName", "fake-acme localhost") in [
        item for rdn in peer["subject"] for item in rdn]

    # nginx answers HTTP-01 challenges from the webroot
    token = st.state_dir / "acme" / "webroot" / ".well-known" / "acme-challenge" / "tok123"
    token.write_text("tok123.thumbprint")
    token.chmod(0o644)
    c = http.client.HTTPConnection("127.0.0.1", st.http_port, timeout=5)
    c.request("GET", "/.well-known/acme-challenge/tok123", headers={"Host": "localhost"})
    resp = c.getresponse()
    assert (resp.status, resp.read()) == (200, b"tok123.thumbprint")
    c.close()

    # a second deploy does not ask for a certificate again; renew does, with the same dirs
    result_of(st.deploy(payload, env=env))
    assert len(calls.read_text().splitlines()) == 1
    renew = run_agent("renew", None, "--state", sd, env=env)
    assert renew.returncode == 0, renew.stderr
    last = json.loads(calls.read_text().splitlines()[-1])
    assert last["args"][0] == "renew" and f"{sd}/acme/config" in last["args"]
    assert last["bundle"] == f"{sd}/acme/ca-bundle.pem"


def test_agent_runs_on_another_python_without_cryptography(make_stack: Any) -> None:
    """The agent runs with the host's own python3 (the system one, as on a remote host, or
    HOSTCTL_TEST_PYTHON, e.g. a 3.9), using the openssl CLI instead of `cryptography`."""
    python = os.environ.get("HOSTCTL_TEST_PYTHON", "/usr/bin/python3")
    assert Path(python).exists(), f"{python} is missing: scripts/setup.sh installs python3"
    require("openssl")
    st = make_stack(instances=1)
    env = {**os.environ, "HOSTCTL_NO_CRYPTOGRAPHY": "1"}
    result = result_of(run_agent("deploy", st.payload("v1"), env=env, python=python))
    assert result["instances"][0]["ready"]
    status, headers, _ = st.https("/healthz")
    assert status == 200 and "max-age=" in headers["Strict-Transport-Security"]
    gone = run_agent("destroy", {"app": APP, "stateDir": str(st.state_dir), "mode": "user",
                                 "supervisor": "supervisord",
                                 "instances": [{"name": f"{APP}-{st.ports[0]}",
                                                "port": st.ports[0]}]},
                     env=env, python=python)
    assert gone.returncode == 0, gone.stderr
    assert not st.state_dir.exists()
