"""EcsTarget under mocks, how it deploys and stays up: a new deployment whenever ECS
needs one (spot, secret values), a liveness health check, NAT per AZ with an S3
endpoint (the release strategies and rollback alarms: test_ecs_release.py). The mocks
and helpers: tests/unit/test_ecs.py."""

from __future__ import annotations

import pytest

from tests.unit.harness import RecordingMocks, run_program
from tests.unit.test_ecs import (
    SECRET,
    _parameter,
    containers,
    ecs_only,
    one,
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

