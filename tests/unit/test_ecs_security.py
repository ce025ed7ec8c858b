"""EcsTarget under mocks, what an AWS security review asks: the ALB reachable only
through the CDN, existing secrets and keys with least privilege, access logs, flow
logs, deletion protection, the WAF. The mocks and helpers: tests/unit/test_ecs.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gin_deploy.config import ConfigError
from tests.unit import harness
from tests.unit.harness import RecordingMocks, Registered, run_program
from tests.unit.test_ecs import (
    ACCOUNT,
    CLOUDWATCH_MODEL,
    EC2_MODEL,
    ECS_MODEL,
    SECRET,
    _arn,
    _model,
    assert_lints_clean,
    containers,
    create_service_input,
    ecs_only,
    one,
    parliament_findings,
    put_metric_alarm_input,
    register_task_definition_input,
    validate,
    with_target,
)


@pytest.fixture(scope="module")
def prod() -> RecordingMocks:
    return run_program(ecs_only(), stack="prod")


PREFIX_LISTS = {"com.amazonaws.global.cloudfront.origin-facing": ("pl-3b927c52", 55),
                "com.amazonaws.us-east-1.route53-healthchecks": ("pl-07e9c3a5e1e2d2b9d", 25)}
# EC2's default quota of inbound rules per security group; a prefix list counts as its
# maximum size (its "weight").


RULES_PER_GROUP = 60


@pytest.fixture(scope="module")
def behind_cdn() -> RecordingMocks:
    """The prod ECS target as an origin locked to CloudFront."""
    config = ecs_only()
    config["gin-deploy:edge"] = {"zone": "example.com", "cdn": True}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(harness.CALL_RESULTS, "aws:ec2/getManagedPrefixList:getManagedPrefixList",
                      lambda a: {"id": PREFIX_LISTS[a["name"]][0], "name": a["name"],
                                 "maxEntries": PREFIX_LISTS[a["name"]][1], "entries": []})
        return run_program(config, stack="prod")


def test_behind_the_cdn_only_cloudfront_and_health_checkers_reach_the_alb(
        behind_cdn: RecordingMocks) -> None:
    mocks = behind_cdn
    ingress = [r.inputs for r in mocks.of_type(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] != "aws-use1-task-sg-id"]
    # Nothing from anywhere, no port 80: CloudFront talks HTTPS to origins.
    assert not any(r.get("cidrIpv4") or r.get("cidrIpv6") for r in ingress)
    by_group: dict[str, list[str]] = {}
    for rule in ingress:
        assert (rule["fromPort"], rule["toPort"], rule["ipProtocol"]) == (443, 443, "tcp")
        by_group.setdefault(rule["securityGroupId"], []).append(rule["prefixListId"])
    assert by_group == {"aws-use1-alb-sg-id": ["pl-3b927c52"],
                        "aws-use1-alb-hc-sg-id": ["pl-07e9c3a5e1e2d2b9d"]}
    # Both lists in one group would exceed the rule quota: hence two groups.
    weights = {pl: w for pl, w in PREFIX_LISTS.values()}
    assert sum(weights.values()) > RULES_PER_GROUP
    for lists in by_group.values():
        assert sum(weights[pl] for pl in lists) <= RULES_PER_GROUP
    alb = one(mocks, "aws:lb/loadBalancer:LoadBalancer").inputs
    assert alb["securityGroups"] == ["aws-use1-alb-sg-id", "aws-use1-alb-hc-sg-id"]
    lookups = {a["name"] for t, a in mocks.calls
               if t == "aws:ec2/getManagedPrefixList:getManagedPrefixList"}
    assert lookups >= set(PREFIX_LISTS)


def test_the_prefix_list_rules_are_valid_for_the_ec2_api(behind_cdn: RecordingMocks) -> None:
    for rule in behind_cdn.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        i = rule.inputs
        permission: dict[str, Any] = {"IpProtocol": i["ipProtocol"],
                                      "FromPort": int(i["fromPort"]), "ToPort": int(i["toPort"])}
        if "prefixListId" in i:
            permission["PrefixListIds"] = [{"PrefixListId": i["prefixListId"],
                                            "Description": i["description"]}]
        else:
            permission["UserIdGroupPairs"] = [{"GroupId": i["referencedSecurityGroupId"]}]
        validate(EC2_MODEL, "AuthorizeSecurityGroupIngress",
                 {"GroupId": i["securityGroupId"], "IpPermissions": [permission]})


def test_the_cdn_locked_target_passes_botocore_and_parliament(
        behind_cdn: RecordingMocks) -> None:
    """The prod stack's ECS target as shipped (behind the CDN): what AWS would receive."""
    mocks = behind_cdn
    validate(ECS_MODEL, "RegisterTaskDefinition", register_task_definition_input(
        one(mocks, "aws:ecs/taskDefinition:TaskDefinition")))
    validate(ECS_MODEL, "CreateService", create_service_input(
        one(mocks, "aws:ecs/service:Service")))
    for alarm in mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        validate(CLOUDWATCH_MODEL, "PutMetricAlarm", put_metric_alarm_input(alarm))
    policies = [r.inputs["policy"] for r in mocks.resources
                if r.typ in ("aws:iam/rolePolicy:RolePolicy", "aws:s3/bucketPolicy:BucketPolicy")
                and not r.name.startswith("hello-gin-edge-")]   # the CDN's: test_edge_aws.py
    assert len(policies) == 3  # execution role, flow logs role, access-log bucket
    for document in policies:
        assert parliament_findings(document) == []


