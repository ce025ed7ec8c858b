"""Rolling restart gated on readiness, with automatic rollback.

Instances restart one at a time onto the new release; each must answer its ready path
(and be RUNNING under its supervisor) within the timeout, else the ones already moved go
back to the previous release and the deploy fails quoting the instance's log tail. A
first deploy has nothing to roll back to and stops its instances instead.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gin_deploy.agent.files import write_file
from gin_deploy.agent.layout import Layout, load_state
from gin_deploy.agent.network import instance_url, probe, wait_ready
from gin_deploy.agent.nginx import Nginx, make_nginx, nginx_settle_seconds
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import NGINX_CONF_DIR, DeployPayload, Instance, TargetPayload
from gin_deploy.agent.releases import switch_current
from gin_deploy.agent.supervisors import Supervisor, make_supervisor


class Pacer:
    """Spaces instance restarts so nginx has taken the previous instance back before the next
    one goes down. The deadline is kept in a file so back-to-back deploys respect it too."""

    MARGIN = 0.5

    def __init__(self, path: str, settle: float) -> None:
        self.path = path
        self.settle = settle

    def wait(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                until = float(fh.read().strip() or 0)
        except (OSError, ValueError):
            return
        delay = min(until - time.time(), self.settle + self.MARGIN)
        if delay > 0:
            log(f"waiting {delay:.1f}s for nginx to take the last restarted instance back")
            time.sleep(delay)

    def restarted(self) -> None:
        if self.settle > 0:
            with contextlib.suppress(OSError):
                write_file(self.path, f"{time.time() + self.settle + self.MARGIN:.3f}\n")


@dataclass
class Target:
    """One target on this host: its payload, paths, supervisor strategy and nginx."""

    payload: TargetPayload
    layout: Layout
    supervisor: Supervisor
    nginx: Nginx
    pacer: Pacer
    ready_path: str = "/readyz"
    ready_timeout: float = 30.0

    @classmethod
    def create(cls, payload: DeployPayload) -> Target:
        """The target as `payload` deploys it."""
        layout = Layout(payload.state_dir)
        spec = payload.nginx
        settle = (spec.settle_seconds if spec.settle_seconds is not None
                  else nginx_settle_seconds(spec.site))
        return cls(payload, layout, make_supervisor(payload, layout),
                   make_nginx(layout, payload.mode, payload.app, spec.conf_dir, payload.name),
                   Pacer(layout.p(".settle-until"), settle),
                   payload.ready_path, payload.ready_timeout_seconds)

    @classmethod
    def from_state(cls, payload: TargetPayload) -> Target:
        """The target as the last deploy left it (for destroy and status)."""
        layout = Layout(payload.state_dir)
        state = load_state(layout)
        name = state.get("systemName")
        candidates = []
        for c in state.get("candidates") or []:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                candidates.append(Instance(str(c["name"]), int(c["port"])))
        return cls(payload, layout,
                   make_supervisor(payload, layout, state.get("supervisorConfDir"), name,
                                   candidates),
                   make_nginx(layout, payload.mode, payload.app,
                              state.get("nginxConfDir") or NGINX_CONF_DIR, name),
                   Pacer(layout.p(".settle-until"), 0.0),
                   str(state.get("readyPath") or "/readyz"))

    def url(self, inst: Instance) -> str:
        return instance_url(inst, self.ready_path)

    def ready(self, inst: Instance) -> bool:
        return probe(self.url(inst))

    def diagnostics(self, inst: Instance) -> str:
        return self.supervisor.log_tail(inst) or (
            f"(no log files {inst.name}.* in {self.layout.logs})")

    def failure(self, inst: Instance, problem: str, outcome: str, logs: str) -> HostError:
        return HostError(f"instance {inst.name} ({self.url(inst)}) {problem}; {outcome}\n{logs}")


def rollout(target: Target, new: str, prev: str | None, force: bool) -> bool:
    """Restart the instances one by one onto `new`; roll back on failure. True if restarted."""
    payload, layout, sup = target.payload, target.layout, target.supervisor
    first = prev is None
    running = sup.running_instances()
    if prev == new and not force:
        todo = [i for i in payload.instances if not (i.name in running and target.ready(i))]
        if not todo:
            log(f"release {new} is already current and every instance is ready")
            return False
        log(f"release {new} is current; restarting instances that are not ready: "
            f"{', '.join(i.name for i in todo)}")
    else:
        todo = list(payload.instances)
        if not first and prev != new:
            switch_current(layout, new)
    done: list[Instance] = []
    for inst in todo:
        done.append(inst)
        problem = ""
        try:
            if first and inst.name in running:
                log(f"waiting for {inst.name}")
            elif first:
                log(f"starting {inst.name}")
                sup.start(inst)
            else:
                target.pacer.wait()
                log(f"restarting {inst.name}")
                sup.restart(inst)
        except HostError as exc:
            problem = f"failed to start: {exc}"
        deadline = time.monotonic() + target.ready_timeout
        if not problem and not wait_ready(target.url(inst), target.ready_timeout):
            problem = f"was not ready within {target.ready_timeout:g}s"
        if not problem and not sup.wait_running(inst, max(1.0, deadline - time.monotonic())):
            problem = f"was not RUNNING under {sup.kind} within {target.ready_timeout:g}s"
        if not first:
            target.pacer.restarted()
        if not problem:
            log(f"{inst.name} is ready")
            continue
        log(f"{inst.name} {problem}")
        logs = target.diagnostics(inst)  # before anything restarts it again
        if first:
            for other in payload.instances:
                with contextlib.suppress(HostError):
                    sup.stop(other)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(layout.current)
            outcome = "no previous release to roll back to; instances stopped"
        elif prev == new:
            outcome = f"release {new} stays current"
        else:
            assert prev is not None
            outcome = rollback(target, prev, done)
        raise target.failure(inst, problem, outcome, logs)
    return True


def rollback(target: Target, prev: str, restarted: Sequence[Instance]) -> str:
    """Point current back at `prev` and restart `restarted` on it; describe the outcome."""
    log(f"rolling back to release {prev}")
    switch_current(target.layout, prev)
    not_ready = []
    for inst in restarted:
        target.pacer.wait()
        log(f"restarting {inst.name} on release {prev}")
        try:
            target.supervisor.restart(inst)
        except HostError as exc:
            log(f"rollback: {exc}")
        if not wait_ready(target.url(inst), target.ready_timeout):
            not_ready.append(inst.name)
        target.pacer.restarted()
    outcome = f"rolled back to release {prev}"
    if not_ready:
        outcome += f" (but {', '.join(not_ready)} did not become ready again)"
    return outcome
