"""Undoing a release its deploy left half done: users go back to the release that served.

While a canary or blue/green release runs, `<stateDir>/rollout.json` says what it has
touched (the phase, the candidates, the release that served before). Whatever ends the
deploy before it clears the record - a failure, Ctrl-C, SIGKILL of the whole process
tree, a dropped SSH session - the record is acted on:

- by the guard: a process the deploy starts in a session of its own, with a pipe as its
  stdin. When the pipe closes (the deploy exited, however) the guard takes the target's
  lock and, if the record is still the one of its deploy, undoes it;
- by the next deploy, before anything else, if the guard could not.

Undoing means: candidates get no more requests (their share files go), are stopped,
and the `candidate` link goes; if the instances were already moving to the new release,
they go back to the previous one first. The Pulumi state still describes the
previous release (the deploy command failed), so the next `up` retries the whole release.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, Any, Literal, Optional

from gin_deploy.agent.candidates import drop_link, move_share, start_ready, stop_all
from gin_deploy.agent.files import write_file
from gin_deploy.agent.layout import Layout, state_lock
from gin_deploy.agent.nginx import make_nginx
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import Instance, TargetPayload
from gin_deploy.agent.releases import switch_current
from gin_deploy.agent.rollout import Pacer, Target
from gin_deploy.agent.supervisors import make_supervisor
from gin_deploy.agent.wire import WireError, dump, load

RECORD = "rollout.json"
# After the share moved: requests that drew the other pool just before reach it.
SETTLE_S = 1.0
Phase = Literal["starting", "steps", "promoting", "handover"]


@dataclass(frozen=True)
class RolloutRecord:
    """What a running release has touched; written before each phase begins."""

    token: str  # this deploy's; its guard acts only on its own record
    release: str
    previous: str
    phase: Phase
    target: TargetPayload
    candidates: tuple[Instance, ...]
    ready_path: str
    ready_timeout_seconds: float
    nginx_conf_dir: str
    supervisor_conf_dir: str
    share_dir: str
    # System mode: the stem of the target's system files (DeployPayload.name).
    system_name: Optional[str] = None


def record_path(layout: Layout) -> str:
    return layout.p(RECORD)


def save_record(layout: Layout, record: RolloutRecord) -> None:
    write_file(record_path(layout), json.dumps(dump(record), indent=2, sort_keys=True) + "\n")


def load_record(layout: Layout) -> RolloutRecord | None:
    try:
        with open(record_path(layout), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HostError(f"{record_path(layout)} is unreadable ({exc}); the release it "
                        "describes cannot be undone automatically") from None
    try:
        return load(RolloutRecord, data)
    except WireError as exc:
        raise HostError(f"{record_path(layout)} is damaged: {exc}") from None


def clear_record(layout: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_path(layout))


def new_token() -> str:
    return secrets.token_hex(8)


def record_target(record: RolloutRecord, layout: Layout) -> Target:
    """The target as the record's deploy saw it."""
    sup = make_supervisor(record.target, layout, record.supervisor_conf_dir,
                          record.system_name, record.candidates)
    return Target(record.target, layout, sup,
                  make_nginx(layout, record.target.mode, record.target.app,
                             record.nginx_conf_dir, record.system_name),
                  Pacer(layout.p(".settle-until"), 0.0), record.ready_path,
                  record.ready_timeout_seconds)


def undo(layout: Layout, record: RolloutRecord) -> str:
    """Put users back on the release that served before `record`'s; what was done."""
    target = record_target(record, layout)
    log(f"undoing the unfinished release of {record.release} ({record.phase}): "
        f"back to {record.previous}")
    outcome = f"release {record.previous} serves again"
    if record.phase == "promoting":
        # The instances may have moved already; the candidates take every request until
        # the instances answer on the previous release again.
        switch_current(layout, record.previous)
        failed = start_ready(target, record.target.instances, restart=True)
        if failed:
            inst, problem = failed[0]
            raise HostError(f"instance {inst.name} {problem} on release {record.previous}; "
                            f"the candidates keep serving {record.release} - deploy again")
    elif record.phase == "handover":
        outcome = f"release {record.release} serves (it had been promoted)"
    move_share(record.share_dir, 0, settle=SETTLE_S)
    stop_all(target, record.candidates)
    drop_link(layout)
    clear_record(layout)
    log(outcome)
    return outcome


def recover(layout: Layout, token: str | None = None) -> str | None:
    """Undo the recorded release (only the one of `token`, if given); call under the lock."""
    record = load_record(layout)
    if record is None or (token is not None and record.token != token):
        return None
    return undo(layout, record)


class Guard:
    """The guard process of one release: `close()` when the release is over."""

    def __init__(self, layout: Layout, token: str) -> None:
        os.makedirs(layout.logs, exist_ok=True)
        with open(os.path.join(layout.logs, "guard.log"), "ab") as out:
            # Its own session: killing the deploy's process group leaves it running.
            self.proc = subprocess.Popen(
                [sys.executable, layout.agent, "guard", "--state", layout.state_dir],
                stdin=subprocess.PIPE, stdout=out, stderr=out, start_new_session=True)
        self.stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        self.stdin.write(f"{token}\n".encode())
        self.stdin.flush()

    def close(self) -> None:
        """The release is over (its record cleared): the guard has nothing to do."""
        with contextlib.suppress(OSError):
            self.stdin.close()


def guard(state_dir: str) -> dict[str, Any]:
    """The guard: wait for the deploy to end, then undo its release if it left one."""
    token = sys.stdin.readline().strip()
    while sys.stdin.read(65536):
        pass  # until the deploy's end of the pipe closes
    layout = Layout(os.path.normpath(state_dir))
    if not token or not os.path.exists(record_path(layout)):
        return {"token": token, "undone": None}
    with state_lock(layout):
        outcome = recover(layout, token)
    return {"token": token, "undone": outcome}

