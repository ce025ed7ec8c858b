"""TLS of the served endpoint, scanned: a real user-mode stack (nginx + supervisord + two
Gin instances, self-signed TLS from the stack's CA) deployed by the agent with the configs
gin_deploy.render produces, then checked by

- sslyze (pinned, own virtualenv: scripts/sslyze.sh): compliant with Mozilla's
  "intermediate" profile, certificate path validation included, and HSTS at least the
  profile's max-age (sslyze leaves that part of the profile out of its own check);
- testssl.sh (Debian's `testssl`): protocols, server defaults, headers and every
  vulnerability check, with no finding of severity LOW or above (nor a WARN about a
  check that could not run) beyond the justified ones;
- a plain TLS client: TLS 1.0 and 1.1 refused, 1.2 and 1.3 accepted, HSTS on every
  response.

Exceptions: tests/security_exceptions.toml (sections testssl and sslyze). Everything
stays on 127.0.0.1; testssl is told the IP and never resolves names.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.host.conftest import (
    Binary,
    Stack,
    cleanup_stack,
    free_ports,
    require,
    result_of,
)
from tests.security_exceptions import exceptions, unused

pytestmark = [pytest.mark.host]

ROOT = Path(__file__).resolve().parents[2]
SSLYZE = ROOT / "scripts" / "sslyze.sh"
# Mozilla's profiles (5.7) ask for HSTS with max-age of at least two years.
MOZILLA_HSTS_MIN_AGE = 63072000
# testssl.sh severities, lowest first; OK/INFO/DEBUG are not findings.
FAILING_SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL")


@pytest.fixture(scope="module")
def stack(binaries: dict[str, Binary]) -> Iterator[Stack]:
    for tool in ("nginx", "supervisord", "supervisorctl"):
        require(tool)
    root = Path(tempfile.mkdtemp(prefix="hostctl-tls-"))
    root.chmod(0o755)
    ports = free_ports(4)
    st = Stack(root / "state", ports[:2], ports[2], ports[3], binaries)
    try:
        result_of(st.deploy(st.payload("v1")))
        yield st
    finally:
        cleanup_stack(st, root)


# --- a plain client ---------------------------------------------------------------------------


def handshake(stack: Stack, version: ssl.TLSVersion) -> str:
    ctx = ssl.create_default_context(cafile=str(stack.ca))
    # Let the client offer old protocols at all (OpenSSL 3 hides them by default), so a
    # failure is the server's refusal.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", stack.https_port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return str(tls.version())


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_are_refused(stack: Stack, version: ssl.TLSVersion) -> None:
    with pytest.raises(ssl.SSLError) as err:
        handshake(stack, version)
    message = str(err.value).upper()
    assert "PROTOCOL_VERSION" in message or "UNSUPPORTED_PROTOCOL" in message, err.value


@pytest.mark.timeout(60)
def test_tls_1_2_and_1_3_are_accepted(stack: Stack) -> None:
    assert handshake(stack, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(stack, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/healthz", "/no-such-path"])
def test_hsts_is_on_every_response(stack: Stack, path: str) -> None:
    status, headers, _ = stack.https(path)
    assert status in (200, 404)
    hsts = headers["Strict-Transport-Security"]
    match = re.fullmatch(r"max-age=(\d+)(; includeSubDomains)?(; preload)?", hsts)
    assert match and int(match[1]) >= MOZILLA_HSTS_MIN_AGE, hsts


# --- sslyze -----------------------------------------------------------------------------------


def sslyze(stack: Stack, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                           dict[str, Any]]:
    if shutil.which("python3") is None:
        pytest.skip("python3 is not installed (needed for sslyze's own virtualenv)")
    done = subprocess.run(
        [str(SSLYZE), "--mozilla_config=intermediate", "--http_headers", "--sni", "localhost",
         f"--json_out={out}", *extra, f"127.0.0.1:{stack.https_port}"],
        capture_output=True, text=True, timeout=600, check=False)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    [result] = json.loads(out.read_text())["server_scan_results"]
    assert result["scan_status"] == "COMPLETED", result.get("connectivity_error_trace")
    return done, dict(result["scan_result"])


def compliance_issues(stdout: str) -> dict[str, str]:
    """`* criterion: description` lines of sslyze's compliance section."""
    section = stdout.split("COMPLIANCE AGAINST TLS CONFIGURATION", 1)[-1]
    return dict(re.findall(r"^\s+\* (\w+): (.*)$", section, re.MULTILINE))


