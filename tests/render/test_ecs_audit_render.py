"""What a security review asks of an ECS target, rendered: the access-log bucket policy
and the flow logs' role (linted by parliament), the WAF rules (botocore's WAFv2 model)."""

from __future__ import annotations

import json
from typing import Any

import botocore.loaders
import botocore.model
import botocore.validate
import pytest
from parliament import analyze_policy_string

from gin_deploy.render import ecs_audit

ACCOUNT = "123456789012"
LOG_GROUP_ARN = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:aws-use1-flow-logs"

_WAF = botocore.model.ServiceModel(
    botocore.loaders.Loader().load_service_model("wafv2", "service-2"), "wafv2")


def findings(document: dict[str, Any], community: bool = False) -> list[str]:
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=community)
    return [f"{f.issue}: {f.detail}" for f in policy.findings]


def create_web_acl(rules: list[dict[str, Any]]) -> botocore.validate.ValidationErrors:
    params = {"Name": "hello-gin", "Scope": "REGIONAL", "DefaultAction": {"Allow": {}},
              "VisibilityConfig": ecs_audit.visibility("hello-gin"), "Rules": rules}
    return botocore.validate.ParamValidator().validate(
        params, _WAF.operation_model("CreateWebACL").input_shape)


def test_bucket_policy_lets_elb_write_under_its_prefix_only_and_requires_tls() -> None:
    document = ecs_audit.alb_log_bucket_policy(bucket="acme-alb-logs", prefix="app/prod/aws",
                                               account_id=ACCOUNT)
    assert findings(document) == [] and findings(document, community=True) == []
    deliver, tls = document["Statement"]
    assert deliver["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert (deliver["Action"], deliver["Resource"]) == (
        "s3:PutObject", f"arn:aws:s3:::acme-alb-logs/app/prod/aws/AWSLogs/{ACCOUNT}/*")
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*"
    assert tls["Resource"] == ["arn:aws:s3:::acme-alb-logs", "arn:aws:s3:::acme-alb-logs/*"]


def test_flow_logs_role_writes_one_group_and_trusts_only_this_accounts_flow_logs() -> None:
    document = ecs_audit.flow_logs_role_policy(log_group_arn=LOG_GROUP_ARN + ":*")
    assert findings(document) == [] and findings(document, community=True) == []
    assert [s["Resource"] for s in document["Statement"]] == [
        f"{LOG_GROUP_ARN}:*", f"{LOG_GROUP_ARN}:log-stream:*", "*"]
    # Only the list call sits on "*" (it has no resource-level permissions).
    assert [s["Action"] for s in document["Statement"] if s["Resource"] == "*"] == [
        "logs:DescribeLogGroups"]
    trust = ecs_audit.flow_logs_trust_policy(partition="aws", account_id=ACCOUNT,
                                             region="us-east-1")
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc-flow-log/*"}


def test_web_acl_rules_are_a_valid_create_web_acl_input() -> None:
    rules = ecs_audit.web_acl_rules(rate_limit=2000, metric_prefix="hello-gin-prod-aws")
    report = create_web_acl(rules)
    assert not report.has_errors(), report.generate_report()
    assert [(r["Name"], r["Priority"]) for r in rules] == [
        ("rate-limit-per-ip", 0), ("aws-common-rule-set", 1)]


def test_botocore_would_catch_broken_rules() -> None:
    rules = ecs_audit.web_acl_rules(rate_limit=2000, metric_prefix="m")
    rules[0]["Statement"]["RateBasedStatement"]["Limit"] = "2000"
    rules[1]["OverrideAction"] = {"Nothing": {}}
    text = create_web_acl(rules).generate_report()
    assert "Limit" in text and "Nothing" in text


@pytest.mark.parametrize(("call", "message"), [
    (lambda: ecs_audit.alb_log_bucket_policy(bucket="Bad_Bucket", prefix="p",
                                             account_id=ACCOUNT), "not an S3 bucket"),
    (lambda: ecs_audit.alb_log_bucket_policy(bucket="logs", prefix="x/AWSLogs",
                                             account_id=ACCOUNT), "without 'AWSLogs'"),
    (lambda: ecs_audit.flow_logs_role_policy(log_group_arn="*"), "not a log group ARN"),
    (lambda: ecs_audit.flow_logs_trust_policy(partition="aws", account_id="me",
                                              region="us-east-1"), "bad account"),
    (lambda: ecs_audit.web_acl_rules(rate_limit=5, metric_prefix="m"), "rate_limit"),
    (lambda: ecs_audit.web_acl_rules(rate_limit=100, metric_prefix="has space"),
     "metric_name"),
])
def test_bad_inputs_are_refused(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
