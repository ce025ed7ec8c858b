"""ECS renderers: container definitions checked against AWS's own API model (botocore),
IAM policies linted by parliament, and the plain helpers (subnets, HSTS, capacity)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import botocore.loaders
import botocore.model
import botocore.validate
import pytest
from parliament import analyze_policy_string

from gin_deploy.render import ecs
from gin_deploy.render.headers import hsts_value

ACCOUNT = "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/hello-gin@sha256:{'0f' * 32}"
REPO_ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/hello-gin"
LOG_GROUP_ARN = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:hello-gin-logs"
PARAM_ARN = f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/hello-gin/DB_PASSWORD"
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:api-key-AbCdEf"
KMS_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

_MODEL = botocore.model.ServiceModel(
    botocore.loaders.Loader().load_service_model("ecs", "service-2"), "ecs")


def validate_ecs(operation: str, params: dict[str, Any]) -> None:
    shape = _MODEL.operation_model(operation).input_shape
    report = botocore.validate.ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def make_spec(**overrides: Any) -> ecs.ContainerSpec:
    fields: dict[str, Any] = {
        "name": "hello-gin",
        "image": IMAGE,
        "port": 8080,
        "log_group": "hello-gin-logs",
        "log_region": "us-east-1",
        "drain_s": 10,
        "environment": ecs.app_environment(
            port=8080, ready_path="/readyz", drain_s=10,
            trusted_proxies=["10.0.192.0/22", "10.0.196.0/22"], extra={"LOG_LEVEL": "info"}),
        "secrets": {"DB_PASSWORD": PARAM_ARN, "API_KEY": SECRET_ARN},
    }
    fields.update(overrides)
    return ecs.ContainerSpec(**fields)


def register_input(containers: list[dict[str, Any]], arch: str = "amd64") -> dict[str, Any]:
    return {
        "family": "hello-gin-prod-aws-use1",
        "containerDefinitions": containers,
        "cpu": "256",
        "memory": "512",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "runtimePlatform": ecs.runtime_platform(arch),
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/execution",
    }


# --- container definitions --------------------------------------------------------


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_container_definitions_are_a_valid_register_task_definition_input(arch: str) -> None:
    containers = ecs.container_definitions(make_spec())
    validate_ecs("RegisterTaskDefinition", register_input(containers, arch))
    # And they survive the JSON round trip the provider makes.
    assert json.loads(json.dumps(containers)) == containers


def test_botocore_would_catch_a_broken_definition() -> None:
    """The validator is real: a wrong type and an unknown key are both reported."""
    [container] = ecs.container_definitions(make_spec())
    broken = {**container, "stopTimeout": "15", "readOnlyRootFilesystem": True}
    shape = _MODEL.operation_model("RegisterTaskDefinition").input_shape
    report = botocore.validate.ParamValidator().validate(register_input([broken]), shape)
    assert report.has_errors()
    text = report.generate_report()
    assert "stopTimeout" in text and "readOnlyRootFilesystem" in text


def test_container_is_non_root_read_only_unprivileged_with_init() -> None:
    [c] = ecs.container_definitions(make_spec())
    assert c["user"] == "65532:65532"
    assert c["readonlyRootFilesystem"] is True
    assert c["privileged"] is False
    assert c["linuxParameters"] == {"initProcessEnabled": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["essential"] is True


def test_stop_timeout_covers_the_longest_request_and_the_drain() -> None:
    [c] = ecs.container_definitions(make_spec(drain_s=30, write_timeout_s=20))
    assert c["stopTimeout"] == 55


def test_health_check_runs_the_binary_against_the_liveness_path() -> None:
    [c] = ecs.container_definitions(make_spec(health_path="/healthz"))
    assert c["healthCheck"]["command"] == [
        "CMD", "/app", "healthcheck", "-url", "http://127.0.0.1:8080/healthz"]
    assert c["healthCheck"]["startPeriod"] >= c["healthCheck"]["interval"]


def test_secrets_are_references_and_never_environment() -> None:
    [c] = ecs.container_definitions(make_spec())
    assert c["secrets"] == [{"name": "API_KEY", "valueFrom": SECRET_ARN},
                            {"name": "DB_PASSWORD", "valueFrom": PARAM_ARN}]
    names = [e["name"] for e in c["environment"]]
    assert "DB_PASSWORD" not in names and "API_KEY" not in names
    assert names == sorted(names)


def test_environment_carries_the_apps_contract() -> None:
    [c] = ecs.container_definitions(make_spec())
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env == {
        "GIN_MODE": "release", "PORT": "8080", "READY_PATH": "/readyz",
        "SHUTDOWN_TIMEOUT": "10s", "IDLE_TIMEOUT": "60s", "WRITE_TIMEOUT": "30s",
        "TRUSTED_PROXIES": "10.0.192.0/22,10.0.196.0/22",
        "LOG_LEVEL": "info",
    }


def test_awslogs_never_blocks_the_app() -> None:
    [c] = ecs.container_definitions(make_spec())
    assert c["logConfiguration"] == {"logDriver": "awslogs", "options": {
        "awslogs-group": "hello-gin-logs", "awslogs-region": "us-east-1",
        "awslogs-stream-prefix": "app", "mode": "non-blocking", "max-buffer-size": "25m"}}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"image": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/hello-gin:1.0"}, "by digest"),
    ({"user": "0:0"}, "non-root"),
    ({"user": "root"}, "non-root"),
    ({"user": "app"}, "numeric"),
    ({"drain_s": 116}, "drain_s"),
    ({"drain_s": 50, "write_timeout_s": 66}, "exceed Fargate's 120 s stop timeout"),
    ({"environment": {"DB_PASSWORD": "plain"}}, "both plain environment and secrets"),
    ({"secrets": {"X": f"arn:aws:s3:::{ACCOUNT}-bucket/x"}}, "not an ARN|SSM parameter"),
    ({"secrets": {"X": "plain-value"}}, "not an ARN"),
    ({"environment": {"BAD-NAME": "x"}}, "not a valid env var name"),
    ({"log_region": "mars"}, "not a region"),
    ({"health_path": "healthz; rm -rf /"}, "health_path"),
])
def test_unsafe_specs_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_spec(**overrides)


# --- IAM ------------------------------------------------------------------------------


def findings(document: dict[str, Any], community: bool = False) -> list[str]:
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=community)
    return [f"{f.issue}: {f.detail}" for f in policy.findings]


def test_execution_policy_lints_clean_with_every_kind_of_secret() -> None:
    document = ecs.execution_role_policy(
        repository_arn=REPO_ARN, log_group_arn=LOG_GROUP_ARN, parameter_arns=[PARAM_ARN],
        secret_arns=[SECRET_ARN], kms_key_arns=[KMS_ARN])
    assert findings(document) == []
    actions = {s["Sid"]: (s["Action"], s["Resource"]) for s in document["Statement"]}
    assert actions["EcrAuth"] == ("ecr:GetAuthorizationToken", "*")
    assert actions["EcrPullThisRepository"][1] == REPO_ARN
    assert actions["LogsToThisGroup"] == (["logs:CreateLogStream", "logs:PutLogEvents"],
                                          f"{LOG_GROUP_ARN}:log-stream:*")
    assert actions["ReadTheseParameters"] == ("ssm:GetParameters", [PARAM_ARN])
    assert actions["ReadTheseSecrets"] == ("secretsmanager:GetSecretValue", [SECRET_ARN])
    assert actions["DecryptWithTheseKeys"] == ("kms:Decrypt", [KMS_ARN])
    # Only the token action is on "*" (it exists on nothing else).
    assert [s["Sid"] for s in document["Statement"] if s["Resource"] == "*"] == ["EcrAuth"]


def test_keys_decrypt_only_through_the_services_holding_the_secrets() -> None:
    eu_param = f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/hello-gin/TOKEN"
    document = ecs.execution_role_policy(
        repository_arn=REPO_ARN, log_group_arn=LOG_GROUP_ARN,
        parameter_arns=[PARAM_ARN, eu_param], secret_arns=[SECRET_ARN],
        kms_key_arns=[KMS_ARN])
    assert findings(document) == []
    [decrypt] = [s for s in document["Statement"] if s["Sid"] == "DecryptWithTheseKeys"]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": [
        "secretsmanager.us-east-1.amazonaws.com", "ssm.eu-west-1.amazonaws.com",
        "ssm.us-east-1.amazonaws.com"]}}
    # parliament knows the condition keys of each action: a typo would be a finding.
    decrypt["Condition"] = {"StringEquals": {"kms:ViaServices": ["x"]}}
    assert [f.split(":")[0] for f in findings(document)] == ["UNKNOWN_CONDITION_FOR_ACTION"]


def test_a_json_key_reference_grants_the_secret_itself() -> None:
    ref = f"{SECRET_ARN}:password::"
    assert ecs.secret_resource_arn(ref) == SECRET_ARN
    assert ecs.secret_resource_arn(f"{SECRET_ARN}:password:AWSCURRENT:") == SECRET_ARN
    assert ecs.secret_resource_arn(PARAM_ARN) == PARAM_ARN
    [c] = ecs.container_definitions(make_spec(secrets={"DB_PASSWORD": ref}))
    assert c["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": ref}]


def test_parliament_is_real() -> None:
    """The linter does flag a sloppy policy, so "no findings" above means something."""
    sloppy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": REPO_ARN},
        {"Effect": "Allow", "Action": "ecr:BatchGetImages", "Resource": "*"},
    ]}
    issues = {f.split(":")[0] for f in findings(sloppy)}
    assert {"RESOURCE_MISMATCH", "UNKNOWN_ACTION"} <= issues


def test_minimal_execution_policy_has_no_secret_statements() -> None:
    document = ecs.execution_role_policy(repository_arn=REPO_ARN,
                                         log_group_arn=LOG_GROUP_ARN + ":*")
    assert findings(document) == []
    assert [s["Sid"] for s in document["Statement"]] == [
        "EcrAuth", "EcrPullThisRepository", "LogsToThisGroup"]
    # A ":*"-suffixed log group ARN (older providers) is normalized.
    assert document["Statement"][2]["Resource"] == f"{LOG_GROUP_ARN}:log-stream:*"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"repository_arn": LOG_GROUP_ARN}, "not an ecr ARN"),
    ({"parameter_arns": [SECRET_ARN]}, "not an ssm ARN"),
    ({"secret_arns": ["*"]}, "not an ARN"),
    ({"secret_arns": [f"{SECRET_ARN}:password::"]}, "names a JSON key"),
    ({"kms_key_arns": [f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/app"],
      "parameter_arns": [PARAM_ARN]}, "aliases do not authorize"),
    ({"kms_key_arns": [KMS_ARN]}, "no parameter or secret to decrypt"),
])
def test_execution_policy_refuses_wrong_resources(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"repository_arn": REPO_ARN, "log_group_arn": LOG_GROUP_ARN}
    with pytest.raises(ValueError, match=message):
        ecs.execution_role_policy(**{**base, **kwargs})


def test_task_trust_is_limited_to_this_account_and_region() -> None:
    # parliament lints identity policies only; a trust policy is checked by shape.
    trust = ecs.ecs_tasks_trust_policy(partition="aws", account_id=ACCOUNT, region="eu-west-1")
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:*"},
    }
    [ecs_statement] = ecs.ecs_service_trust_policy()["Statement"]
    assert ecs_statement["Principal"] == {"Service": "ecs.amazonaws.com"}
    with pytest.raises(ValueError):
        ecs.ecs_tasks_trust_policy(partition="aws", account_id="me", region="eu-west-1")


# --- ECR, ALB, capacity, VPC -------------------------------------------------------------


def test_lifecycle_policy_keeps_the_newest_images() -> None:
    policy = ecs.ecr_lifecycle_policy(7)
    [rule] = policy["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan",
                                 "countNumber": 7}
    assert rule["action"] == {"type": "expire"} and rule["rulePriority"] == 1
    with pytest.raises(ValueError):
        ecs.ecr_lifecycle_policy(0)


def test_hsts_value() -> None:
    assert hsts_value(63072000, True, False) == "max-age=63072000; includeSubDomains"
    assert hsts_value(63072000, True, True) == \
        "max-age=63072000; includeSubDomains; preload"
    assert hsts_value(300, False, False) == "max-age=300"


@pytest.mark.parametrize(("spot", "expected"), [
    (0, [("FARGATE", 0, 1)]),
    (50, [("FARGATE", 1, 50), ("FARGATE_SPOT", 0, 50)]),
    (100, [("FARGATE_SPOT", 0, 1)]),
])
def test_capacity_strategy_is_valid_for_create_service(
        spot: int, expected: list[tuple[str, int, int]]) -> None:
    strategy = ecs.capacity_provider_strategy(spot)
    assert [(s["capacity_provider"], s["base"], s["weight"]) for s in strategy] == expected
    validate_ecs("CreateService", {"serviceName": "svc", "capacityProviderStrategy": [
        {"capacityProvider": s["capacity_provider"], "base": s["base"], "weight": s["weight"]}
        for s in strategy]})


@pytest.mark.parametrize(("cidr", "azs"), [("10.0.0.0/16", 3), ("10.0.0.0/16", 2),
                                            ("172.20.0.0/20", 3)])
def test_subnet_plan_fits_the_vpc_without_overlaps(cidr: str, azs: int) -> None:
    plan = ecs.subnet_plan(cidr, azs)
    assert len(plan.public) == len(plan.private) == azs
    vpc = ipaddress.ip_network(cidr)
    nets = [ipaddress.ip_network(n) for n in (*plan.public, *plan.private)]
    assert all(n.subnet_of(vpc) for n in nets)  # type: ignore[arg-type]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    # Load balancers need a /27 or larger; tasks get the bigger subnets.
    assert all(ipaddress.ip_network(n).prefixlen <= 27 for n in plan.public)
    assert all(ipaddress.ip_network(a).num_addresses > ipaddress.ip_network(b).num_addresses
               for a, b in zip(plan.private, plan.public, strict=True))


def test_subnet_plan_for_the_default_vpc() -> None:
    plan = ecs.subnet_plan("10.0.0.0/16", 3)
    assert plan.private == ("10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18")
    assert plan.public == ("10.0.192.0/22", "10.0.196.0/22", "10.0.200.0/22")


@pytest.mark.parametrize(("cidr", "azs"), [("10.0.0.0/21", 2), ("fd00::/56", 2),
                                            ("10.0.0.0/16", 4)])
def test_subnet_plan_refuses_what_does_not_fit(cidr: str, azs: int) -> None:
    with pytest.raises(ValueError):
        ecs.subnet_plan(cidr, azs)
