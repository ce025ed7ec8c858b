"""An ECS target's `release` (issue 14) under mocks: the native ECS strategy each release
maps to, the rollback alarms' metric math on the target groups, and the configs ECS
cannot deploy. Every CreateService and PutMetricAlarm call is checked against
botocore's models (enums and patterns too: tests/unit/aws_api.py), and the ranges
ECS documents only in text against render.ecs_release. Mocks: tests/unit/test_ecs.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gin_deploy.config import ConfigError
from gin_deploy.render import ecs_release
from tests.unit import aws_api
from tests.unit.harness import RecordingMocks, run_program
from tests.unit.test_ecs import (
    CLOUDWATCH_MODEL,
    ECS_PROD,
    create_service_input,
    ecs_only,
    one,
    put_metric_alarm_input,
    validate,
)

TG = "targetgroup/aws-use1-tg/73e2d6bc24d8a067"
TG_GREEN = "targetgroup/aws-use1-tg-green/73e2d6bc24d8a067"


def without_stack_release(release: dict[str, Any] | None) -> dict[str, Any]:
    """The prod ECS target alone, without gin-deploy:release (the kind's defaults apply)."""
    target = copy.deepcopy(ECS_PROD)
    target.pop("release")
    if release is not None:
        target["release"] = release
    config = ecs_only(target)
    config.pop("gin-deploy:release")
    return config


def deployment_config(mocks: RecordingMocks) -> dict[str, Any]:
    params = create_service_input(one(mocks, "aws:ecs/service:Service"))
    assert aws_api.errors("ecs", "CreateService", params) == ""
    config: dict[str, Any] = params["deploymentConfiguration"]
    return config


def check_ecs_ranges(config: dict[str, Any]) -> None:
    """What ECS's API reference allows and botocore's model states only in text."""
    assert 0 <= config.get("bakeTimeInMinutes", 0) <= ecs_release.MAX_BAKE_MINUTES
    if "canaryConfiguration" in config:
        c = config["canaryConfiguration"]
        lo, hi = ecs_release.CANARY_PERCENT
        tenths = c["canaryPercent"] * 10   # multiples of 0.1
        assert lo <= c["canaryPercent"] <= hi and abs(tenths - round(tenths)) < 1e-9
        assert 0 <= c["canaryBakeTimeInMinutes"] <= ecs_release.MAX_BAKE_MINUTES
    if "linearConfiguration" in config:
        c = config["linearConfiguration"]
        lo, hi = ecs_release.LINEAR_STEP_PERCENT
        assert lo <= c["stepPercent"] <= hi
        assert 0 <= c["stepBakeTimeInMinutes"] <= ecs_release.MAX_BAKE_MINUTES


@pytest.mark.parametrize(("release", "expected"), [
    # The kind's default: canary 10 % then all (2 tasks), bake 60 s = 1 minute.
    (None, {"strategy": "CANARY", "bakeTimeInMinutes": 1,
            "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1}}),
    ({"steps": [20, 100], "bakeSeconds": 270},
     {"strategy": "CANARY", "bakeTimeInMinutes": 5,
      "canaryConfiguration": {"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 5}}),
    ({"steps": [25, 50, 75, 100], "bakeSeconds": 120},
     {"strategy": "LINEAR", "bakeTimeInMinutes": 2,
      "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 2}}),
    ({"strategy": "canary", "steps": [100], "bakeSeconds": 0},
     {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0}),
    ({"strategy": "blueGreen", "bakeSeconds": 61},
     {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 2}),
    ({"strategy": "rolling"}, {"strategy": "ROLLING"}),
])
def test_each_release_deploys_with_its_native_ecs_strategy(
        release: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    mocks = run_program(without_stack_release(release), stack="prod")
    config = deployment_config(mocks)
    check_ecs_ranges(config)
    assert {k: v for k, v in config.items() if k in expected or k.endswith(
        ("Configuration", "InMinutes"))} == expected
    # Every traffic-shifting strategy gets the second target group and ECS's rule.
    shifts = expected["strategy"] != "ROLLING"
    groups = {r.name for r in mocks.of_type("aws:lb/targetGroup:TargetGroup")}
    assert groups == ({"aws-use1-tg", "aws-use1-tg-green"} if shifts else {"aws-use1-tg"})
    [lb] = one(mocks, "aws:ecs/service:Service").inputs["loadBalancers"]
    assert ("advancedConfiguration" in lb) == shifts


def test_botocore_rejects_a_strategy_ecs_does_not_have() -> None:
    # So the empty reports above mean something: the strategy enum is checked.
    mocks = run_program(without_stack_release(None), stack="prod")
    params = create_service_input(one(mocks, "aws:ecs/service:Service"))
    params["deploymentConfiguration"]["strategy"] = "STEPS"
    assert "'STEPS' is not one of ROLLING, BLUE_GREEN, LINEAR, CANARY" in aws_api.errors(
        "ecs", "CreateService", params)


# --- rollback alarms ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def canary() -> RecordingMocks:
    return run_program(without_stack_release({"maxErrorRate": 0.02, "maxP95Ms": 300,
                                              "minRequests": 300, "bakeSeconds": 180}),
                       stack="prod")


@pytest.fixture(scope="module")
def rolling() -> RecordingMocks:
    return run_program(ecs_only(), stack="prod")


def alarms_by_role(mocks: RecordingMocks) -> dict[str, dict[str, Any]]:
    # The deployment's rollback alarms (the certificate's expiry alarm is another matter).
    alarms = {a.name.removeprefix("aws-use1-alarm-"): put_metric_alarm_input(a)
              for a in mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if a.name.startswith("aws-use1-alarm-")}
    for alarm in alarms.values():
        validate(CLOUDWATCH_MODEL, "PutMetricAlarm", alarm)
        assert aws_api.errors("cloudwatch", "PutMetricAlarm", alarm) == ""
    return alarms


def queries(alarm: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Metric queries by id: (metric, stat, target group)."""
    return {m["Id"]: (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Stat"],
                      {d["Name"]: d["Value"] for d in m["MetricStat"]["Metric"]["Dimensions"]}
                      ["TargetGroup"])
            for m in alarm["Metrics"] if "MetricStat" in m}


def returned(alarm: dict[str, Any]) -> str:
    [expression] = [m["Expression"] for m in alarm["Metrics"] if m["ReturnData"]]
    return str(expression)


def test_canary_alarms_judge_each_target_group_on_its_own_requests(
        canary: RecordingMocks) -> None:
    alarms = alarms_by_role(canary)
    assert sorted(alarms) == ["5xx", "p95", "unhealthy"]
    rate, p95 = alarms["5xx"], alarms["p95"]
    # The new release serves from either group (they swap every release): each group's
    # share, judged when it saw its minute's part of minRequests (300 over 3 minutes).
    assert queries(rate) == {
        "r0": ("RequestCount", "Sum", TG), "r1": ("RequestCount", "Sum", TG_GREEN),
        "e0": ("HTTPCode_Target_5XX_Count", "Sum", TG),
        "e1": ("HTTPCode_Target_5XX_Count", "Sum", TG_GREEN)}
    assert returned(rate) == (
        "MAX([IF(FILL(r0, 0) >= 100, FILL(e0, 0) / FILL(r0, 0), 0), "
        "IF(FILL(r1, 0) >= 100, FILL(e1, 0) / FILL(r1, 0), 0)])")
    assert rate["Threshold"] == 0.02
    assert queries(p95) == {
        "r0": ("RequestCount", "Sum", TG), "r1": ("RequestCount", "Sum", TG_GREEN),
        "t0": ("TargetResponseTime", "p95", TG), "t1": ("TargetResponseTime", "p95", TG_GREEN)}
    assert returned(p95) == ("MAX([IF(FILL(r0, 0) >= 100, FILL(t0, 0), 0), "
                             "IF(FILL(r1, 0) >= 100, FILL(t1, 0), 0)])")
    assert p95["Threshold"] == 0.3  # TargetResponseTime is in seconds
    for alarm in (rate, p95):
        # A bad step alarms within its 3-minute bake: 2 of its 3 minutes.
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
    service = one(canary, "aws:ecs/service:Service")
    assert service.inputs["alarms"] == {
        "alarmNames": ["aws-use1-alarm-5xx", "aws-use1-alarm-p95", "aws-use1-alarm-unhealthy"],
        "enable": True, "rollback": True}


def test_rolling_alarms_read_the_one_target_group(rolling: RecordingMocks) -> None:
    alarms = alarms_by_role(rolling)
    # The stack's release: maxErrorRate 0.01, maxP95Ms 500, minRequests 100 in 60 s.
    assert returned(alarms["5xx"]) == "IF(FILL(r0, 0) >= 100, FILL(e0, 0) / FILL(r0, 0), 0)"
    assert (alarms["5xx"]["Threshold"], alarms["p95"]["Threshold"]) == (0.01, 0.5)
    assert (alarms["5xx"]["EvaluationPeriods"], alarms["5xx"]["DatapointsToAlarm"]) == (1, 1)
    assert {q[2] for a in alarms.values() for q in queries(a).values()} == {TG}
    # Unhealthy tasks: as before, 2 of 3 minutes, whatever the bake.
    unhealthy = alarms["unhealthy"]
    assert (unhealthy["EvaluationPeriods"], unhealthy["DatapointsToAlarm"]) == (3, 2)


@pytest.mark.parametrize(("min_requests", "bake_s", "floor", "window"), [
    (100, 60, 100, (1, 1)), (300, 180, 100, (3, 2)), (0, 60, 1, (1, 1)),
    (100, 0, 100, (1, 1)), (1000, 3600, 17, (5, 3)), (10, 600, 1, (5, 3)),
])
def test_a_minute_is_judged_on_its_share_of_min_requests(
        min_requests: int, bake_s: int, floor: int, window: tuple[int, int]) -> None:
    assert ecs_release.min_requests_per_minute(min_requests, bake_s) == floor
    assert ecs_release.alarm_window(bake_s) == window


# --- what ECS cannot deploy: config errors, all at once ----------------------------------------

def config_problems(config: dict[str, Any]) -> list[str]:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program(config, stack="prod", mocks=mocks)
    assert mocks.resources == []
    return raised.value.problems


def test_steps_ecs_cannot_shift_are_refused_where_they_were_written() -> None:
    own = {**ECS_PROD, "release": {"steps": [10, 30, 100]}}
    inherited = {**ECS_PROD, "name": "aws-euw1", "region": "eu-west-1", "release": {}}
    config = ecs_only(own, inherited)
    config["gin-deploy:edge"] = {"zone": "example.com", "cdn": False}
    problems = config_problems(config)
    assert [p.split(":")[1] for p in problems] == [
        "targets[0].release.steps", "release.steps"]
    assert problems[0].startswith("gin-deploy:targets[0].release.steps: [10, 30, 100] has "
                                  "no ECS deployment strategy: ECS shifts traffic either in "
                                  "one canary step")
    # The stack's [10, 50, 100] suits hosts; the ecs target must override it.
    assert problems[1].startswith("gin-deploy:release.steps: [10, 50, 100] has no ECS")
    assert problems[1].endswith("(set gin-deploy:targets[1].release.steps for this ecs "
                                "target)")


@pytest.mark.parametrize("steps", [[10, 50, 100], [2, 4, 100], [1, 2, 3, 100]])
def test_uneven_or_too_small_steps_have_no_ecs_shape(steps: list[int]) -> None:
    with pytest.raises(ecs_release.ECSShapeError, match="LINEAR"):
        ecs_release.deployment("canary", tuple(steps), 60)


def test_traffic_shifting_behind_the_cdn_is_refused_with_the_reason() -> None:
    config = without_stack_release({"strategy": "canary"})
    config["gin-deploy:edge"] = {"zone": "example.com", "cdn": True}
    [problem] = config_problems(config)
    assert problem.startswith("gin-deploy:targets[0].release.strategy: canary cannot be "
                              "combined with edge.cdn")
    assert "health check path" in problem
    assert problem.endswith("set gin-deploy:targets[0].release.strategy: rolling (the "
                            "default behind edge.cdn)")

