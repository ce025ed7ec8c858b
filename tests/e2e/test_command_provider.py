"""The stand-in `command` provider (tools/command-provider) under the real Pulumi engine.

Each test writes a folder-based Python project whose program builds pulumi-command resources
from a JSON `spec` in stack config, points the project's `plugins.providers` at the stand-in
(so it is used even when the official plugin sits on PATH), and drives `pulumi` from .tools/bin
through the Automation API. Side-effect files prove what ran, and how often.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
PROVIDER = ROOT / "tools" / "command-provider" / "pulumi-resource-command"
SECRET = "s3cr3t-stdin-literal-7f1c"

PROGRAM = '''\
import json

import pulumi
import pulumi_command as command

config = pulumi.Config()
spec = json.loads(config.require("spec"))


def connection(c):
    key = config.require_secret(c.get("keyConfig", "privateKey"))
    return command.remote.ConnectionArgs(
        host=c["host"], port=c["port"], user=c["user"], private_key=key,
        dial_error_limit=c.get("dialErrorLimit", 2), per_dial_timeout=5)


for r in spec:
    args = dict(r.get("args", {}))
    if "secretStdin" in r:
        args["stdin"] = pulumi.Output.secret(r["secretStdin"])
    opts = pulumi.ResourceOptions(**r.get("opts", {}))
    if r["kind"] == "local":
        res = command.local.Command(r["name"], **args, opts=opts)
    elif r["kind"] == "remote":
        res = command.remote.Command(r["name"], connection=connection(r["connection"]),
                                     **args, opts=opts)
    else:
        res = command.remote.CopyToRemote(r["name"], connection=connection(r["connection"]),
                                          source=pulumi.FileAsset(r["source"]), **args,
                                          opts=opts)
    if r["kind"] != "copy":
        pulumi.export(r["name"], res.stdout)
'''


class Project:
    """A temp project + stack using the stand-in provider; `up(spec)` runs one update."""

    def __init__(self, base: Path, name: str) -> None:
        if not (TOOLS / "bin" / "pulumi").exists():
            pytest.fail(f"{TOOLS / 'bin' / 'pulumi'} is missing: run scripts/setup.sh first")
        plugin_dir = base / "plugin"
        plugin_dir.mkdir()
        wrapper = plugin_dir / "pulumi-resource-command"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{PROVIDER}" "$@"\n')
        wrapper.chmod(0o755)
        work = base / "project"
        work.mkdir()
        (work / "Pulumi.yaml").write_text(json.dumps({
            "name": name,
            "runtime": {"name": "python", "options": {"virtualenv": sys.prefix}},
            "plugins": {"providers": [{"name": "command", "path": str(plugin_dir)}]},
        }))
        (work / "__main__.py").write_text(PROGRAM)
        (base / "state").mkdir()
        env = {
            "PULUMI_HOME": str(base / "home"),
            "PULUMI_BACKEND_URL": f"file://{base / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "e2e",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }
        opts = auto.LocalWorkspaceOptions(
            work_dir=str(work), env_vars=env,
            pulumi_command=auto.PulumiCommand(root=str(TOOLS), skip_version_check=True))
        self.stack = auto.create_or_select_stack("e2e", work_dir=str(work), opts=opts)
        self.output: list[str] = []
        self.work, self.env = work, env

    def export(self) -> dict[str, Any]:
        """`pulumi stack export` as stored: secrets stay encrypted (no --show-secrets)."""
        proc = subprocess.run(
            [str(TOOLS / "bin" / "pulumi"), "stack", "export", "--stack", "e2e"],
            cwd=self.work, env={**os.environ, **self.env}, capture_output=True, text=True,
            timeout=60, check=True)
        data: dict[str, Any] = json.loads(proc.stdout)["deployment"]
        return data

    def set_spec(self, spec: list[dict[str, Any]]) -> None:
        self.stack.set_config("spec", auto.ConfigValue(json.dumps(spec)))

    def up(self, spec: list[dict[str, Any]]) -> auto.UpResult:
        self.set_spec(spec)
        return self.stack.up(color="never", on_output=self.output.append)

    def resource(self, name: str) -> dict[str, Any] | None:
        for r in self.export().get("resources", []):
            if r["urn"].endswith(f"::{name}") and r["type"].startswith("command:"):
                found: dict[str, Any] = r
                return found
        return None


def events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def is_encrypted(v: Any) -> bool:
    return isinstance(v, dict) and "ciphertext" in v


# ------------------------------------------------------------------------------- local.Command


def test_local_command_lifecycle(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    p = Project(tmp_path, "cmd-lifecycle")

    def spec(create_rev: int, trigger: str) -> list[dict[str, Any]]:
        return [
            {"kind": "local", "name": "main", "args": {
                "create": f'echo "create {create_rev}" >> {log}; echo "out:$GREETING"',
                "update": f'echo "update prev=$PULUMI_COMMAND_STDOUT" >> {log}; '
                          'echo "out:$GREETING:updated"',
                "delete": f'echo "delete main prev=$PULUMI_COMMAND_STDOUT" >> {log}',
                "environment": {"GREETING": "world"},
            }},
            {"kind": "local", "name": "repl", "args": {
                "create": f'echo "create repl $(cat) in $(basename $PWD)" >> {log}',
                "delete": f'echo "delete repl" >> {log}',
                "stdin": "from-stdin", "dir": str(tmp_path), "triggers": [trigger],
            }},
        ]

    # A preview runs nothing.
    p.set_spec(spec(1, "a"))
    p.stack.preview(color="never")
    assert events(log) == []

    # Create runs each `create` once; stdin, dir and environment reach the command.
    res = p.up(spec(1, "a"))
    assert res.outputs["main"].value == "out:world"
    assert sorted(events(log)) == ["create 1", f"create repl from-stdin in {tmp_path.name}"]

    # No change: nothing runs.
    res = p.up(spec(1, "a"))
    assert res.summary.resource_changes == {"same": 3}
    assert len(events(log)) == 2

    # A changed `create` with `update` set: updated in place, `update` sees the previous stdout.
    res = p.up(spec(2, "a"))
    assert res.summary.resource_changes == {"same": 2, "update": 1}
    assert events(log)[2:] == ["update prev=out:world"]
    assert res.outputs["main"].value == "out:world:updated"

    # A changed trigger replaces: the new one is created, then the old one deleted.
    res = p.up(spec(2, "b"))
    assert res.summary.resource_changes == {"same": 2, "replace": 1}
    assert events(log)[3:] == [f"create repl from-stdin in {tmp_path.name}", "delete repl"]

    # Destroy runs `delete`, with the last stdout in PULUMI_COMMAND_STDOUT.
    p.stack.destroy(color="never")
    assert sorted(events(log)[5:]) == ["delete main prev=out:world:updated", "delete repl"]


def test_secret_stdin_stays_secret(tmp_path: Path) -> None:
    p = Project(tmp_path, "cmd-secret")
    res = p.up([{"kind": "local", "name": "sec", "secretStdin": SECRET,
                 "args": {"create": "cat; echo done >&2"}}])
    assert res.outputs["sec"].secret and res.outputs["sec"].value == SECRET
    state = p.resource("sec")
    assert state is not None
    for key in ("stdin", "stdout", "stderr"):  # stderr: derived from a secret input too
        assert is_encrypted(state["outputs"][key]), key
    assert is_encrypted(state["inputs"]["stdin"])
    assert SECRET not in json.dumps(p.export())
    assert SECRET not in "".join(p.output)


def test_failing_command_fails_the_update(tmp_path: Path) -> None:
    p = Project(tmp_path, "cmd-fail")
    with pytest.raises(auto.CommandError) as failed:
        p.up([{"kind": "local", "name": "bad",
               "args": {"create": "echo to-stdout; echo boom-on-stderr >&2; exit 3"}}])
    message = str(failed.value)
    assert "exit status 3" in message
    assert "boom-on-stderr" in message and "to-stdout" in message
    assert p.resource("bad") is None  # a failed create leaves no resource behind


# ----------------------------------------------------------------- remote.* against a real sshd





def _connection(sshd: dict[str, Any], key: str = "privateKey") -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": sshd["port"], "user": sshd["user"], "keyConfig": key}


def test_remote_command_and_copy(tmp_path: Path, sshd: dict[str, Any]) -> None:
    remote = tmp_path / "remote"  # sshd runs on this machine: "remote" files are local files
    remote.mkdir()
    (remote / "existing-dir").mkdir()
    source = tmp_path / "payload.txt"
    source.write_text("payload v1\n")
    p = Project(tmp_path, "cmd-remote")
    p.stack.set_config("privateKey", auto.ConfigValue(sshd["key"], secret=True))
    conn = _connection(sshd)
    spec: list[dict[str, Any]] = [
        {"kind": "remote", "name": "r1", "connection": conn, "args": {
            "create": f'cat > {remote}/stdin-copy; echo "remote-ok:$GIN_E2E"',
            "delete": f'echo "deleted prev=$PULUMI_COMMAND_STDOUT" > {remote}/deleted',
            "stdin": "hello-remote", "environment": {"GIN_E2E": "env-ok"},
        }},
        {"kind": "copy", "name": "cp-file", "connection": conn, "source": str(source),
         "args": {"remote_path": f"{remote}/staging/sub/file.txt", "triggers": ["v1"]}},
        {"kind": "copy", "name": "cp-into-dir", "connection": conn, "source": str(source),
         "args": {"remote_path": f"{remote}/existing-dir"}},
    ]
    res = p.up(spec)
    assert res.outputs["r1"].value == "remote-ok:env-ok"
    assert (remote / "stdin-copy").read_text() == "hello-remote"
    assert (remote / "staging" / "sub" / "file.txt").read_text() == "payload v1\n"
    assert (remote / "existing-dir" / "payload.txt").read_text() == "payload v1\n"
    state = p.resource("r1")
    assert state is not None and is_encrypted(state["outputs"]["connection"])
    assert sshd["key"].splitlines()[1] not in json.dumps(p.export())

    # New content: a changed trigger replaces (cp-file), a changed source alone updates in
    # place (cp-into-dir); both copy again.
    source.write_text("payload v2\n")
    spec[1]["args"]["triggers"] = ["v2"]
    res = p.up(spec)
    assert res.summary.resource_changes == {"same": 2, "replace": 1, "update": 1}
    assert (remote / "staging" / "sub" / "file.txt").read_text() == "payload v2\n"
    assert (remote / "existing-dir" / "payload.txt").read_text() == "payload v2\n"

    p.stack.destroy(color="never")
    assert (remote / "deleted").read_text() == "deleted prev=remote-ok:env-ok\n"
    assert (remote / "staging" / "sub" / "file.txt").exists()  # CopyToRemote deletes nothing


def test_remote_auth_failure_names_host_and_port(tmp_path: Path, sshd: dict[str, Any]) -> None:
    p = Project(tmp_path, "cmd-remote-auth")
    p.stack.set_config("wrongKey", auto.ConfigValue(sshd["wrong"], secret=True))
    conn = {**_connection(sshd, "wrongKey"), "dialErrorLimit": 1}
    with pytest.raises(auto.CommandError) as failed:
        p.up([{"kind": "remote", "name": "denied", "connection": conn,
               "args": {"create": "echo never"}}])
    message = str(failed.value)
    assert f"127.0.0.1:{sshd['port']}" in message
    assert "authentication failed" in message
    assert sshd["wrong"].splitlines()[1] not in message
