"""A new release's candidates beside the serving instances: started, stopped and checked
in parallel (the time to release N instances does not grow with N), the `candidate` link
they run, and the share of requests nginx sends them (gin_deploy.agent.traffic).

Shared by the release itself (gin_deploy.agent.canary) and by what undoes a release that
did not finish (gin_deploy.agent.guard).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from gin_deploy.agent.files import atomic_symlink
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.network import wait_ready
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import Instance
from gin_deploy.agent.rollout import Target
from gin_deploy.agent.traffic import set_share

LINK = "candidate"


def link_path(layout: Layout) -> str:
    return layout.p(LINK)


def point_link(layout: Layout, rid: str) -> None:
    atomic_symlink(os.path.join("releases", rid), link_path(layout))
    log(f"{LINK} -> releases/{rid}")


def drop_link(layout: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link_path(layout))


def _parallel(instances: Sequence[Instance], work: Callable[[Instance], str]) -> list[str]:
    if not instances:
        return []
    with ThreadPoolExecutor(max_workers=len(instances)) as pool:
        return list(pool.map(work, instances))


def start_ready(target: Target, instances: Sequence[Instance], restart: bool = False,
                ) -> list[tuple[Instance, str]]:
    """(Re)start every instance at once and wait for each to be ready and RUNNING; the
    ones that were not, with what went wrong."""
    sup = target.supervisor
    verb = "restarting" if restart else "starting"
    log(f"{verb} {', '.join(i.name for i in instances)}")

    def one(inst: Instance) -> str:
        deadline = time.monotonic() + target.ready_timeout
        try:
            (sup.restart if restart else sup.start)(inst)
        except HostError as exc:
            return f"failed to start: {exc}"
        if not wait_ready(target.url(inst), max(0.5, deadline - time.monotonic())):
            return f"was not ready within {target.ready_timeout:g}s"
        if not sup.wait_running(inst, max(1.0, deadline - time.monotonic())):
            return f"was not RUNNING under {sup.kind} within {target.ready_timeout:g}s"
        log(f"{inst.name} is ready")
        return ""

    results = _parallel(instances, one)
    return [(instances[i], problem) for i, problem in enumerate(results) if problem]


def stop_all(target: Target, instances: Sequence[Instance]) -> None:
    """Stop every instance at once (each drains its requests first); problems are logged."""
    if not instances:
        return
    log(f"stopping {', '.join(i.name for i in instances)}")

    def one(inst: Instance) -> str:
        try:
            target.supervisor.stop(inst)
        except HostError as exc:
            log(f"warning: {exc}")
        return ""

    _parallel(instances, one)


def move_share(directory: str, percent: int, settle: float = 0.0) -> None:
    """Send `percent` of the requests to the candidates; `settle`: then wait so requests
    that drew their pool just before are on their way (before a pool is stopped)."""
    log(f"{percent}% of requests to the candidates")
    set_share(directory, percent)
    if settle:
        time.sleep(settle)
