"""SSH host keys: pinned in config (hostKey / knownHostsFile), refused when missing,
checked against what the host offers before any resource is registered."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.config.ssh_keys import HostKeyError, known_host_keys, parse_key, preferred
from gin_deploy.program.host_keys import HostKeyMismatch, check_host_key
from tests.unit.harness import HOST_KEY, run_program, stack_config, unsecret
from tests.unit.test_config import problems

SSH = {"name": "edge", "kind": "host", "connection": "ssh", "host": "203.0.113.10",
       "user": "deploy", "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"}


def keygen(tmp_path: Path, name: str, kind: str = "ed25519") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "c", "-f",
                    str(tmp_path / name)], check=True)
    return (tmp_path / f"{name}.pub").read_text().strip()


def test_an_unpinned_ssh_host_is_refused_with_how_to_get_its_key() -> None:
    found = problems({"targets": [SSH]}, secret=("targets",))
    assert len(found) == 1, found
    assert found[0].startswith("gin-deploy:targets[0].hostKey: the SSH host key must be pinned")
    assert "ssh-keyscan -p 22 203.0.113.10" in found[0]


@pytest.mark.parametrize(("key", "why"), [
    ("AAAAC3NzaC1lZDI1NTE5", "expected an OpenSSH public key line"),
    ("ssh-dss AAAA", "unknown key type 'ssh-dss'"),
    ("ssh-ed25519 not*base64", "does not decode"),
    ("ssh-rsa " + HOST_KEY.split()[1], "the key says it is 'ssh-ed25519', not 'ssh-rsa'"),
])
def test_a_malformed_host_key_names_the_problem(key: str, why: str) -> None:
    found = problems({"targets": [{**SSH, "hostKey": key}]}, secret=("targets",))
    assert len(found) == 1 and found[0].startswith("gin-deploy:targets[0].hostKey: "), found
    assert why in found[0]


def test_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    line = keygen(tmp_path, "k")
    printed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], check=True,
                             capture_output=True, text=True).stdout.split()[1]
    assert parse_key(line).fingerprint == printed
    with pytest.raises(HostKeyError):
        parse_key("ssh-ed25519")


def test_known_hosts_plain_hashed_port_and_revoked(tmp_path: Path) -> None:
    a, b, c = (keygen(tmp_path, n) for n in "abc")
    salt = b"0123456789abcdef0123"
    mac = hmac.new(salt, b"[h.example]:2222", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()}"
    file = tmp_path / "known_hosts"
    file.write_text(f"# comment\nother.example {c}\nh.example,10.0.0.1 {a}\n{hashed} {b}\n"
                    f"[h.example]:2222 {c}\n@revoked * {c}\n")
    assert known_host_keys(file, "h.example", 22) == [parse_key(a)]
    assert known_host_keys(file, "10.0.0.1", 22) == [parse_key(a)]
    assert known_host_keys(file, "h.example", 2222) == [parse_key(b)]  # c is revoked
    assert known_host_keys(file, "nowhere", 22) == []


def test_known_hosts_file_must_hold_a_key_for_the_host(tmp_path: Path) -> None:
    file = tmp_path / "known_hosts"
    file.write_text(f"other.example {HOST_KEY}\n")
    target = {**SSH, "knownHostsFile": str(file), "sshPort": 2222}
    found = problems({"targets": [target]}, secret=("targets",))
    assert len(found) == 1 and found[0].startswith(
        "gin-deploy:targets[0].knownHostsFile: "), found
    assert "no key for [203.0.113.10]:2222" in found[0]
    missing = problems({"targets": [{**SSH, "knownHostsFile": str(tmp_path / "nope")}]},
                       secret=("targets",))
    assert "does not exist" in missing[0]


def test_host_key_keys_only_apply_to_ssh() -> None:
    found = problems({"targets": [{"name": "l", "kind": "host", "hostKey": HOST_KEY}]})
    assert found == ["gin-deploy:targets[0].hostKey: only applies to connection: ssh"]


def test_the_connection_pins_the_preferred_key(tmp_path: Path) -> None:
    rsa, ed = keygen(tmp_path, "r", "rsa"), keygen(tmp_path, "e")
    file = tmp_path / "known_hosts"
    file.write_text(f"203.0.113.10 {rsa}\n203.0.113.10 {ed}\n")
    assert preferred([parse_key(rsa), parse_key(ed)]) == parse_key(ed)
    key = tmp_path / "id"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    config: dict[str, Any] = stack_config("dev")
    config["gin-deploy:targets"] = [{**SSH, "privateKey": None, "privateKeyPath": str(key),
                                     "knownHostsFile": str(file)}]
    mocks = run_program(config)
    for typ in ("command:remote:Command", "command:remote:CopyToRemote"):
        for resource in mocks.of_type(typ):
            conn = unsecret(resource.inputs["connection"])
            assert conn["hostKey"] == parse_key(ed).line, resource.name


def test_a_host_offering_another_key_is_refused_showing_both_fingerprints(
        tmp_path: Path) -> None:
    pinned = parse_key(HOST_KEY)
    offered = parse_key(keygen(tmp_path, "mitm"))
    with pytest.raises(HostKeyMismatch) as err:
        check_host_key("gin-deploy:targets[0]", "h", 2222, [pinned],
                       probe=lambda host, port: [offered])
    message = str(err.value)
    assert message.startswith("gin-deploy:targets[0]: the SSH host h:2222 offers host key "
                              f"{offered.fingerprint} (ssh-ed25519)")
    assert f"pins {pinned.fingerprint}" in message and "nothing was sent" in message


def test_a_host_offering_the_pinned_key_among_others_passes(tmp_path: Path) -> None:
    pinned = parse_key(HOST_KEY)
    other = parse_key(keygen(tmp_path, "rsa", "rsa"))
    check_host_key("p", "h", 22, [pinned], probe=lambda host, port: [other, pinned])


def test_an_unreachable_host_only_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr("pulumi.log.warn", lambda msg, *a, **k: warned.append(msg))
    check_host_key("p", "h", 22, [parse_key(HOST_KEY)], probe=lambda host, port: [])
    check_host_key("p", "h", 22, [parse_key(HOST_KEY)], probe=lambda host, port: None)
    assert "could not reach h:22" in warned[0] and "ssh-keyscan is not installed" in warned[1]