def test_the_alb_waf_does_not_apply_behind_the_cdn() -> None:
    config = with_target(waf=True)
    config["gin-deploy:edge"] = {"zone": "example.com", "cdn": True}
    with pytest.raises(ConfigError, match=r"targets\[0\].waf: does not apply with edge.cdn"):
        run_program(config, stack="prod")


def test_ingress_cidrs_do_not_apply_behind_the_cdn() -> None:
    config = with_target(ingressCidrs=["198.51.100.0/24"])
    config["gin-deploy:edge"] = {"zone": "example.com", "cdn": True}
    with pytest.raises(ConfigError, match=r"targets\[0\].ingressCidrs: does not apply with "
                                          r"edge.cdn"):
        run_program(config, stack="prod")


def test_access_logs_are_on_by_default_in_a_private_bucket_made_for_them(
        prod: RecordingMocks) -> None:
    bucket = one(prod, "aws:s3/bucket:Bucket")
    assert bucket.name == "aws-use1-alb-logs" and bucket.inputs["forceDestroy"] is False
    logs = one(prod, "aws:lb/loadBalancer:LoadBalancer").inputs["accessLogs"]
    assert logs == {"bucket": "aws-use1-alb-logs-0a1b2c3", "enabled": True,
                    "prefix": "hello-gin/prod/aws-use1"}
    blocked = one(prod, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(blocked[k] is True for k in ("blockPublicAcls", "blockPublicPolicy",
                                            "ignorePublicAcls", "restrictPublicBuckets"))
    ownership = one(prod, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    # ELB log delivery supports SSE-S3 only.
    [rule] = one(prod, "aws:s3/bucketServerSideEncryptionConfiguration:"
                       "BucketServerSideEncryptionConfiguration").inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    [lifecycle] = one(prod, "aws:s3/bucketLifecycleConfiguration:"
                            "BucketLifecycleConfiguration").inputs["rules"]
    assert lifecycle["expiration"] == {"days": 30}  # logRetentionDays
    assert lifecycle["filter"] == {"prefix": "hello-gin/prod/aws-use1/"}
    document = one(prod, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"]
    assert parliament_findings(document) == []
    statements = {s["Sid"]: s for s in json.loads(document)["Statement"]}
    assert statements["ElbAccessLogDelivery"] == {
        "Sid": "ElbAccessLogDelivery", "Effect": "Allow",
        "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::aws-use1-alb-logs-0a1b2c3/hello-gin/prod/aws-use1/"
                    f"AWSLogs/{ACCOUNT}/*"}
    assert statements["TlsOnly"]["Effect"] == "Deny"
    assert statements["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_access_logs_and_deletion_protection_can_be_turned_off() -> None:
    mocks = run_program(with_target(accessLogs=False, deletionProtection=False), stack="prod")
    alb = one(mocks, "aws:lb/loadBalancer:LoadBalancer").inputs
    assert "accessLogs" not in alb and alb["enableDeletionProtection"] is False
    assert mocks.of_type("aws:s3/bucket:Bucket") == []


def test_vpc_flow_logs_go_to_their_own_log_group(prod: RecordingMocks) -> None:
    flow = one(prod, "aws:ec2/flowLog:FlowLog").inputs
    assert (flow["vpcId"], flow["trafficType"]) == ("aws-use1-vpc-id", "ALL")
    assert flow["logDestinationType"] == "cloud-watch-logs"
    group = prod.named("aws-use1-flow-logs", "aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["retentionInDays"] == 30
    assert flow["logDestination"] == _arn("logs", "log-group:aws-use1-flow-logs", "us-east-1")
    assert flow["iamRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/aws-use1-flow-logs-role"
    trust = json.loads(prod.named("aws-use1-flow-logs-role").inputs["assumeRolePolicy"])
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc-flow-log/*"}}
    document = prod.named("aws-use1-flow-logs-policy").inputs["policy"]
    assert parliament_findings(document) == []
    resources = {s["Sid"]: s["Resource"] for s in json.loads(document)["Statement"]}
    group_arn = _arn("logs", "log-group:aws-use1-flow-logs", "us-east-1")
    assert resources == {"DeliverToThisGroup": f"{group_arn}:*",
                         "WriteItsStreams": f"{group_arn}:log-stream:*",
                         "FindTheGroup": "*"}


WAFV2_MODEL = _model("wafv2")


def create_web_acl_input(acl: Registered) -> dict[str, Any]:
    """The CreateWebACL call the provider makes from the recorded inputs."""
    i = acl.inputs
    seen = i["visibilityConfig"]
    return {"Name": acl.name, "Scope": i["scope"], "Description": i["description"],
            "DefaultAction": {"Allow": {}},
            "VisibilityConfig": {"SampledRequestsEnabled": seen["sampledRequestsEnabled"],
                                 "CloudWatchMetricsEnabled": seen["cloudwatchMetricsEnabled"],
                                 "MetricName": seen["metricName"]},
            "Rules": json.loads(i["ruleJson"])}


def test_waf_rate_limits_per_ip_and_applies_the_common_rules() -> None:
    mocks = run_program(with_target(waf=True, wafRateLimit=500), stack="prod")
    acl = one(mocks, "aws:wafv2/webAcl:WebAcl")
    params = create_web_acl_input(acl)
    validate(WAFV2_MODEL, "CreateWebACL", params)
    assert params["Scope"] == "REGIONAL" and acl.inputs["defaultAction"] == {"allow": {}}
    rate, common = params["Rules"]
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": 500, "AggregateKeyType": "IP", "EvaluationWindowSec": 300}
    assert rate["Action"] == {"Block": {}}
    group = common["Statement"]["ManagedRuleGroupStatement"]
    assert (group["VendorName"], group["Name"]) == ("AWS", "AWSManagedRulesCommonRuleSet")
    # API bodies above 8 KB are counted, not blocked.
    assert group["RuleActionOverrides"] == [
        {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    association = one(mocks, "aws:wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association["resourceArn"] == _arn(
        "elasticloadbalancing", "loadbalancer/app/aws-use1-alb/50dc6c495c0c9188", "us-east-1")
    assert association["webAclArn"] == _arn("wafv2", "regional/webacl/aws-use1-waf/a1b2c3d4",
                                            "us-east-1")


def test_no_waf_by_default(prod: RecordingMocks) -> None:
    assert prod.of_type("aws:wafv2/webAcl:WebAcl") == []


EXISTING_SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:hello-gin/api-AbCdEf"


EXISTING_PARAMETER = f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/shared/TOKEN"


CUSTOMER_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def existing_secrets() -> RecordingMocks:
    config = with_target(
        secretArns={"API_KEY": f"{EXISTING_SECRET}:key::", "TOKEN": EXISTING_PARAMETER},
        kmsKeyArns=[CUSTOMER_KEY])
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "secretEnv": ["DB_PASSWORD"]}
    config["gin-deploy:DB_PASSWORD"] = SECRET
    return run_program(config, stack="prod", secret_keys=["gin-deploy:DB_PASSWORD"])


def test_existing_secrets_are_referenced_and_read_with_least_privilege(
        existing_secrets: RecordingMocks) -> None:
    mocks = existing_secrets
    [c] = containers(mocks)
    own = _arn("ssm", "parameter/aws-use1-secret-DB_PASSWORD", "us-east-1")
    assert c["secrets"] == [{"name": "API_KEY", "valueFrom": f"{EXISTING_SECRET}:key::"},
                            {"name": "DB_PASSWORD", "valueFrom": own},
                            {"name": "TOKEN", "valueFrom": EXISTING_PARAMETER}]
    # Only the secret gin-deploy stores itself is created.
    assert [p.name for p in mocks.of_type("aws:ssm/parameter:Parameter")] == [
        "aws-use1-secret-DB_PASSWORD"]
    document = mocks.named("aws-use1-execution-policy").inputs["policy"]
    assert_lints_clean(document)
    statements = {s["Sid"]: s for s in json.loads(document)["Statement"]}
    assert statements["ReadTheseParameters"]["Resource"] == sorted([own, EXISTING_PARAMETER])
    # IAM grants the secret, not the JSON key the task picks from it.
    assert statements["ReadTheseSecrets"] == {
        "Sid": "ReadTheseSecrets", "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue", "Resource": [EXISTING_SECRET]}
    decrypt = statements["DecryptWithTheseKeys"]
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", [CUSTOMER_KEY])
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": [
        "secretsmanager.us-east-1.amazonaws.com", "ssm.eu-west-1.amazonaws.com",
        "ssm.us-east-1.amazonaws.com"]}}
    validate(ECS_MODEL, "RegisterTaskDefinition", register_task_definition_input(
        one(mocks, "aws:ecs/taskDefinition:TaskDefinition")))


@pytest.mark.parametrize(("fields", "message"), [
    ({"kmsKeyArns": [CUSTOMER_KEY]}, r"kmsKeyArns: only applies with secretArns"),
    ({"secretArns": {"LOG_LEVEL": EXISTING_PARAMETER}},
     r"secretArns.LOG_LEVEL: is also set by app.env"),
    ({"secretArns": {"PORT": EXISTING_PARAMETER}}, r"secretArns.PORT: is set by gin-deploy"),
    ({"secretArns": {"API_KEY": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:api"}},
     r"secretArns: values must be full Secrets Manager secret ARNs"),
    ({"secretArns": {"API_KEY": EXISTING_PARAMETER},
      "kmsKeyArns": [f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/app"]},
     r"kmsKeyArns: must be KMS key ARNs"),
])
def test_invalid_existing_secrets_fail_naming_the_key(fields: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_program(with_target(**fields), stack="prod")