@pytest.mark.timeout(900)   # the first run installs sslyze into its cache
def test_sslyze_mozilla_intermediate_compliant(stack: Stack, tmp_path: Path) -> None:
    allowed = exceptions("sslyze")
    done, scan = sslyze(stack, tmp_path / "sslyze.json", "--certinfo_ca_file", str(stack.ca))
    issues = compliance_issues(done.stdout)
    unexpected = {k: v for k, v in issues.items() if (k,) not in allowed}
    assert not unexpected, json.dumps(unexpected, indent=2)
    assert not unused("sslyze", {(k,) for k in issues}), "stale sslyze exceptions"
    if not allowed:
        assert done.returncode == 0 and "OK - Compliant" in done.stdout, done.stdout[-3000:]

    supported = {name: scan[f"{name}_cipher_suites"]["result"]["is_tls_version_supported"]
                 for name in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3")}
    assert supported == {"ssl_2_0": False, "ssl_3_0": False, "tls_1_0": False,
                         "tls_1_1": False, "tls_1_2": True, "tls_1_3": True}
    hsts = scan["http_headers"]["result"]["strict_transport_security_header"]
    assert hsts and hsts["max_age"] >= MOZILLA_HSTS_MIN_AGE, hsts


@pytest.mark.timeout(300)
def test_sslyze_check_is_real(stack: Stack, tmp_path: Path) -> None:
    """Without the stack's CA the chain cannot be validated: the same check must fail."""
    done, _ = sslyze(stack, tmp_path / "sslyze.json")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "certificate_path_validation" in compliance_issues(done.stdout)


# --- testssl.sh -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def testssl_findings(stack: Stack, tmp_path_factory: pytest.TempPathFactory,
                     ) -> list[dict[str, Any]]:
    testssl = require("testssl")
    out = tmp_path_factory.mktemp("testssl") / "testssl.json"
    done = subprocess.run(
        [testssl, "--quiet", "--color", "0", "--warnings", "off",
         # Never resolve names: the IP is given, the name is only for SNI and the URL.
         "--nodns", "none", "--ip", "127.0.0.1",
         "--connect-timeout", "5", "--openssl-timeout", "5",
         "--add-ca", str(stack.ca), "--jsonfile", str(out),
         # Protocols, server defaults (certificate), headers, every vulnerability check.
         "--protocols", "--server-defaults", "--headers", "--vulnerable",
         f"https://localhost:{stack.https_port}/healthz"],
        capture_output=True, text=True, timeout=240, check=False)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    findings: list[dict[str, Any]] = json.loads(out.read_text())
    assert findings, done.stdout[-3000:]
    return findings


@pytest.mark.timeout(300)
def test_testssl_reports_no_vulnerability(testssl_findings: list[dict[str, Any]]) -> None:
    allowed = exceptions("testssl")
    failing = {(f["id"], f["severity"]): f["finding"] for f in testssl_findings
               if f["severity"] in FAILING_SEVERITIES}
    unexpected = [f"{sev} {id_}: {finding}" for (id_, sev), finding in failing.items()
                  if (id_, sev) not in allowed]
    assert not unexpected, "\n".join(unexpected)
    assert not unused("testssl", set(failing)), "stale testssl exceptions"


@pytest.mark.timeout(300)
def test_testssl_ran_every_check(testssl_findings: list[dict[str, Any]]) -> None:
    by_id = {f["id"]: f for f in testssl_findings}
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert by_id[old]["finding"].startswith("not offered"), by_id[old]
    for current in ("TLS1_2", "TLS1_3"):
        assert by_id[current]["finding"].startswith("offered"), by_id[current]
    assert by_id["HSTS_time"]["severity"] == "OK", by_id["HSTS_time"]
    assert by_id["cert_chain_of_trust"]["severity"] == "OK", by_id["cert_chain_of_trust"]
    for vulnerability in ("heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego",
                          "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32",
                          "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4"):
        assert vulnerability in by_id, f"testssl did not run the {vulnerability} check"
        assert by_id[vulnerability]["severity"] in ("OK", "INFO"), by_id[vulnerability]
