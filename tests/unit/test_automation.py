"""The Automation API module's own logic (the engine itself is exercised in tests/e2e)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gin_deploy import automation
from gin_deploy.__main__ import parse_args

LOG = """Updating (dev):
 ~  command:local:Command local-deploy updating (13s) [diff: ~stdin]
    pulumi:pulumi:Stack gin-deploy-dev running error: update failed

Policies:
    ❌ gin-deploy@v0.0.1 (local: policy)
        - [mandatory]  host-tls-and-secrets  (command:local:Command: local-deploy)
          local-deploy: env vars ['DB_PASSWORD'] look like secrets

Resources:
    5 unchanged
"""


def test_failure_message_keeps_errors_and_policy_violations_not_progress() -> None:
    message = str(automation.OperationFailed("up", "dev", LOG))
    assert message.startswith("up of stack 'dev' failed:")
    assert "look like secrets" in message and "[mandatory]" in message
    assert "running error: update failed" in message
    assert "updating (13s)" not in message and "5 unchanged" not in message


def test_settings_generate_a_private_passphrase_once(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE",
                "PULUMI_BACKEND_URL"):
        monkeypatch.delenv(var, raising=False)
    env = automation.Settings(work_dir=tmp_path).env()
    passphrase = Path(env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    assert passphrase == tmp_path / ".pulumi-passphrase"
    assert passphrase.stat().st_mode & 0o077 == 0 and len(passphrase.read_text()) > 30
    first = passphrase.read_text()
    automation.Settings(work_dir=tmp_path).env()
    assert passphrase.read_text() == first
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path / '.pulumi-state'}"
    assert env["PATH"].startswith(str(tmp_path / ".tools" / "bin"))


def test_backend_url_from_the_environment_is_honoured(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://bucket/state")
    assert automation.Settings(work_dir=tmp_path).env()["PULUMI_BACKEND_URL"] == (
        "s3://bucket/state")


def test_cli_arguments(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                       ) -> None:
    args = parse_args(["up", "--stack", "dev", "-c", 'app={"name": "x"}', "--diff"])
    assert (args.operation, args.stack, args.config, args.diff) == (
        "up", "dev", [("app", '{"name": "x"}')], True)
    for bad in (["up"], ["deploy", "--stack", "dev"], ["refresh", "-s", "dev", "-c", "a=1"],
                ["up", "-s", "dev", "-c", "novalue"]):
        with pytest.raises(SystemExit) as err:
            parse_args(bad)
        assert err.value.code == 2
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(SystemExit):
        parse_args(["up", "-s", "dev", "--secret-from-env", "DB_PASSWORD=NOT_SET_ANYWHERE"])
    assert "environment variable NOT_SET_ANYWHERE is not set" in capsys.readouterr().err
    monkeypatch.setenv("DB_PW", "x")
    assert parse_args(["up", "-s", "dev", "--secret-from-env", "DB_PASSWORD=DB_PW"]
                      ).secret_from_env == [("DB_PASSWORD", "DB_PW")]
    assert os.environ["DB_PW"] == "x"
