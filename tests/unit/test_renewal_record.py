"""The agent's `renew` records every attempt (renewal.json, logs/renew.log), fails loudly
when certbot fails or leaves the served certificate short of the threshold, and its
`status` and deploys report what happened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent import cli
from gin_deploy.agent import tls as agent_tls
from gin_deploy.agent.certs import CryptographyCertTool
from gin_deploy.agent.layout import Layout, ensure_state_dir
from gin_deploy.agent.output import HostError
from gin_deploy.agent.records import last_deploy, record_deploy


def serve_cert(state: Path, days: int) -> None:
    """tls/server.crt as nginx would serve it, valid for `days`."""
    tool = CryptographyCertTool()
    tls = state / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    tool.create_ca(str(tls / "ca.crt"), str(tls / "ca.key"), "test CA")
    tool.create_leaf(str(tls / "ca.crt"), str(tls / "ca.key"), str(tls / "server.crt"),
                     str(tls / "server.key"), frozenset({"DNS:localhost"}), days)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ensure_state_dir(Layout(str(tmp_path)))
    (tmp_path / "acme" / "config").mkdir(parents=True)
    monkeypatch.setattr(agent_tls, "tool", lambda name: f"/fake/{name}")
    return tmp_path


def certbot(monkeypatch: pytest.MonkeyPatch, fail: str | None = None) -> None:
    def run(args: list[str], what: str, **kw: Any) -> None:
        if fail:
            raise HostError(f"{what} failed (exit 1): {fail}")
    monkeypatch.setattr(agent_tls, "run_cmd", run)


def record(state: Path) -> dict[str, Any]:
    return json.loads((state / "renewal.json").read_text())


def test_a_successful_renewal_records_run_success_and_days_left(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_cert(state, 80)
    certbot(monkeypatch)
    assert cli.main(["renew", "--state", str(state)]) == 0
    rec = record(state)
    assert rec["lastResult"] == "ok" and rec["error"] is None
    assert rec["lastSuccess"] == rec["lastRun"]
    assert 79 < rec["daysLeft"] <= 80
    assert "renew ok (certificate valid for 80.0 more days)" in (
        state / "logs" / "renew.log").read_text()


def test_a_failed_renewal_is_recorded_logged_and_keeps_the_last_success(
        state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    serve_cert(state, 80)
    certbot(monkeypatch)
    assert cli.main(["renew", "--state", str(state)]) == 0
    success = record(state)["lastSuccess"]
    certbot(monkeypatch, fail="Challenge failed for domain api.example.com")
    assert cli.main(["renew", "--state", str(state)]) == 1
    rec = record(state)
    assert rec["lastResult"] == "failed" and rec["lastSuccess"] == success
    assert "Challenge failed for domain api.example.com" in rec["error"]
    assert "hostctl: error: certificate renewal failed: certbot renew failed" in \
        capsys.readouterr().err
    assert "renew failed: certbot renew failed" in (state / "logs" / "renew.log").read_text()


def test_a_renewal_that_leaves_fewer_days_than_the_threshold_fails_loudly(
        state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    serve_cert(state, 10)  # certbot "succeeded" but the served certificate was not renewed
    certbot(monkeypatch)
    assert cli.main(["renew", "--state", str(state)]) == 1
    err = capsys.readouterr().err
    assert "expires in 10.0 days (< 14)" in err, err
    rec = record(state)
    assert rec["lastResult"] == "failed" and "lastSuccess" not in rec
    assert 9.9 < rec["daysLeft"] <= 10
    assert cli.main(["renew", "--state", str(state), "--min-days", "7"]) == 0


def test_deploys_record_their_outcome(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path))
    assert last_deploy(layout) is None
    record_deploy(layout, "failed", "1.2.3-abc", "instance hello-gin-9080 never became ready")
    rec = last_deploy(layout)
    assert rec is not None and (rec["result"], rec["release"]) == ("failed", "1.2.3-abc")
    assert rec["error"].startswith("instance hello-gin-9080") and rec["time"].endswith("Z")
