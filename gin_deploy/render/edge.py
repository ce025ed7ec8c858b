"""AWS documents of the edge as pure functions: the WAF web ACL's rules and the
policy of the CloudFront log bucket.

Both are in the AWS API's own shape (what WAF's CreateWebACL takes as `Rules`, an
S3 bucket policy), so the tests check them with botocore's service model and
parliament, and the component passes them on unchanged (`rule_json`, `policy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COMMON_RULE_SET = "AWSManagedRulesCommonRuleSet"
# WAF counts a client's requests over this window for the rate rule.
RATE_WINDOW_S = 300
RATE_RULE, COMMON_RULE = "rate-limit", "common-rules"
# Who writes CloudFront's standard logs (v2) into S3, and where under the bucket.
LOG_DELIVERY_SERVICE = "delivery.logs.amazonaws.com"
WAF_ACTIONS = ("block", "count")


def _visibility(metric: str) -> dict[str, Any]:
    return {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True,
            "MetricName": metric}


def waf_rules(metric_prefix: str, *, rate_limit: int, action: str = "block",
              count_only_rules: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rate rule per client IP, then AWS's managed common rule set.

    `action` count turns both into counting only (their matches show in the metrics
    and sampled requests, nothing is blocked); `count_only_rules` does so for single
    rules of the managed set (an API taking large bodies: SizeRestrictions_BODY)."""
    if action not in WAF_ACTIONS:
        raise ValueError(f"action must be one of {' | '.join(WAF_ACTIONS)}, got {action!r}")
    count = action == "count"
    managed: dict[str, Any] = {"VendorName": "AWS", "Name": COMMON_RULE_SET}
    if count_only_rules:
        managed["RuleActionOverrides"] = [{"Name": rule, "ActionToUse": {"Count": {}}}
                                          for rule in dict.fromkeys(count_only_rules)]
    return [
        # First: a flood is cut before the heavier managed rules look at it.
        {"Name": RATE_RULE, "Priority": 10,
         "Statement": {"RateBasedStatement": {
             "Limit": rate_limit, "AggregateKeyType": "IP",
             "EvaluationWindowSec": RATE_WINDOW_S}},
         "Action": {"Count": {}} if count else {"Block": {}},
         "VisibilityConfig": _visibility(f"{metric_prefix}-{RATE_RULE}")},
        {"Name": COMMON_RULE, "Priority": 20,
         "Statement": {"ManagedRuleGroupStatement": managed},
         "OverrideAction": {"Count": {}} if count else {"None": {}},
         "VisibilityConfig": _visibility(f"{metric_prefix}-{COMMON_RULE}")},
    ]


def waf_visibility(metric_prefix: str) -> dict[str, Any]:
    """The web ACL's own metrics (requests no rule matched)."""
    return _visibility(metric_prefix)


def log_bucket_policy(bucket_arn: str, account_id: str, partition: str,
                      source_region: str) -> dict[str, Any]:
    """Lets CloudWatch Logs' delivery service write this account's CloudFront logs
    (under AWSLogs/<account>/, nothing else) and refuses every request without TLS."""
    delivery_condition = {
        "StringEquals": {"aws:SourceAccount": account_id},
        "ArnLike": {"aws:SourceArn": f"arn:{partition}:logs:{source_region}:{account_id}:*"},
    }
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AWSLogDeliveryWrite", "Effect": "Allow",
             "Principal": {"Service": LOG_DELIVERY_SERVICE},
             "Action": "s3:PutObject",
             "Resource": f"{bucket_arn}/AWSLogs/{account_id}/*",
             "Condition": {**delivery_condition, "StringEquals": {
                 **delivery_condition["StringEquals"],
                 "s3:x-amz-acl": "bucket-owner-full-control"}}},
            {"Sid": "AWSLogDeliveryAclCheck", "Effect": "Allow",
             "Principal": {"Service": LOG_DELIVERY_SERVICE},
             "Action": "s3:GetBucketAcl",
             "Resource": bucket_arn,
             "Condition": delivery_condition},
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
             "Action": "s3:*",
             "Resource": [bucket_arn, f"{bucket_arn}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    }
