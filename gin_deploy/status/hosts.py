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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gin_deploy.agent.fleet import ssh_agent
from gin_deploy.agent.output import HostError

TIMEOUT = 60


class HostQueryError(RuntimeError):
    """The agent could not be asked, or answered with an error."""


def agent_command(target: Mapping[str, Any], command: str = "status") -> str:
    state = str(target["stateDir"])
    sudo = "sudo -n " if target.get("sudo") else ""
    return (f"{sudo}python3 {shlex.quote(state + '/bin/hostctl.py')} {command} "
            f"--state {shlex.quote(state)}")


@contextlib.contextmanager
def _ssh_agent(private_key: str, tmp: str) -> Iterator[str]:
    """The fleet coordinator's private ssh-agent, its failure as a query error."""
    try:
        with ssh_agent(private_key, tmp) as sock:
            yield sock
    except HostError as exc:
        raise HostQueryError(str(exc)) from None


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
                private_key_path: str | None = None, agent: str = "status") -> dict[str, Any]:
    """The agent's status JSON for one host target (the `targets` output entry); `agent`:
    another query command of the agent (a balancer's `balancer-members`)."""
    if target.get("connection") == "fleet":
        return query_fleet(target, private_key, private_key_path)
    command = agent_command(target, agent)
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


def query_fleet(target: Mapping[str, Any], private_key: str | None = None,
                private_key_path: str | None = None) -> dict[str, Any]:
    """A fleet's hosts asked one by one, summed up as one target: instances ready of
    wanted across the fleet, the release if every host runs the same one (else `mixed`),
    the worst last deploy; each host's own answer under `hosts`."""
    answers: dict[str, dict[str, Any]] = {}
    for machine in target.get("hosts") or []:
        try:
            answers[str(machine["name"])] = query_agent(
                {**machine, "connection": "ssh"}, private_key, private_key_path)
        except HostQueryError as exc:
            raise HostQueryError(f"host {machine.get('name')}: {exc}") from None
    if not answers:
        raise HostQueryError("the fleet lists no hosts")
    balancers: dict[str, dict[str, Any]] = {}
    for machine in target.get("balancers") or []:
        try:
            balancers[str(machine["name"])] = query_agent(
                {**machine, "connection": "ssh"}, private_key, private_key_path,
                "balancer-members")
        except HostQueryError as exc:
            raise HostQueryError(f"balancer {machine.get('name')}: {exc}") from None
    # Instances of a host the balancers do not send traffic to are not counted ready.
    for b in balancers.values():
        for name, a in answers.items():
            if name not in (b.get("joined") or []):
                a["ready"] = 0
    releases = {name: a.get("current") for name, a in answers.items()}
    common = set(releases.values())
    deploys = [a.get("lastDeploy") or {} for a in answers.values()]
    failed = [d for d in deploys if d.get("result") not in (None, "ok")]
    latest = max(deploys, key=lambda d: str(d.get("time", "")))
    first = next(iter(answers.values()))
    return {
        "current": common.pop() if len(common) == 1 else
        "mixed: " + ", ".join(f"{n}={r}" for n, r in releases.items()),
        "ready": sum(int(a.get("ready") or 0) for a in answers.values()),
        "wanted": sum(int(a.get("wanted") or 0) for a in answers.values()),
        "nginxRunning": all(a.get("nginxRunning")
                            for a in (*answers.values(), *balancers.values())),
        "lastDeploy": (failed or [latest])[0] or None,
        # What the public URL serves: the balancers' certificate, else the hosts'.
        **({"tlsMode": b0.get("tlsMode"), "caCert": b0.get("caCert"),
            "renewal": b0.get("renewal")} if (b0 := next(iter(balancers.values()), None))
           else {"tlsMode": first.get("tlsMode"), "caCert": first.get("caCert"),
                 "renewal": first.get("renewal")}),
        "hosts": answers, "balancers": balancers,
    }
