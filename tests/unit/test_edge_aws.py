"""The edge as AWS would receive it: CloudFront access logs and the WAF web ACL under
mocks, and every CloudFront, Route 53, WAF and log delivery input of the prod stack
checked by botocore against the services' own models (tests/unit/aws_api.py), the
log bucket's policy by parliament."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from parliament import analyze_policy_string

from gin_deploy.config import ConfigError
from gin_deploy.render import edge as render
from tests.unit import aws_api, harness
from tests.unit.test_edge import (
    PROD,
    EdgeMocks,
    home,  # noqa: F401  (autouse: the prod host target's key file)
    install_mocks,
    parse,
    problems_of,
    prod_config,
    run,
)

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
DISTRIBUTION_ARN = "arn:aws:cloudfront::123456789012:distribution/EDFDVBD6EXAMPLE"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
SOURCE = "aws:cloudwatch/logDeliverySource:LogDeliverySource"
DESTINATION = "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination"
DELIVERY = "aws:cloudwatch/logDelivery:LogDelivery"
BUCKET = "hello-gin-edge-logs-0a1b2c3"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def prod() -> EdgeMocks:
    return run(PROD)


def edge_config(**edge: Any) -> dict[str, Any]:
    return prod_config(**edge)


# --- access logs ---------------------------------------------------------------------------

def test_access_logs_go_from_the_distribution_to_the_stacks_bucket(prod: EdgeMocks) -> None:
    [source] = prod.of_type(SOURCE)
    assert source.name == "hello-gin-edge-access-logs"
    assert source.inputs == {"logType": "ACCESS_LOGS", "resourceArn": DISTRIBUTION_ARN}
    [destination] = prod.of_type(DESTINATION)
    assert destination.inputs["deliveryDestinationConfiguration"] == {
        "destinationResourceArn": f"arn:aws:s3:::{BUCKET}"}
    assert destination.inputs["outputFormat"] == "json"
    [delivery] = prod.of_type(DELIVERY)
    assert delivery.inputs["deliverySourceName"] == "hello-gin-edge-access-logs-0a1b2c3"
    assert delivery.inputs["deliveryDestinationArn"].endswith(
        ":delivery-destination:hello-gin-edge-access-logs-destination-0a1b2c3")
    assert delivery.inputs["s3DeliveryConfigurations"] == [
        {"suffixPath": "{DistributionId}/{yyyy}/{MM}/{dd}/{HH}",
         "enableHiveCompatiblePath": False}]
    for resource in (source, destination, delivery):
        assert "::hello-gin-edge-aws::" in str(prod.providers[resource.name])  # us-east-1
    assert prod.outputs["accessLogsBucket"] == BUCKET


def edge_s3(mocks: Any, typ: str = "") -> list[Any]:
    """The edge's own S3 resources (the ECS targets' ALB log buckets are theirs)."""
    return [r for r in mocks.resources if r.typ.startswith(f"aws:s3/{typ}")
            and r.name.startswith("hello-gin-edge-")]


def test_the_log_bucket_is_private_encrypted_without_acls_and_expires_logs(
        prod: EdgeMocks) -> None:
    def one(typ: str) -> dict[str, Any]:
        [resource] = edge_s3(prod, typ)
        assert resource.inputs["bucket"] == "hello-gin-edge-logs-id"  # the stack's bucket
        return resource.inputs

    assert one("bucketOwnershipControls:BucketOwnershipControls")["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}
    access = one("bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(access[k] is True for k in ("blockPublicAcls", "blockPublicPolicy",
                                            "ignorePublicAcls", "restrictPublicBuckets"))
    [rule] = one("bucketServerSideEncryptionConfiguration:"
                 "BucketServerSideEncryptionConfiguration")["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    [lifecycle] = one("bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"]
    assert lifecycle["status"] == "Enabled" and lifecycle["expiration"] == {"days": 90}


def test_the_log_bucket_policy_admits_only_the_delivery_service_over_tls(
        prod: EdgeMocks) -> None:
    [policy] = edge_s3(prod, "bucketPolicy:BucketPolicy")
    document = json.loads(policy.inputs["policy"])
    assert document == render.log_bucket_policy(f"arn:aws:s3:::{BUCKET}", ACCOUNT, "aws",
                                                "us-east-1")
    write, acl_check, deny = document["Statement"]
    assert write["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert (write["Action"], write["Resource"]) == (
        "s3:PutObject", f"arn:aws:s3:::{BUCKET}/AWSLogs/{ACCOUNT}/*")
    assert write["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    assert acl_check["Action"] == "s3:GetBucketAcl"
    assert (deny["Effect"], deny["Condition"]) == (
        "Deny", {"Bool": {"aws:SecureTransport": "false"}})
    findings = analyze_policy_string(policy.inputs["policy"], ignore_private_auditors=True)
    assert [f.issue for f in findings.findings] == []


def test_the_log_bucket_outlives_the_stack() -> None:
    install_mocks()
    kept: dict[str, bool] = {}

    def note(args: pulumi.ResourceTransformationArgs) -> None:
        if args.type_.startswith("aws:s3/") and args.name.startswith("hello-gin-edge-"):
            kept[args.name] = bool(args.opts.retain_on_delete)

    harness.run_program(PROD, stack="prod", transforms=(note,))
    assert sorted(kept) == [f"hello-gin-edge-logs{s}" for s in (
        "", "-encryption", "-lifecycle", "-ownership", "-policy", "-public-access")]
    assert all(kept.values())


def test_a_given_bucket_takes_the_logs_and_the_stack_makes_none() -> None:
    mocks = run(edge_config(accessLogs={"bucket": "acme-cdn-logs"}))
    assert edge_s3(mocks) == []
    [destination] = mocks.of_type(DESTINATION)
    assert destination.inputs["deliveryDestinationConfiguration"] == {
        "destinationResourceArn": "arn:aws:s3:::acme-cdn-logs"}
    assert mocks.outputs["accessLogsBucket"] == "acme-cdn-logs"


def test_access_logs_can_be_turned_off() -> None:
    mocks = run(edge_config(accessLogs={"enabled": False}))
    assert edge_s3(mocks) == [] and [
        r for r in mocks.resources if r.typ.startswith("aws:cloudwatch/logDelivery")] == []
    assert "accessLogsBucket" not in mocks.outputs


# --- WAF -----------------------------------------------------------------------------------

def test_the_web_acl_guards_the_distribution_from_us_east_1(prod: EdgeMocks) -> None:
    [acl] = prod.of_type(WEB_ACL)
    assert acl.name == "hello-gin-edge-waf"
    assert acl.inputs["scope"] == "CLOUDFRONT"
    assert acl.inputs["defaultAction"] == {"allow": {}}
    assert "::hello-gin-edge-aws::" in str(prod.providers[acl.name])
    distribution = prod.named("hello-gin-edge-cdn", DISTRIBUTION).inputs
    assert distribution["webAclId"] == \
        "arn:aws:wafv2:us-east-1:123456789012:global/webacl/hello-gin-edge-waf/a1b2c3"
    rate, common = json.loads(acl.inputs["ruleJson"])
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": 2000, "AggregateKeyType": "IP", "EvaluationWindowSec": 300}
    assert rate["Action"] == {"Block": {}}
    assert common["Statement"]["ManagedRuleGroupStatement"] == {
        "VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet"}
    assert common["OverrideAction"] == {"None": {}}
    assert rate["Priority"] < common["Priority"]


def test_waf_count_mode_and_count_only_rules() -> None:
    mocks = run(edge_config(waf={"enabled": True, "rateLimit": 500, "action": "count",
                                 "countOnlyRules": ["SizeRestrictions_BODY"]}))
    [acl] = mocks.of_type(WEB_ACL)
    rate, common = json.loads(acl.inputs["ruleJson"])
    assert (rate["Action"], rate["Statement"]["RateBasedStatement"]["Limit"]) == (
        {"Count": {}}, 500)
    assert common["OverrideAction"] == {"Count": {}}
    assert common["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"] == [
        {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]


def test_without_waf_there_is_no_web_acl() -> None:
    mocks = run(edge_config(waf={"enabled": False}))
    assert mocks.of_type(WEB_ACL) == []
    assert "webAclId" not in mocks.named("hello-gin-edge-cdn", DISTRIBUTION).inputs
    assert parse(prod_config(waf=None)).edge.waf.enabled is False  # type: ignore[union-attr]


@pytest.mark.parametrize(("edge", "expected"), [
    ({"cdn": False, "cacheablePaths": [], "waf": {"enabled": True}},
     "gin-deploy:edge.waf.enabled: only applies with edge.cdn: true"),
    ({"cdn": False, "cacheablePaths": [], "waf": {"enabled": False},
      "accessLogs": {"bucket": "acme-logs"}},
     "gin-deploy:edge.accessLogs.bucket: only applies with edge.cdn: true"),
    ({"accessLogs": {"bucket": "Acme_Logs"}},
     "gin-deploy:edge.accessLogs.bucket: must be an S3 bucket name"),
    ({"accessLogs": {"enabled": False, "bucket": "acme-logs"}},
     "gin-deploy:edge.accessLogs.bucket: is set but accessLogs.enabled is false"),
    ({"accessLogs": {"retentionDays": 0}}, "gin-deploy:edge.accessLogs.retentionDays: must be >="),
    ({"waf": {"enabled": True, "rateLimit": 5}}, "gin-deploy:edge.waf.rateLimit: must be >= 10"),
    ({"waf": {"enabled": True, "action": "allow"}}, "gin-deploy:edge.waf.action: must be one of"),
    ({"waf": {"enabled": True, "countOnlyRules": ["no such rule"]}},
     "gin-deploy:edge.waf.countOnlyRules: must be rule names"),
])
def test_invalid_logs_and_waf_config_fails_naming_the_key(edge: dict[str, Any],
                                                          expected: str) -> None:
    config = edge_config(**edge)
    with pytest.raises(ConfigError):
        parse(config)
    [problem] = problems_of(config)
    assert problem.startswith(expected), problem


# --- botocore: what each API call would carry ---------------------------------------------

def test_the_distribution_is_a_valid_cloudfront_call(prod: EdgeMocks) -> None:
    params = aws_api.cloudfront_distribution(prod.named("hello-gin-edge-cdn", DISTRIBUTION)
                                             .inputs)
    assert aws_api.errors("cloudfront", "CreateDistribution", params) == ""
    config = params["DistributionConfig"]
    assert config["WebACLId"].startswith("arn:aws:wafv2:us-east-1:")
    assert config["Origins"]["Quantity"] == 2 and config["CacheBehaviors"]["Quantity"] == 1


def test_every_route53_input_is_a_valid_route53_call(prod: EdgeMocks) -> None:
    records = prod.of_type("aws:route53/record:Record")
    assert len(records) >= 10
    for record in records:
        params = aws_api.route53_record(record.inputs)
        assert aws_api.errors("route53", "ChangeResourceRecordSets", params) == "", record.name
    checks = prod.of_type("aws:route53/healthCheck:HealthCheck")
    assert len(checks) == 3
    for check in checks:
        params = aws_api.route53_health_check(check.inputs)
        assert aws_api.errors("route53", "CreateHealthCheck", params) == "", check.name


def test_the_web_acl_is_a_valid_waf_call(prod: EdgeMocks) -> None:
    [acl] = prod.of_type(WEB_ACL)
    params = aws_api.wafv2_web_acl("hello-gin-edge-waf-0a1b2c3", acl.inputs)
    assert aws_api.errors("wafv2", "CreateWebACL", params) == ""
    counting = render.waf_rules("m", rate_limit=10, action="count",
                                count_only_rules=("SizeRestrictions_BODY", "NoUserAgent_HEADER"))
    assert aws_api.errors("wafv2", "CreateWebACL", {**params, "Rules": counting}) == ""


def test_the_log_delivery_is_a_valid_cloudwatch_logs_call(prod: EdgeMocks) -> None:
    [source], [destination], [delivery] = (prod.of_type(t) for t in (SOURCE, DESTINATION,
                                                                     DELIVERY))
    calls = [
        ("PutDeliverySource", aws_api.logs_delivery_source("s-0a1b2c3", source.inputs)),
        ("PutDeliveryDestination",
         aws_api.logs_delivery_destination("d-0a1b2c3", destination.inputs)),
        ("CreateDelivery", aws_api.logs_delivery(delivery.inputs)),
    ]
    for operation, params in calls:
        assert aws_api.errors("logs", operation, params) == "", operation


def test_the_api_checks_catch_a_broken_input(prod: EdgeMocks) -> None:
    """The checks can fail: botocore rejects what AWS would reject."""
    params = aws_api.cloudfront_distribution(prod.named("hello-gin-edge-cdn", DISTRIBUTION)
                                             .inputs)
    params["DistributionConfig"]["PriceClass"] = "PriceClass_7"
    params["DistributionConfig"]["DefaultCacheBehavior"]["AllowedMethods"]["Quantity"] = "7"
    report = aws_api.errors("cloudfront", "CreateDistribution", params)
    assert "PriceClass_7" in report and "Quantity" in report
    rules = render.waf_rules("m", rate_limit=2000)
    del rules[0]["VisibilityConfig"]
    assert "VisibilityConfig" in aws_api.errors("wafv2", "CreateWebACL", {
        "Name": "n", "Scope": "CLOUDFRONT", "DefaultAction": {"Allow": {}}, "Rules": rules,
        "VisibilityConfig": render.waf_visibility("m")})
    [acl] = prod.of_type(WEB_ACL)
    waf = aws_api.wafv2_web_acl("hello-gin-edge-waf-0a1b2c3", acl.inputs)
    assert "does not match" in aws_api.errors("wafv2", "CreateWebACL", {
        **waf, "Description": "hello-gin (prod)"})   # WAF's pattern has no parentheses
    with pytest.raises(AssertionError, match="no API mapping"):
        aws_api.route53_record({"zoneId": "Z", "name": "n", "type": "A", "ttl": 60,
                                "geolocationRoutingPolicies": []})
