"""The policy pack's rules: each promise, kept and broken, and the dev program keeps them."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from tests.unit.harness import ROOT, run_program, stack_config, unsecret

_spec = importlib.util.spec_from_file_location("policy_rules", ROOT / "policy" / "rules.py")
assert _spec and _spec.loader
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)


def names(resource_type: str, props: dict[str, Any]) -> list[str]:
    return [m for _n, m in rules.violations(resource_type, props)]


def dev_deploy_props(config: dict[str, Any] | None = None) -> dict[str, Any]:
    mocks = run_program(config or stack_config("dev"))
    deploy = mocks.named("local-deploy")
    return {**deploy.inputs, "stdin": unsecret(deploy.inputs["stdin"])}


def test_dev_program_keeps_every_promise() -> None:
    mocks = run_program(stack_config("dev"))
    for resource in mocks.resources:
        props = {k: unsecret(v) for k, v in resource.inputs.items()}
        assert rules.violations(resource.typ, props) == [], resource.name


def test_plain_env_var_that_looks_secret_is_a_violation() -> None:
    config = stack_config("dev")
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "env": {"DB_PASSWORD": "x"}}
    assert names("command:local:Command", dev_deploy_props(config)) == [
        "env vars ['DB_PASSWORD'] look like secrets: declare them in app.secretEnv"]


def test_each_policy_runs_only_its_own_rule() -> None:
    # Other policies must not touch a deploy's stdin (unknown during some previews).
    props = {"stdin": object()}  # any access would fail to parse, not raise
    assert rules.violations("command:local:Command", props, "logs-retained") == []
    assert rules.violations("aws:cloudwatch/logGroup:LogGroup", {}, "logs-retained")
    assert rules.violations("aws:cloudwatch/logGroup:LogGroup", {}, "no-world-open-ports") == []


def test_host_tls_downgrade_and_missing_redirect_are_violations() -> None:
    props = dev_deploy_props()
    payload = json.loads(props["stdin"])
    site = payload["nginx"]["site"]
    payload["nginx"]["site"] = site.replace("TLSv1.2 TLSv1.3", "TLSv1 TLSv1.2 TLSv1.3") \
        .replace("return 308 https://", "proxy_pass http://")
    found = names("command:local:Command", {**props, "stdin": json.dumps(payload)})
    assert any("only TLSv1.2 and TLSv1.3" in m for m in found), found
    assert "nginx must redirect HTTP to HTTPS" in found


@pytest.mark.parametrize(("props", "ok"), [
    ({"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}, True),
    ({"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-2016-08"}, False),
    ({"protocol": "HTTP", "defaultActions": [
        {"type": "redirect", "redirect": {"protocol": "HTTPS", "statusCode": "HTTP_301"}}]}, True),
    ({"protocol": "HTTP", "defaultActions": [{"type": "forward"}]}, False),
])
def test_listeners(props: dict[str, Any], ok: bool) -> None:
    assert (names("aws:lb/listener:Listener", props) == []) is ok


@pytest.mark.parametrize(("rule", "ok"), [
    ({"cidrBlocks": ["0.0.0.0/0"], "fromPort": 443, "toPort": 443}, True),
    ({"cidrBlocks": ["0.0.0.0/0"], "fromPort": 22, "toPort": 22}, False),
    ({"ipv6CidrBlocks": ["::/0"], "fromPort": 0, "toPort": 65535}, False),
    ({"cidrBlocks": ["10.0.0.0/16"], "fromPort": 8080, "toPort": 8080}, True),
])
def test_security_groups(rule: dict[str, Any], ok: bool) -> None:
    assert (names("aws:ec2/securityGroup:SecurityGroup", {"ingress": [rule]}) == []) is ok


def test_security_group_ingress_rule_resource() -> None:
    typ = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    assert names(typ, {"cidrIpv4": "0.0.0.0/0", "fromPort": 80, "toPort": 80}) == []
    assert names(typ, {"cidrIpv4": "0.0.0.0/0", "fromPort": 8080, "toPort": 8080})


def test_task_definitions() -> None:
    good = [{"name": "app", "user": "65532:65532", "readonlyRootFilesystem": True,
             "environment": [{"name": "GIN_MODE", "value": "release"}],
             "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:..."}]}]
    typ = "aws:ecs/taskDefinition:TaskDefinition"
    assert names(typ, {"containerDefinitions": json.dumps(good)}) == []
    bad = [{"name": "app", "user": "0", "environment": [{"name": "API_TOKEN", "value": "x"}]}]
    assert names(typ, {"containerDefinitions": json.dumps(bad)}) == [
        "container app must run as a non-root numeric user",
        "container app must have a read-only root filesystem",
        "container app: ['API_TOKEN'] look like secrets; use `secrets`"]


def test_log_retention_and_cloudfront() -> None:
    assert names("aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 30}) == []
    assert names("aws:cloudwatch/logGroup:LogGroup", {}) == ["log groups must set retentionInDays"]
    typ = "aws:cloudfront/distribution:Distribution"
    good = {"defaultCacheBehavior": {"viewerProtocolPolicy": "redirect-to-https"},
            "viewerCertificate": {"minimumProtocolVersion": "TLSv1.2_2021"}}
    assert names(typ, good) == []
    bad = {"defaultCacheBehavior": {"viewerProtocolPolicy": "allow-all"},
           "viewerCertificate": {"minimumProtocolVersion": "TLSv1"}}
    assert len(names(typ, bad)) == 2


def test_kubernetes_deployments() -> None:
    container = {"name": "app", "securityContext": {"runAsNonRoot": True,
                                                    "readOnlyRootFilesystem": True},
                 "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {}}}]}
    props = {"spec": {"template": {"spec": {"containers": [container]}}}}
    assert names("kubernetes:apps/v1:Deployment", props) == []
    container["securityContext"] = {}
    container["env"] = [{"name": "DB_PASSWORD", "value": "x"}]
    assert len(names("kubernetes:apps/v1:Deployment", props)) == 3
