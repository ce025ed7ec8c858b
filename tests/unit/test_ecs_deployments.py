"""EcsTarget under mocks, how it deploys and stays up: a new deployment whenever ECS
needs one (spot, secret values), rollback alarms for rolling and blue/green, a
liveness health check, NAT per AZ with an S3 endpoint. The mocks and helpers:
tests/unit/test_ecs.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.harness import RecordingMocks, run_program
from tests.unit.test_ecs import (
    CLOUDWATCH_MODEL,
    ECS_MODEL,
    SECRET,
    _parameter,
    containers,
    create_service_input,
    ecs_only,
    one,
    put_metric_alarm_input,
    validate,
    with_target,
)


@pytest.fixture(scope="module")
def prod() -> RecordingMocks:
    return run_program(ecs_only(), stack="prod")


@pytest.fixture(scope="module")
def prod_secret() -> RecordingMocks:
    config = ecs_only(secretEnv=["DB_PASSWORD"])
    config["gin-deploy:DB_PASSWORD"] = SECRET
    return run_program(config, stack="prod", secret_keys=["gin-deploy:DB_PASSWORD"])


@pytest.fixture(scope="module")
def variant() -> RecordingMocks:
    """Two AZs, one NAT gateway, 70 % spot."""
    return run_program(with_target(nat="single", azCount=2, spot=70), stack="prod")


@pytest.fixture(scope="module")
def blue_green() -> RecordingMocks:
    return run_program(with_target(blueGreen=True, bakeMinutes=15), stack="prod")


def test_image_layers_reach_s3_through_a_free_gateway_endpoint(
        prod: RecordingMocks, variant: RecordingMocks) -> None:
    for mocks, azs in ((prod, 3), (variant, 2)):
        endpoint = one(mocks, "aws:ec2/vpcEndpoint:VpcEndpoint").inputs
        assert endpoint["vpcEndpointType"] == "Gateway"
        assert endpoint["serviceName"] == "com.amazonaws.us-east-1.s3"
        assert endpoint["vpcId"] == "aws-use1-vpc-id"
        assert sorted(endpoint["routeTableIds"]) == [
            f"aws-use1-private-rt-{i}-id" for i in range(azs)]


def test_container_health_check_probes_liveness_not_readiness() -> None:
    # ECS replaces a task whose health check fails: a draining or warming-up task
    # (readiness 503) must not be killed for it; readiness stays with the target group.
    mocks = run_program(ecs_only(healthPath="/livez", readyPath="/ready"), stack="prod")
    [c] = containers(mocks)
    assert c["healthCheck"]["command"] == [
        "CMD", "/app", "healthcheck", "-url", "http://127.0.0.1:8080/livez"]
    tg = one(mocks, "aws:lb/targetGroup:TargetGroup").inputs
    assert tg["healthCheck"]["path"] == "/ready"


def test_every_service_update_is_a_new_deployment(variant: RecordingMocks) -> None:
    # ECS refuses a new capacity provider strategy (`spot`) without a new deployment.
    service = one(variant, "aws:ecs/service:Service").inputs
    assert service["forceNewDeployment"] is True
    assert "triggers" not in service  # nothing else to watch without secrets


def test_a_new_secret_value_rolls_the_tasks(prod_secret: RecordingMocks) -> None:
    """Tasks read secrets when they start: a new parameter version must start new ones."""
    def secret_trigger(mocks: RecordingMocks) -> str:
        service = one(mocks, "aws:ecs/service:Service").inputs
        assert service["forceNewDeployment"] is True
        [param] = mocks.of_type("aws:ssm/parameter:Parameter")
        version = _parameter(param.name, "us-east-1", param.inputs)["version"]
        assert service["triggers"] == {"secretVersions": f"DB_PASSWORD={version}"}
        return str(service["triggers"]["secretVersions"])

    config = ecs_only(secretEnv=["DB_PASSWORD"])
    config["gin-deploy:DB_PASSWORD"] = SECRET + "-rotated"
    rotated = run_program(config, stack="prod", secret_keys=["gin-deploy:DB_PASSWORD"])
    assert secret_trigger(prod_secret) != secret_trigger(rotated)
    # The task definition only holds the parameter's ARN: it alone would not change.
    assert containers(prod_secret) == containers(rotated)


# --- rollback alarms ---------------------------------------------------------------------------


def alarms_by_role(mocks: RecordingMocks) -> dict[str, dict[str, Any]]:
    # The deployment's rollback alarms (the certificate's expiry alarm is another matter).
    return {a.name.removeprefix("aws-use1-alarm-"): put_metric_alarm_input(a)
            for a in mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if a.name.startswith("aws-use1-alarm-")}


def watched_target_groups(alarm: dict[str, Any]) -> set[str]:
    return {d["Value"] for m in alarm["Metrics"] if "MetricStat" in m
            for d in m["MetricStat"]["Metric"]["Dimensions"] if d["Name"] == "TargetGroup"}


@pytest.mark.parametrize("strategy", ["rolling", "blue_green"])
def test_deployments_roll_back_on_5xx_rate_and_unhealthy_tasks(
        strategy: str, prod: RecordingMocks, blue_green: RecordingMocks) -> None:
    mocks = prod if strategy == "rolling" else blue_green
    alarms = alarms_by_role(mocks)
    assert sorted(alarms) == ["5xx", "unhealthy"]
    for alarm in alarms.values():
        validate(CLOUDWATCH_MODEL, "PutMetricAlarm", alarm)
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
        assert alarm["TreatMissingData"] == "notBreaching"
        assert [m["Id"] for m in alarm["Metrics"] if m["ReturnData"]] in (["rate"],
                                                                           ["unhealthy"])
    # Blue/green serves a new release from the other target group: both are watched.
    groups = {"targetgroup/aws-use1-tg/73e2d6bc24d8a067"}
    if strategy == "blue_green":
        groups.add("targetgroup/aws-use1-tg-green/73e2d6bc24d8a067")
    for alarm in alarms.values():
        assert watched_target_groups(alarm) == groups
    rate = alarms["5xx"]
    assert rate["Threshold"] == 5.0
    metrics = {m["MetricStat"]["Metric"]["MetricName"] for m in rate["Metrics"]
               if "MetricStat" in m}
    assert metrics == {"HTTPCode_Target_5XX_Count", "RequestCount"}
    assert [m["Expression"] for m in rate["Metrics"] if m["Id"] == "rate"] == [
        "IF(requests >= 10, 100 * errors / requests, 0)"]
    service = one(mocks, "aws:ecs/service:Service")
    assert service.inputs["alarms"] == {
        "alarmNames": ["aws-use1-alarm-5xx", "aws-use1-alarm-unhealthy"],
        "enable": True, "rollback": True}
    validate(ECS_MODEL, "CreateService", create_service_input(service))


def test_rollback_threshold_follows_config() -> None:
    mocks = run_program(with_target(rollbackErrorPercent=2), stack="prod")
    assert alarms_by_role(mocks)["5xx"]["Threshold"] == 2.0
