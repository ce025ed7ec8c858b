"""Stale lock detection on a file backend, on real processes (no engine needed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gin_deploy import automation, stack_locks


def write_lock(backend: Path, pid: int, host: str | None = None, stack: str = "dev") -> Path:
    directory = backend / ".pulumi" / "locks" / "organization" / "gin-deploy" / stack
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"lock-{pid}.json"
    path.write_text(json.dumps({"pid": pid, "username": "ci", "timestamp": "2026-12-01T10:00:00Z",
                                "hostname": host or socket.gethostname()}))
    (directory / f"lock-{pid}.json.attrs").write_text("{}")
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def settings(tmp_path: Path) -> automation.Settings:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "Pulumi.yaml").write_text("name: gin-deploy\nruntime: python\n")
    return automation.Settings(work_dir=work, backend_url=f"file://{tmp_path / 'backend'}",
                               passphrase_file=tmp_path / "pass")


def test_a_dead_holder_on_this_host_is_stale_and_named(tmp_path: Path) -> None:
    pid = dead_pid()
    write_lock(tmp_path / "backend", pid)
    with pytest.raises(automation.StaleLockError) as err:
        automation.check_stale_lock("dev", settings(tmp_path))
    message = str(err.value)
    assert f"pulumi pid {pid} on {socket.gethostname()}" in message
    assert "pulumi cancel --stack dev --yes" in message and "--clear-stale-lock" in message
    # A StaleLockError is a StackLockedError: callers that handle locks handle it too.
    assert isinstance(err.value, automation.StackLockedError)


def test_clear_removes_only_the_stale_lock(tmp_path: Path) -> None:
    backend = tmp_path / "backend"
    stale = write_lock(backend, dead_pid())
    cleared = automation.check_stale_lock("dev", settings(tmp_path), clear=True)
    assert [lock.path for lock in cleared] == [stale]
    assert not stale.exists() and not stale.with_name(stale.name + ".attrs").exists()


def test_a_live_pulumi_holder_another_host_or_another_stack_is_left_alone(
        tmp_path: Path) -> None:
    backend = tmp_path / "backend"
    # A live process whose command line says pulumi (as the CLI's would).
    live = subprocess.Popen(["bash", "-c", "exec -a pulumi sleep 30"])
    try:
        live_lock = write_lock(backend, live.pid)
        remote = write_lock(backend, dead_pid(), host="ci-runner-7")
        other_stack = write_lock(backend, dead_pid(), stack="prod")
        assert automation.check_stale_lock("dev", settings(tmp_path), clear=True) == []
        assert live_lock.exists() and remote.exists() and other_stack.exists()
    finally:
        live.kill()
        live.wait()


def test_a_reused_pid_that_is_not_pulumi_counts_as_gone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        write_lock(tmp_path / "backend", other.pid)
        with pytest.raises(automation.StaleLockError):
            automation.check_stale_lock("dev", settings(tmp_path))
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(("url", "expected"), [
    ("file:///var/lib/state", Path("/var/lib/state")),
    ("file:///var/lib/state?no_tmp_dir=true", Path("/var/lib/state")),
    ("s3://bucket/prefix?region=us-east-1", None),
])
def test_only_file_backends_are_inspected(url: str, expected: Path | None) -> None:
    assert stack_locks.file_backend_dir(url) == expected


def test_the_command_line_check_exits_3_then_clears(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    s = settings(tmp_path)
    monkeypatch.setattr(automation, "Settings", lambda: s)
    lock = write_lock(tmp_path / "backend", dead_pid())
    assert stack_locks.main(["--stack", "dev"]) == 3
    assert "no longer running" in capsys.readouterr().err and lock.exists()
    assert stack_locks.main(["--stack", "dev", "--clear"]) == 0
    assert not lock.exists()
