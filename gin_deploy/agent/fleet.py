"""Releases across a host fleet, host by host (or `maxUnavailable` hosts at a time).

The coordinator (`hostctl.py fleet-release`, FleetPayload on stdin) runs on the deploying
machine and drives the agents on every machine over SSH (OpenSSH, the pinned host keys,
the stack's key held by a private ssh-agent: the key never touches the disk):

1. ask the balancers which hosts they have in rotation; put back the ones still in the
   fleet (a removed host leaves the upstream here: drained before `up` deletes it);
2. per batch: drain its hosts at the balancers (`down`, a graceful reload), deploy each
   (the host's own rolling restart, readiness-gated), and rejoin them once ready (in the
   same reload that drains the next batch); a new host joins only after its first deploy
   is ready;
3. when a host fails, its own agent has rolled it back; the hosts already released go
   back to their previous release (`member-rollback`), the drained hosts rejoin, and the
   command fails naming the host. The fleet keeps serving throughout.

Without balancers the same loop runs without the drain/join steps (DNS or the edge
spreads users over the hosts, each terminating TLS itself).

The host side of it (`member-deploy`, `member-rollback`) is here too; the balancer side is
gin_deploy/agent/balancer.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any, TypeVar

from gin_deploy.agent.deploy import deploy, status_from_state
from gin_deploy.agent.files import read_text
from gin_deploy.agent.fleet_payload import FleetBalancer, FleetHost, FleetPayload, SshHost
from gin_deploy.agent.layout import Layout, load_state, save_state, state_lock
from gin_deploy.agent.nginx import nginx_settle_seconds
from gin_deploy.agent.output import PREFIX, HostError, log, set_secrets
from gin_deploy.agent.payload import DeployPayload
from gin_deploy.agent.records import record_deploy
from gin_deploy.agent.releases import current_release
from gin_deploy.agent.rollout import Pacer, Target, rollback
from gin_deploy.agent.wire import dump, load

SSH_TIMEOUT = 1800  # one host's deploy, readiness gates included


# --------------------------------------------------------------------------- host side


def member_deploy(payload: DeployPayload) -> dict[str, Any]:
    """An ordinary deploy that also says which release was current before it (`before`),
    so the coordinator knows what to roll this host back to."""
    before = current_release(Layout(payload.state_dir))
    result = deploy(payload)
    result["before"] = before
    return result


def member_rollback(state_dir: str, to: str) -> dict[str, Any]:
    """Put this host back on release `to` (still on disk: deploys keep the previous one),
    restarting its instances one at a time, readiness-gated."""
    layout = Layout(os.path.normpath(state_dir))
    with state_lock(layout):
        now = current_release(layout)
        if now == to:
            return {"release": to, "changed": False}
        if not os.path.isdir(layout.release_dir(to)):
            raise HostError(f"release {to} is no longer in {layout.releases}; cannot roll back")
        target = Target.from_state(status_from_state(layout.state_dir))
        site = read_text(getattr(target.nginx, "site_path", layout.nginx_site)) or ""
        target.pacer = Pacer(layout.p(".settle-until"), nginx_settle_seconds(site))
        outcome = rollback(target, to, target.payload.instances)
        state = load_state(layout)
        state.update({"current": to, "previous": now})
        save_state(layout, state)
        record_deploy(layout, "ok", to, f"fleet rollback from {now}: {outcome}")
    return {"release": to, "previous": now, "changed": True, "outcome": outcome}


# --------------------------------------------------------------------------- SSH


@contextlib.contextmanager
def ssh_agent(private_key: str, tmp: str) -> Iterator[str]:
    """A private ssh-agent holding the stack's key; yields its socket."""
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
            raise HostError(f"ssh-add refused the stack's SSH key: {added.stderr.strip()}")
        yield sock
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class Session:
    """Runs agent commands on the fleet's machines over SSH with the pinned keys only."""

    def __init__(self, machines: Sequence[SshHost], sock: str, tmp: str) -> None:
        self.known = os.path.join(tmp, "known_hosts")
        lines = []
        for m in machines:
            name = m.host if m.port == 22 else f"[{m.host}]:{m.port}"
            lines.append(f"{name} {m.host_key}\n")
        with open(self.known, "w", encoding="utf-8") as fh:
            fh.writelines(dict.fromkeys(lines))
        self.sock = sock

    def call(self, name: str, ssh: SshHost, command: str, payload: str | None = None,
             args: Sequence[str] = ()) -> dict[str, Any]:
        """`hostctl.py command args` on the machine; its result, or HostError naming it."""
        remote = " ".join([*(["sudo", "-n"] if ssh.sudo else []), "python3",
                           shlex.quote(ssh.agent), command, *map(shlex.quote, args)])
        argv = ["ssh", "-F", "/dev/null", "-p", str(ssh.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
                "-o", f"IdentityAgent={self.sock}", "-o", "ServerAliveInterval=15",
                f"{ssh.user}@{ssh.host}", remote]
        try:
            proc = subprocess.run(argv, input=payload or "", capture_output=True, text=True,
                                  timeout=SSH_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise HostError(f"{name}: {command} did not finish within {SSH_TIMEOUT}s") from None
        error: list[str] = []
        for line in proc.stderr.splitlines():
            text = line[len(PREFIX):].strip() if line.startswith(PREFIX) else line
            if text.startswith("error: ") or error:
                error.append(text.removeprefix("error: "))
            elif line.strip():
                log(f"{name}: {text}")
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1:]
            why = "\n".join(error) or (last[0] if last else f"exit status {proc.returncode}")
            raise HostError(f"{name}: {why}")
        try:
            data = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HostError(f"{name}: {command} printed no JSON result") from None
        return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- coordinator


@dataclasses.dataclass
class Fleet:
    payload: FleetPayload
    session: Session
    in_rotation: set[str] = dataclasses.field(default_factory=set)

    @property
    def hosts(self) -> dict[str, FleetHost]:
        return {h.name: h for h in self.payload.hosts}

    def balance(self, drained: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Every balancer's upstream: the hosts in rotation, `drained` ones down."""
        if not self.payload.balancers:
            return
        members = tuple(dataclasses.replace(h.member, down=h.name in drained)
                        for h in self.payload.hosts if h.name in self.in_rotation)
        if not members:
            return
        for b in self.payload.balancers:
            text = json.dumps(dump_payload(dataclasses.replace(b.balancer, members=members)))
            self.session.call(b.name, b.ssh, "balance", text)

    def joined(self, b: FleetBalancer) -> set[str]:
        result = self.session.call(b.name, b.ssh, "balancer-members",
                                   args=["--state", b.balancer.target.state_dir])
        return set(result.get("joined") or [])

    def deploy_batch(self, batch: Sequence[FleetHost]) -> list[tuple[FleetHost, Any]]:
        """Deploy every host of the batch at once; (host, result or HostError) each."""
        out: list[tuple[FleetHost, Any]] = [(h, None) for h in batch]

        def one(i: int, h: FleetHost) -> None:
            try:
                text = json.dumps(dump_payload(h.deploy))
                out[i] = (h, self.session.call(h.name, h.ssh, "member-deploy", text))
            except HostError as exc:
                out[i] = (h, exc)

        threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(batch)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def drainable(self, batch: Sequence[FleetHost]) -> set[str]:
        """The batch's hosts in rotation, unless draining them leaves no primary serving
        (a one-host fleet: its own rolling restart keeps it serving instead)."""
        drain = {h.name for h in batch if h.name in self.in_rotation}
        hosts = self.hosts
        serving = [n for n in self.in_rotation - drain if not hosts[n].member.backup]
        return drain if serving else set()


def batches(hosts: Sequence[FleetHost], size: int) -> Iterator[Sequence[FleetHost]]:
    for i in range(0, len(hosts), size):
        yield hosts[i:i + size]


def release(payload: FleetPayload) -> dict[str, Any]:
    machines = [h.ssh for h in payload.hosts] + [b.ssh for b in payload.balancers]
    with tempfile.TemporaryDirectory(prefix="gd-fleet-") as tmp, \
            ssh_agent(payload.private_key, tmp) as sock:
        fleet = Fleet(payload, Session(machines, sock, tmp))
        return _release(fleet)


def _release(fleet: Fleet) -> dict[str, Any]:
    payload, hosts = fleet.payload, fleet.hosts
    started = time.monotonic()
    joined: set[str] = set()
    for b in payload.balancers:
        joined |= fleet.joined(b)
    fleet.in_rotation = {n for n in joined if n in hosts}
    removed = sorted(joined - set(hosts))
    if removed:
        log(f"taking {', '.join(removed)} out of the balancers (removed from the fleet)")
    # Site, TLS and removals first; a first deploy has no host to balance yet.
    fleet.balance()
    released: list[tuple[FleetHost, str]] = []  # hosts moved to a new release, and from what
    results: dict[str, Any] = {}
    # One reload per step: the batch just released rejoins as the next one is drained (each
    # reload closes the balancer's idle client connections; fewer reloads, fewer closes).
    rejoin: set[str] = set()
    for batch in batches(payload.hosts, payload.max_unavailable):
        names = ", ".join(h.name for h in batch)
        fleet.in_rotation |= rejoin
        drained = fleet.drainable(batch)
        if drained or rejoin:
            if drained:
                log(f"draining {', '.join(sorted(drained))} at the balancers"
                    + (f" (rejoining {', '.join(sorted(rejoin))})" if rejoin else ""))
            fleet.balance(drained)
        log(f"releasing {names}")
        outcome = fleet.deploy_batch(batch)
        failed = [(h, r) for h, r in outcome if isinstance(r, HostError)]
        for h, r in outcome:
            if isinstance(r, dict):
                results[h.name] = r.get("release")
                before = r.get("before")
                if before and before != r.get("release"):
                    released.append((h, before))
        if failed:
            raise _fail(fleet, failed, released)
        if payload.balancers:
            log(f"{names} ready; rejoining the balancers")
        rejoin = {h.name for h in batch}
    fleet.in_rotation |= rejoin
    fleet.balance()
    seconds = round(time.monotonic() - started, 1)
    log(f"fleet {payload.target}: {len(payload.hosts)} host(s) released in {seconds}s")
    return {"hosts": results, "removed": removed, "seconds": seconds,
            "inRotation": sorted(fleet.in_rotation)}


def _fail(fleet: Fleet, failed: Sequence[tuple[FleetHost, Any]],
          released: Sequence[tuple[FleetHost, str]]) -> HostError:
    """Roll back the hosts already released, rejoin the drained ones; the error to raise."""
    first, error = failed[0]
    log(f"{first.name} failed; rolling back the hosts already released")
    rolled, problems = [], []
    for h, before in reversed(released):
        try:
            fleet.session.call(h.name, h.ssh, "member-rollback",
                               args=["--state", h.deploy.state_dir, "--to", before])
            rolled.append(f"{h.name} (to {before})")
        except HostError as exc:
            problems.append(str(exc))
    # The failed host's agent rolled it back to its previous release (a host deployed for
    # the first time stopped instead and stays out): the hosts in rotation serve again.
    with contextlib.suppress(HostError):
        fleet.balance()
    outcome = ("rolled back " + ", ".join(rolled)) if rolled else \
        "no other host had been released"
    if problems:
        outcome += "; rollback problems: " + "; ".join(problems)
    # One line says who failed, why and what was undone; the host's details follow.
    why, _, details = str(error).partition("\n")
    message = f"fleet {fleet.payload.target}: host {first.name} failed: {why}; {outcome}"
    if details:
        message += "\n" + details
    for h, e in failed[1:]:
        message += f"\nhost {h.name} failed too: {e}"
    return HostError(message)


# --------------------------------------------------------------------------- wire

M = TypeVar("M")


def dump_payload(payload: Any) -> Any:
    return dump(payload)


def read_message(cls: type[M], stream: IO[str]) -> M:
    """A fleet message (FleetPayload, BalancerPayload, BalancerTarget) from stdin."""
    text = stream.read()
    if not text.strip():
        raise HostError(f"no JSON payload on stdin; pipe a {cls.__name__} into hostctl.py")
    try:
        return load(cls, json.loads(text))
    except ValueError as exc:  # WireError is one
        raise HostError(f"invalid payload: {exc}") from None


def read_fleet(stream: IO[str]) -> FleetPayload:
    """The fleet payload; its secrets (the SSH key, the hosts' secret env) are masked in
    every message from here on."""
    payload = read_message(FleetPayload, stream)
    secrets = [payload.private_key]
    for h in payload.hosts:
        d = h.deploy
        secrets += [d.env[k] for k in d.secret_env_keys if k in d.env]
        secrets += list(d.secret_values)
    set_secrets(secrets)
    return payload
