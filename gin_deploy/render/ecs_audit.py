"""Pure renderers for what a security review asks of an ECS target: the ALB's access-log
bucket policy, the VPC flow logs' role, the WAF web ACL's rules.

Plain values in, API-shaped JSON out, checked in tests by parliament (the IAM
documents) and botocore's WAFv2 model (the rules), like gin_deploy/render/ecs.py.

* ELB writes access logs as the `logdelivery.elasticloadbalancing.amazonaws.com`
  service, which AWS now documents for every region (the per-region ELB account ids
  are the legacy way), into `<prefix>/AWSLogs/<account>/` only; the bucket refuses
  anything but TLS.
* Flow logs deliver to one log group, through a role only this account's flow logs
  in this region may assume.
* The web ACL: a per-IP rate limit first, then AWS's managed common rule set, whose
  8 KB request-body rule only counts (an API takes larger JSON bodies; the app and
  the load balancer bound them).
"""

from __future__ import annotations

import re
from typing import Any

from gin_deploy.render._jinja import check_int
from gin_deploy.render.ecs import IAM_VERSION

ELB_LOG_DELIVERY = "logdelivery.elasticloadbalancing.amazonaws.com"
FLOW_LOGS_SERVICE = "vpc-flow-logs.amazonaws.com"
COMMON_RULE_SET = "AWSManagedRulesCommonRuleSet"
# Rules of the common rule set that only count: APIs take JSON bodies above 8 KB.
COUNTED_COMMON_RULES = ("SizeRestrictions_BODY",)
RATE_WINDOW_S = 300
# WAF's bounds for a rate-based rule's limit (requests per window per IP).
RATE_LIMIT_MIN, RATE_LIMIT_MAX = 10, 2_000_000_000

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
_PARTITION = re.compile(r"aws(-[a-z]+)*")
_LOG_GROUP_ARN = re.compile(r"arn:aws[a-z-]*:logs:[a-z0-9-]+:\d{12}:log-group:[\w#./-]+")
_METRIC_NAME = re.compile(r"[\w#:.\-/]{1,128}")
_PREFIX = re.compile(r"[A-Za-z0-9._/-]*")


def alb_log_bucket_policy(*, bucket: str, prefix: str, account_id: str,
                          partition: str = "aws") -> dict[str, Any]:
    """The access-log bucket's policy: ELB may add objects under its prefix, nobody
    may use the bucket without TLS."""
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"bucket: {bucket!r} is not an S3 bucket name")
    if not _PREFIX.fullmatch(prefix) or "AWSLogs" in prefix or prefix.startswith("/"):
        raise ValueError(f"prefix: {prefix!r} must be a relative key prefix without 'AWSLogs'")
    if not _ACCOUNT.fullmatch(account_id) or not _PARTITION.fullmatch(partition):
        raise ValueError(f"bad account {account_id!r} or partition {partition!r}")
    arn = f"arn:{partition}:s3:::{bucket}"
    logs = f"{arn}/{prefix.strip('/')}/" if prefix.strip("/") else f"{arn}/"
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "ElbAccessLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": ELB_LOG_DELIVERY},
                "Action": "s3:PutObject",
                "Resource": f"{logs}AWSLogs/{account_id}/*",
            },
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def flow_logs_trust_policy(*, partition: str, account_id: str, region: str) -> dict[str, Any]:
    """Only this account's flow logs in this region may assume the delivery role."""
    if not _ACCOUNT.fullmatch(account_id) or not _REGION.fullmatch(region):
        raise ValueError(f"bad account {account_id!r} or region {region!r}")
    return {
        "Version": IAM_VERSION,
        "Statement": [{
            "Sid": "FlowLogsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": FLOW_LOGS_SERVICE},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {
                    "aws:SourceArn": f"arn:{partition}:ec2:{region}:{account_id}:vpc-flow-log/*"},
            },
        }],
    }


def flow_logs_role_policy(*, log_group_arn: str) -> dict[str, Any]:
    """Deliver into one log group; DescribeLogGroups (a list call the service makes)
    exists only on `*`."""
    log_group_arn = log_group_arn.removesuffix(":*")
    if not _LOG_GROUP_ARN.fullmatch(log_group_arn):
        raise ValueError(f"log_group_arn: {log_group_arn!r} is not a log group ARN")
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "DeliverToThisGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams"],
                "Resource": f"{log_group_arn}:*",
            },
            {
                "Sid": "WriteItsStreams",
                "Effect": "Allow",
                "Action": "logs:PutLogEvents",
                "Resource": f"{log_group_arn}:log-stream:*",
            },
            {
                "Sid": "FindTheGroup",
                "Effect": "Allow",
                "Action": "logs:DescribeLogGroups",
                "Resource": "*",
            },
        ],
    }


def visibility(metric_name: str) -> dict[str, Any]:
    if not _METRIC_NAME.fullmatch(metric_name):
        raise ValueError(f"metric_name: {metric_name!r} must be 1-128 of letters, digits, "
                         "and # : . - / _")
    return {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True,
            "MetricName": metric_name}


def web_acl_rules(*, rate_limit: int, metric_prefix: str) -> list[dict[str, Any]]:
    """The web ACL's rules (WAFv2 API shape): per-IP rate limit, then the common rule set."""
    check_int("rate_limit", rate_limit, minimum=RATE_LIMIT_MIN, maximum=RATE_LIMIT_MAX)
    return [
        {
            "Name": "rate-limit-per-ip",
            "Priority": 0,
            "Action": {"Block": {}},
            "Statement": {"RateBasedStatement": {
                "Limit": rate_limit, "AggregateKeyType": "IP",
                "EvaluationWindowSec": RATE_WINDOW_S}},
            "VisibilityConfig": visibility(f"{metric_prefix}-rate-limit"),
        },
        {
            "Name": "aws-common-rule-set",
            "Priority": 1,
            "OverrideAction": {"None": {}},
            "Statement": {"ManagedRuleGroupStatement": {
                "VendorName": "AWS", "Name": COMMON_RULE_SET,
                "RuleActionOverrides": [{"Name": name, "ActionToUse": {"Count": {}}}
                                        for name in COUNTED_COMMON_RULES]}},
            "VisibilityConfig": visibility(f"{metric_prefix}-common"),
        },
    ]
