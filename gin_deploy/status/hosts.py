"""Ask a host target's agent (`hostctl.py status`) over the connection the deploy uses:
a local subprocess, or ssh with the stack's key and the pinned host key.

A key given as secret config is handed to a private ssh-agent started for the call (on
its stdin), so the decrypted key never touches the disk; a privateKeyPath is used as is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

TIMEOUT = 60


class HostQueryError(RuntimeError):
    """The agent could not be asked, or answered with an error."""


def agent_command(target: Mapping[str, Any]) -> str:
    state = str(target["stateDir"])
    sudo = "sudo -n " if target.get("sudo") else ""
    return (f"{sudo}python3 {shlex.quote(state + '/bin/hostctl.py')} status "
            f"--state {shlex.quote(state)}")


@contextlib.contextmanager
def _ssh_agent(private_key: str, tmp: str) -> Iterator[str]:
    """A private ssh-agent holding `private_key`; yields its socket."""
    sock = os.path.join(tmp, "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not os.path.exists(sock) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        added = subprocess.run(["ssh-add", "-q", "-"], input=private_key, text=True,
                               env={**os.environ, "SSH_AUTH_SOCK": sock},
                               capture_output=True, timeout=15, check=False)
        if added.returncode != 0:
            raise HostQueryError(f"ssh-add refused the stack's SSH key: {added.stderr.strip()}")
        yield sock
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _ssh_args(target: Mapping[str, Any], tmp: str) -> list[str]:
    known = os.path.join(tmp, "known_hosts")
    host, port = str(target["host"]), int(target.get("port") or 22)
    name = host if port == 22 else f"[{host}]:{port}"
    Path(known).write_text(f"{name} {target['hostKey']}\n")
    return ["ssh", "-F", "/dev/null", "-p", str(port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
            f"{target['user']}@{host}"]


def query_agent(target: Mapping[str, Any], private_key: str | None = None,
                private_key_path: str | None = None) -> dict[str, Any]:
    """The agent's status JSON for one host target (the `targets` output entry)."""
    if target.get("connection") == "fleet":
        raise HostQueryError("the status of a fleet's hosts is not asked yet (the target "
                             "lists them: " + ", ".join(target.get("hosts") or []) + ")")
    command = agent_command(target)
    with tempfile.TemporaryDirectory(prefix="gd-status-") as tmp:
        if target.get("connection") != "ssh":
            proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        else:
            args = _ssh_args(target, tmp)
            with contextlib.ExitStack() as stack:
                if private_key_path:
                    args[1:1] = ["-o", "IdentitiesOnly=yes",
                                 "-i", str(Path(private_key_path).expanduser())]
                elif private_key:
                    sock = stack.enter_context(_ssh_agent(private_key, tmp))
                    # the private agent holds only this key
                    args[1:1] = ["-o", f"IdentityAgent={sock}"]
                else:
                    raise HostQueryError("the stack's config has no SSH key for this target")
                proc = subprocess.run([*args, command], capture_output=True, text=True,
                                      timeout=TIMEOUT, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise HostQueryError(lines[-1] if lines else f"exit status {proc.returncode}")
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise HostQueryError("the agent's status was not JSON") from None
    if not isinstance(data, dict):
        raise HostQueryError("the agent's status was not a JSON object")
    return data
