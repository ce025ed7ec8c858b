"""An AWS WAF web ACL for CloudFront (scope CLOUDFRONT, in us-east-1), built by
EdgeRouting: a rate limit per client IP and AWS's managed common rule set (the
rules are gin_deploy.render.edge's, in the API's own shape).

CloudFront evaluates it before anything reaches an origin; the origin lock makes
sure nothing reaches an origin without passing it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from gin_deploy.render import edge as render

# WAF's own floor for a rate-based rule.
MIN_RATE_LIMIT = 10

ChildOptions = Callable[..., pulumi.ResourceOptions]


@dataclass(frozen=True)
class WafArgs:
    """The web ACL's rules."""

    # Requests per client IP in 5 minutes before the rate rule acts.
    rate_limit: int = 2000
    # block | count (count: rules only count, to tune them on real traffic).
    action: str = "block"
    # Rules of the managed common rule set that only count.
    count_only_rules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rate_limit < MIN_RATE_LIMIT:
            raise ValueError(f"rate_limit must be >= {MIN_RATE_LIMIT}, got {self.rate_limit}")
        if self.action not in render.WAF_ACTIONS:
            raise ValueError(f"action must be one of {' | '.join(render.WAF_ACTIONS)}, "
                             f"got {self.action!r}")


def build_waf(name: str, args: WafArgs, *, metric_prefix: str, description: str,
              child: ChildOptions) -> aws.wafv2.WebAcl:
    """`<name>-waf`: allows what no rule blocks."""
    visibility = render.waf_visibility(metric_prefix)
    return aws.wafv2.WebAcl(
        f"{name}-waf",
        scope="CLOUDFRONT",
        description=description,
        default_action=aws.wafv2.WebAclDefaultActionArgs(
            allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
        rule_json=json.dumps(render.waf_rules(
            metric_prefix, rate_limit=args.rate_limit, action=args.action,
            count_only_rules=args.count_only_rules), sort_keys=True),
        visibility_config=aws.wafv2.WebAclVisibilityConfigArgs(
            cloudwatch_metrics_enabled=visibility["CloudWatchMetricsEnabled"],
            metric_name=visibility["MetricName"],
            sampled_requests_enabled=visibility["SampledRequestsEnabled"]),
        opts=child())
