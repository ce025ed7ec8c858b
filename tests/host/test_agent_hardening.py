"""Issue 16 on the agent alone: what a local attacker or a careless config could make root
do on a host, reproduced, and the agent refusing it. (Stack-level reproductions with the
system nginx and supervisord are in test_system_mode.py.)"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent import cli, tls
from gin_deploy.agent.cli import read_payload
from gin_deploy.agent.files import atomic_symlink, write_file
from gin_deploy.agent.layout import Layout, ensure_state_dir, save_state
from gin_deploy.agent.output import HostError, emit, log, redact, set_secrets
from gin_deploy.agent.payload import DeployPayload
from gin_deploy.agent.releases import keyed_release

pytestmark = [pytest.mark.host, pytest.mark.timeout(60)]

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another user)")
NOBODY = 65534


def test_a_planted_symlink_at_the_temp_name_is_not_followed(tmp_path: Path) -> None:
    """Before: the temp file was <path>.tmp-<pid>, opened O_CREAT|O_TRUNC: a symlink planted
    there made the agent truncate and chmod whatever it pointed at."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    victim.chmod(0o600)
    target = tmp_path / "state.json"
    os.symlink(victim, f"{target}.tmp-{os.getpid()}")
    write_file(str(target), "{}", 0o644)
    assert victim.read_text() == "precious"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert target.read_text() == "{}" and not target.is_symlink()


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("{}")
    victim.chmod(0o600)
    link = tmp_path / "state.json"
    link.symlink_to(victim)
    # Same content: a write through the link would be "no change" and chmod nothing.
    assert write_file(str(link), "{}", 0o644) is True
    assert not link.is_symlink() and stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_state_file_and_logs_are_private(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    save_state(layout, {"app": "a"})
    assert stat.S_IMODE(os.stat(layout.state_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(layout.logs).st_mode) == 0o700


def test_no_temp_or_symlink_leftovers(tmp_path: Path) -> None:
    write_file(str(tmp_path / "f"), "x")
    atomic_symlink("f", str(tmp_path / "l"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "l"]


@as_root
def test_an_empty_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """Before: accepted, and root then ran <stateDir>/bin/hostctl.py, which its owner could
    swap at any time."""
    tmp_path.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(HostError, match=r"state is owned by uid 65534, not by the deploying"):
        ensure_state_dir(Layout(str(state)))
    assert not (state / "bin").exists()


@as_root
def test_a_parent_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    parent = tmp_path / "theirs"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)
    with pytest.raises(HostError, match=r"theirs is owned by uid 65534, not by the deploying "
                                        r"user \(uid 0\) or root"):
        ensure_state_dir(Layout(str(parent / "state")))


def test_a_group_or_world_writable_parent_is_refused_unless_sticky(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(HostError, match=r"shared is writable by group or others \(mode 0777\)"):
        ensure_state_dir(Layout(str(shared / "state")))
    shared.chmod(0o1777)  # like /tmp: others cannot replace what we own in it
    ensure_state_dir(Layout(str(shared / "state")))


def test_a_writable_state_dir_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o775)
    with pytest.raises(HostError, match=r"writable by group or others \(mode 0775\)"):
        ensure_state_dir(Layout(str(state)))


def test_a_state_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HostError, match=r"state is not a directory"):
        ensure_state_dir(Layout(str(tmp_path / "state")))


@as_root
def test_a_symlinked_parent_is_checked_where_it_points(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    (tmp_path / "link").symlink_to(theirs)
    with pytest.raises(HostError, match=r"theirs is owned by uid 65534"):
        ensure_state_dir(Layout(str(tmp_path / "link" / "state")))


def test_the_agent_sets_its_own_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        cli.main(["status", "--state", str(tmp_path / "none")])
        assert os.umask(0) == 0o022
    finally:
        os.umask(old)


def test_the_certbot_deploy_hook_quotes_every_word(tmp_path: Path) -> None:
    """certbot stores the hook and runs it through a shell."""
    layout = Layout(str(tmp_path / "a dir; touch pwned"))
    hook = tls.deploy_hook(layout)
    assert shlex.split(hook) == [sys.executable, layout.agent, "reload-nginx", "--state",
                                 layout.state_dir]


# --------------------------------------------------------------------------- 16.5 secrets

AWKWARD = 'pa"ss\\wo\'rd\u00e9'


@pytest.mark.parametrize("shown", [
    lambda v: json.dumps({"error": v}),  # a JSON-escaped value in a message
    lambda v: repr(v),  # a Python repr, e.g. in an exception text
    lambda v: repr(v.encode()),  # bytes, e.g. a subprocess's output
])
def test_escaped_and_repr_forms_of_a_secret_are_redacted(
        shown: Any, capsys: pytest.CaptureFixture[str]) -> None:
    set_secrets([AWKWARD])
    try:
        log(f"failed: {shown(AWKWARD)}")
        emit({"x": AWKWARD, "y": [f"in {AWKWARD} text"]})
    finally:
        set_secrets([])
    out = capsys.readouterr()
    for form in ("pa\"ss", 'pa\\"ss', "ss\\\\wo", "ss\\wo"):
        assert form not in out.err + out.out
    assert json.loads(out.out) == {"x": "***", "y": ["in *** text"]}


def test_the_origin_lock_value_is_registered_for_redaction(tmp_path: Path) -> None:
    data = {"app": "a", "stateDir": str(tmp_path / "s"), "mode": "user",
            "supervisor": "supervisord", "instances": [{"name": "a-1", "port": 9}],
            "release": {"id": "r", "binary": "/bin/true", "sha256": "0" * 64},
            "nginx": {"httpPort": 1, "httpsPort": 2, "site": "s", "main": "m"},
            "supervisord": {"programs": "[program:a-1]\n", "main": "m"},
            "tls": {"mode": "self-signed", "domains": ["localhost"]},
            "secretValues": ["origin-lock-value"]}
    read_payload(DeployPayload, io.StringIO(json.dumps(data)))
    try:
        assert redact("x origin-lock-value y") == "x *** y"
    finally:
        set_secrets([])


def _deploy_payload(tmp_path: Path, secret: str, **over: Any) -> DeployPayload:
    data = {"app": "a", "stateDir": str(tmp_path / "state"), "mode": "user",
            "supervisor": "supervisord", "instances": [{"name": "a-1", "port": 9}],
            "release": {"id": "v1-0123456789", "binary": "/bin/true", "sha256": "0" * 64},
            "nginx": {"httpPort": 1, "httpsPort": 2, "site": "s", "main": "m"},
            "supervisord": {"programs": "[program:a-1]\n", "main": "m"},
            "tls": {"mode": "self-signed", "domains": ["localhost"]},
            "env": {"PIN": secret, "A": "1"}, "secretEnvKeys": ["PIN"], **over}
    return read_payload(DeployPayload, io.StringIO(json.dumps(data)))


def test_the_release_id_is_a_keyed_hmac_of_the_secrets(tmp_path: Path) -> None:
    """Before: the id was a 10-hex-digit sha256 of the env, secrets included: a 5-digit PIN
    was recovered from the world-visible releases/ name in a second."""
    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    rid = keyed_release(_deploy_payload(tmp_path, "12345"), layout).release.id
    # The same release deployed again is recognised as the same.
    assert keyed_release(_deploy_payload(tmp_path, "12345"), layout).release.id == rid
    assert keyed_release(_deploy_payload(tmp_path, "12346"), layout).release.id != rid
    assert rid.startswith("v1-0123456789-")
    # Without the host's key no guess can be checked: every PIN is equally likely.
    suffix = rid.rsplit("-", 1)[1]
    for pin in range(12340, 12350):
        plain = json.dumps([("PIN", str(pin))])
        assert hashlib.sha256(plain.encode()).hexdigest()[:10] != suffix
    assert stat.S_IMODE(os.stat(layout.release_key).st_mode) == 0o600
    other = Layout(str(tmp_path / "other"))
    ensure_state_dir(other)
    assert keyed_release(_deploy_payload(tmp_path, "12345"), other).release.id != rid


def test_a_release_without_secrets_keeps_the_programs_id(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "state"))
    ensure_state_dir(layout)
    p = _deploy_payload(tmp_path, "x", secretEnvKeys=[])
    assert keyed_release(p, layout).release.id == "v1-0123456789"
