"""The pieces of a host release that need no processes: reading nginx's access log per
upstream, the verdict against the thresholds, the share files, the payload's release part."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent.analysis import AccessLog, Tally, Thresholds, Window, attempts, breach
from gin_deploy.agent.payload import (
    DeployPayload,
    Instance,
    PayloadError,
    Rollout,
    SupervisordFiles,
    parse,
    serialise,
)
from gin_deploy.agent.traffic import set_share, share_of
from tests.unit.test_agent_payload import deploy_payload

NEW, OLD = "127.0.0.1:9083", "127.0.0.1:9080"


def line(addr: str, status: str, time: str) -> str:
    return json.dumps({"status": 200, "upstream_addr": addr, "upstream_status": status,
                       "upstream_response_time": time, "uri": "/whoami"})


def test_every_upstream_attempt_counts_for_its_own_address() -> None:
    retried = json.loads(line(f"{NEW}, {OLD}", "502, 200", "0.001, 0.020"))
    assert list(attempts(retried)) == [(NEW, 502, 1.0), (OLD, 200, 20.0)]
    redirected = json.loads(line(f"{OLD} : {NEW}", "404 : 500", "0.002 : -"))
    assert list(attempts(redirected)) == [(OLD, 404, 2.0), (NEW, 500, None)]
    # No upstream (a redirect, the origin lock's 403), or no answer recorded.
    assert list(attempts(json.loads(line("-", "-", "-")))) == []
    assert list(attempts(json.loads(line(NEW, "-", "-")))) == []


def test_a_window_reads_only_what_was_logged_since_it_restarted(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(line(NEW, "500", "0.1") + "\n")  # before the step: not counted
    window = Window(AccessLog(str(log)), [NEW])
    window.restart()
    with log.open("a") as fh:
        fh.write(line(NEW, "200", "0.010") + "\n" + line(OLD, "200", "0.005") + "\n")
        fh.write("not json\n" + line(NEW, "503", "0.030")[:20])  # half a line so far
    window.poll()
    assert (window.new.requests, window.new.errors, window.old.requests) == (1, 0, 1)
    with log.open("a") as fh:
        fh.write(line(NEW, "503", "0.030")[20:] + "\n")
    window.poll()
    assert (window.new.requests, window.new.errors) == (2, 1)
    # Rotated (truncated): read again from the start.
    log.write_text(line(NEW, "200", "0.001") + "\n")
    window.poll()
    assert window.new.requests == 3


def test_p95_is_the_nearest_rank() -> None:
    tally = Tally()
    for ms in range(1, 101):
        tally.add(200, float(ms))
    assert tally.p95_ms == 95.0
    assert Tally().p95_ms == 0.0


def tally(requests: int, errors: int = 0, ms: float = 10.0) -> Tally:
    t = Tally()
    for i in range(requests):
        t.add(500 if i < errors else 200, ms)
    return t


LIMITS = Thresholds(max_error_rate=0.01, max_p95_ms=100, min_requests=50)


def test_verdict_names_metric_value_and_threshold() -> None:
    assert breach(tally(100, errors=2), LIMITS, final=True) == (
        "error rate 2.00% (2 of 100 requests answered 5xx) > maxErrorRate 1.00%")
    assert breach(tally(100, ms=250), LIMITS, final=True) == (
        "p95 latency 250 ms (of 100 requests) > maxP95Ms 100 ms")
    assert breach(tally(100, errors=1, ms=100), LIMITS, final=True) is None  # at the limits


def test_nothing_is_judged_before_min_requests() -> None:
    assert breach(tally(49, errors=49, ms=999), LIMITS, final=False) is None
    assert breach(tally(49, errors=49, ms=999), LIMITS, final=True) is None
    lenient = dataclasses.replace(LIMITS, min_requests=0)
    assert breach(tally(0), lenient, final=True) is None  # nothing arrived, nothing wrong
    # A handful of requests is not judged early: one 5xx is not a 100% error rate, one
    # slow request not a p95; at the end of the bake whatever arrived is.
    for few in (tally(5, ms=999), tally(5, errors=1)):
        assert breach(few, lenient, final=False) is None
        assert breach(few, lenient, final=True) is not None
    assert breach(tally(20, ms=999), lenient, final=False) is not None
    assert breach(tally(20, errors=1), lenient, final=False) is not None


def test_share_files_say_how_many_buckets_go_to_the_candidates(tmp_path: Path) -> None:
    share = tmp_path / "share"
    assert share_of(str(share)) == 0
    set_share(str(share), 10)
    assert sorted(int(p.name) for p in share.iterdir()) == list(range(1, 11))
    set_share(str(share), 50)
    set_share(str(share), 5)
    assert share_of(str(share)) == 5 and sorted(p.name for p in share.iterdir()) == [
        "1", "2", "3", "4", "5"]
    with pytest.raises(ValueError, match=r"percent must be in 0\.\.100"):
        set_share(str(share), 101)


def test_share_files_never_write_through_a_link(tmp_path: Path) -> None:
    """The agent runs as root in system mode: a link planted as a bucket is replaced by a
    file of its own, never followed (a dangling one would create its target as root)."""
    share = tmp_path / "share"
    share.mkdir()
    elsewhere, kept = tmp_path / "nologin", tmp_path / "kept"
    kept.write_text("admin's\n")
    (share / "1").symlink_to(elsewhere)
    (share / "2").symlink_to(kept)
    set_share(str(share), 2)
    assert not elsewhere.exists() and kept.read_text() == "admin's\n"
    for bucket in ("1", "2"):
        assert not (share / bucket).is_symlink() and (share / bucket).is_file()
    assert share_of(str(share)) == 2


CANDIDATES = (Instance("hello-gin-9082", 9082), Instance("hello-gin-9083", 9083))


def canary(**over: Any) -> DeployPayload:
    rollout = Rollout(strategy="canary", candidates=CANDIDATES, steps=(10, 100),
                      access_log="/srv/x/logs/nginx-access.log",
                      share_dir="/srv/x/nginx/candidate-share")
    return deploy_payload(rollout=dataclasses.replace(rollout, **over))


def problems(payload: DeployPayload) -> str:
    with pytest.raises(PayloadError) as err:
        parse(DeployPayload, serialise(payload))
    return str(err.value)


def test_the_release_part_survives_the_round_trip_and_rolling_is_left_out() -> None:
    payload = canary()
    with_unit = dataclasses.replace(payload, systemd=dataclasses.replace(
        payload.systemd, candidate_unit="[Service]\n"))  # type: ignore[arg-type]
    assert parse(DeployPayload, serialise(with_unit)) == with_unit
    assert "rollout" not in json.loads(serialise(deploy_payload()))


@pytest.mark.parametrize(("over", "message"), [
    ({"candidates": ()}, "rollout.candidates must not be empty with strategy canary"),
    ({"access_log": None}, "rollout.accessLog is required with strategy canary"),
    ({"share_dir": None}, "rollout.shareDir is required with strategy canary"),
    ({"steps": (50, 10, 100)}, "rollout.steps must be increasing percents ending at 100"),
    ({"steps": (10, 50)}, "rollout.steps must be increasing percents ending at 100"),
    ({"candidates": (Instance("hello-gin-9081", 9081), Instance("c", 9083))},
     "rollout.candidates must not share a port or name with the instances"),
    ({"candidates": CANDIDATES[:1]}, "rollout.candidates must be as many as the instances"),
])
def test_release_part_rules_name_the_field(over: dict[str, Any], message: str) -> None:
    payload = canary(**over)
    payload = dataclasses.replace(payload, systemd=dataclasses.replace(
        payload.systemd, candidate_unit="[Service]\n"))  # type: ignore[arg-type]
    assert message in problems(payload)


def test_candidates_need_their_programs_or_unit() -> None:
    assert "systemd.candidateUnit is required with rollout candidates" in problems(canary())
    programs = "[program:hello-gin-9080]\n[program:hello-gin-9081]\n[program:hello-gin-9082]\n"
    sup = dataclasses.replace(canary(), mode="user", supervisor="supervisord", systemd=None,
                              supervisord=SupervisordFiles(programs=programs, main="x"))
    sup = dataclasses.replace(sup, nginx=dataclasses.replace(sup.nginx, main="http {}"))
    assert ("supervisord.programs has no [program:hello-gin-9083] section for that instance"
            in problems(sup))
