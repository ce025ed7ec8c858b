"""canary and blueGreen releases: the new release beside the old one, judged on real traffic.

1. The instances must serve the previous release (a unit moved to its new name left
   them stopped: they start first). The candidates (ports of their own, programs running
   the `candidate` link) start on the new release all at once and must be ready and
   RUNNING within readyTimeout; the instances keep serving the previous release
   meanwhile.
2. nginx loads the site with the candidates' pool (after `nginx -t`; in place already
   after the first such release), then sends each step's percent of requests to them
   (gin_deploy.agent.traffic: no reload); each step bakes for bakeSeconds while
   the new release's own requests in nginx's access log are judged against maxErrorRate
   and maxP95Ms (early, as soon as minRequests - and at least 20 - arrived). Too few
   requests: the bake is extended once, then the release fails as inconclusive.
   blueGreen is one step of 100.
3. Pass: with every request on the candidates, `current` moves to the new release and
   the instances restart onto it at once; nginx sends everything back to them and the
   candidates are drained and stopped. The instances are where the serving release runs
   between releases, so the supervisor starts them (and only them) after a reboot.
4. Fail (a step's verdict, a candidate not ready, nginx refusing the site): the share
   goes back to 0, the candidates stop, and the deploy fails naming the step, the metric,
   its value and the threshold. A deploy that ends any other way is undone by its guard
   (gin_deploy.agent.guard).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from gin_deploy.agent.analysis import AccessLog, Tally, Thresholds, Window, breach
from gin_deploy.agent.candidates import (
    drop_link,
    move_share,
    point_link,
    start_ready,
    stop_all,
)
from gin_deploy.agent.guard import (
    SETTLE_S,
    Guard,
    RolloutRecord,
    clear_record,
    load_record,
    new_token,
    save_record,
    undo,
)
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import DeployPayload, Instance, TargetPayload
from gin_deploy.agent.releases import switch_current
from gin_deploy.agent.rollout import Target

POLL_SECONDS = 0.5


class ReleaseFailed(HostError):
    """The new release was judged and rolled back."""


def release_beside(target: Target, payload: DeployPayload, new: str, prev: str,
                   conf_dirs: tuple[str, str]) -> list[dict[str, Any]]:
    """Release `new` beside `prev` (serving); per step what was seen. Raises HostError
    (with users back on `prev`) when the release fails."""
    layout, candidates = target.layout, payload.rollout.candidates
    record = RolloutRecord(
        token=new_token(), release=new, previous=prev, phase="starting",
        target=TargetPayload(app=payload.app, state_dir=payload.state_dir,
                             mode=payload.mode, supervisor=payload.supervisor,
                             instances=payload.instances),
        candidates=candidates, ready_path=target.ready_path,
        ready_timeout_seconds=target.ready_timeout, nginx_conf_dir=conf_dirs[0],
        supervisor_conf_dir=conf_dirs[1], share_dir=payload.rollout.share_dir or "",
        system_name=payload.name)
    save_record(layout, record)
    guard = Guard(layout, record.token)
    try:
        return _release(target, payload, new, prev, record)
    except HostError as exc:
        # Back to `prev` (the record says how far the release got), then say why.
        left = load_record(layout)
        try:
            outcome = undo(layout, left) if left and left.token == record.token else ""
        except HostError as undo_exc:
            outcome = f"undoing it failed too: {undo_exc}"
        # The outcome belongs to the first line, before any quoted log lines.
        head, newline, logs = str(exc).partition("\n")
        raise type(exc)(f"{head}; {outcome}{newline}{logs}" if outcome else str(exc)) \
            from None
    finally:
        guard.close()


def _release(target: Target, payload: DeployPayload, new: str, prev: str,
             record: RolloutRecord) -> list[dict[str, Any]]:
    layout, rollout = target.layout, payload.rollout
    candidates = rollout.candidates
    # What users fall back on must be up first (systemd: moving a unit to its new name
    # stops the instances and only enables them; a rolling deploy restarts them anyway).
    down = [i for i in payload.instances if not target.ready(i)]
    failed = start_ready(target, down) if down else []
    if failed:
        inst, problem = failed[0]
        raise target.failure(inst, problem, f"release {prev} (serving) could not be started "
                             f"before release {new}", target.diagnostics(inst))
    point_link(layout, new)
    failed = start_ready(target, candidates)
    if failed:
        inst, problem = failed[0]
        raise target.failure(inst, problem, f"release {new} was not released",
                             target.diagnostics(inst))
    save_record(layout, record := replace(record, phase="steps"))
    # The site with the candidates' pool (validated with nginx -t; reloaded only if it
    # changed, e.g. the first such release); the steps then need no reload.
    share_dir = rollout.share_dir or ""
    move_share(share_dir, 0)
    target.nginx.apply(payload.nginx.site, payload.nginx.main or "")
    window = Window(AccessLog(rollout.access_log or ""),
                    [f"127.0.0.1:{c.port}" for c in candidates])
    limits = Thresholds(rollout.max_error_rate, rollout.max_p95_ms, rollout.min_requests)
    seen: list[dict[str, Any]] = []
    steps = rollout.steps if payload.rollout.strategy == "canary" else (100,)
    for n, percent in enumerate(steps, 1):
        move_share(share_dir, percent)
        window.restart()
        where = f"step {n} of {len(steps)} ({percent}% of requests)"
        verdict = bake(window, limits, rollout.bake_seconds, where)
        seen.append({"step": n, "percent": percent, "requests": window.new.requests,
                     "errors": window.new.errors, "p95Ms": round(window.new.p95_ms, 1),
                     "oldRequests": window.old.requests, "oldErrors": window.old.errors})
        if verdict:
            raise ReleaseFailed(f"release {new} failed at {where}: {verdict}; the old "
                                f"release over the same time: {window.old.describe()}")
        log(f"{where} passed: {window.new.describe()}")
    promote(target, payload, new, prev, record)
    return seen


def bake(window: Window, limits: Thresholds, seconds: float, where: str) -> str | None:
    """Watch the step for `seconds` (once more if too few requests came); the breach, if
    any. 0 seconds: no analysis."""
    if seconds <= 0:
        return None
    log(f"{where}: baking {seconds:g}s")
    deadline = time.monotonic() + seconds
    extended = False
    while True:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        window.poll()
        over = time.monotonic() >= deadline
        problem = breach(window.new, limits, final=over)
        if problem or (over and window.new.requests >= limits.min_requests):
            return problem
        if over and not extended:
            extended = True
            deadline += seconds
            log(f"{where}: {window.new.requests} requests of the new release, fewer than "
                f"minRequests {limits.min_requests}; baking {seconds:g}s more")
        elif over:
            return inconclusive(window.new, limits, 2 * seconds)


def inconclusive(new: Tally, limits: Thresholds, seconds: float) -> str:
    return (f"inconclusive: {new.requests} requests of the new release in {seconds:g}s "
            f"< minRequests {limits.min_requests} (nothing to judge it by)")


def promote(target: Target, payload: DeployPayload, new: str, prev: str,
            record: RolloutRecord) -> None:
    """Every request is on the candidates: move the instances to `new`, hand back."""
    layout = target.layout
    save_record(layout, record := replace(record, phase="promoting"))
    switch_current(layout, new)
    time.sleep(SETTLE_S)
    failed = start_ready(target, payload.instances, restart=True)
    if failed:
        inst, problem = failed[0]
        raise target.failure(inst, problem, f"release {new} was not promoted",
                             target.diagnostics(inst))
    move_share(payload.rollout.share_dir or "", 0, settle=SETTLE_S)
    save_record(layout, replace(record, phase="handover"))
    stop_all(target, payload.rollout.candidates)
    drop_link(layout)
    clear_record(layout)
    log(f"release {new} promoted; {prev} stopped")


def stray_candidates(target: Target, candidates: tuple[Instance, ...]) -> None:
    """Candidates running without a release (none is recorded): stop them."""
    running = target.supervisor.running_instances()
    stray = [c for c in candidates if c.name in running]
    if stray:
        stop_all(target, stray)
