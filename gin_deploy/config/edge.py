"""`gin-deploy:edge`: Route 53 routing across the targets, CloudFront in front.

Also the names a target has at the edge, which the rules check are valid DNS names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gin_deploy.config.checks import abs_http_path, dns_name
from gin_deploy.config.schema import NAMESPACE, ParseContext, Problems, spec_field

if TYPE_CHECKING:
    from gin_deploy.config.app import AppConfig
    from gin_deploy.config.stack import StackConfig
    from gin_deploy.config.target import TargetBase

ORIGIN_LABEL = "origin"


def routed_origin_name(domain: str) -> str:
    """With a CDN: the name CloudFront connects to, carrying the routing records."""
    return f"{ORIGIN_LABEL}.{domain}"


def target_origin_name(target: str, domain: str) -> str:
    """One target's own name: health checks and CloudFront failover reach it directly."""
    return f"{target}.{ORIGIN_LABEL}.{domain}"


# CloudFront path patterns: '/', then letters, digits and _-.*$/~"'@:+ (? and * wildcards).
_PATH_PATTERN = re.compile(r"^/[A-Za-z0-9_\-.*$/~\"'@:+?&=]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
# Headers CloudFront does not let an origin custom header set (or that mean something else).
_RESERVED_HEADER_PREFIXES = ("x-amz-", "x-edge-", "cloudfront-", "x-forwarded-")
_RESERVED_HEADERS = frozenset({
    "accept-encoding", "authorization", "cache-control", "connection", "content-length",
    "cookie", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
    "if-unmodified-since", "max-forwards", "pragma", "proxy-authorization", "proxy-connection",
    "range", "request-range", "te", "trailer", "transfer-encoding", "upgrade", "via",
    "x-real-ip", "x-request-id"})
CLOUDFRONT_MAX_CACHE_BEHAVIORS = 25
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Rules of AWS's managed common rule set (AWSManagedRulesCommonRuleSet) are named so.
_WAF_RULE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _path_patterns(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not _PATH_PATTERN.match(v) or len(v) > 255]
    if bad:
        return f"must be CloudFront path patterns starting with '/' (e.g. /static/*), got {bad}"
    if len(set(value)) != len(value):
        return "must not repeat a pattern"
    if len(value) > CLOUDFRONT_MAX_CACHE_BEHAVIORS:
        return f"at most {CLOUDFRONT_MAX_CACHE_BEHAVIORS} patterns (CloudFront cache behaviors)"
    return None


def _origin_header(value: str) -> str | None:
    lower = value.lower()
    if not _HEADER_NAME.match(value) or len(value) > 64:
        return f"must be a header name of letters, digits and single dashes, got {value!r}"
    if lower in _RESERVED_HEADERS or lower.startswith(_RESERVED_HEADER_PREFIXES):
        return f"{value!r} is a header CloudFront or the proxies set themselves; pick another name"
    return None


def _bucket(value: str) -> str | None:
    if _BUCKET.match(value) and ".." not in value:
        return None
    return f"must be an S3 bucket name (3-63 chars of a-z, 0-9, '.', '-'), got {value!r}"


def _waf_rule_names(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not _WAF_RULE_NAME.match(v)]
    if bad:
        return f"must be rule names of the common rule set (e.g. SizeRestrictions_BODY), got {bad}"
    return None


@dataclass(frozen=True)
class AccessLogsConfig:
    enabled: bool = spec_field("enabled", "CloudFront access logs (standard logging v2) to S3.",
                               True)
    bucket: str | None = spec_field(
        "bucket", "An existing S3 bucket for them (its policy must let "
        "delivery.logs.amazonaws.com write); default: a bucket of the stack (encrypted, "
        "private, ACLs off, TLS only) that outlives it.", None, check=_bucket)
    retention_days: int = spec_field("retentionDays", "Days the stack's bucket keeps the "
                                     "logs.", 90, min=1, max=3650)


@dataclass(frozen=True)
class WafConfig:
    enabled: bool = spec_field("enabled", "A WAF web ACL on CloudFront: AWS's managed common "
                               "rule set and a rate limit per client IP.", False)
    rate_limit: int = spec_field("rateLimit", "Requests per client IP in 5 minutes before the "
                                 "rate rule acts.", 2000, min=10, max=2000000000)
    action: str = spec_field("action", "`count` only counts matches (to tune the rules on real "
                             "traffic before they block).", "block", choices=("block", "count"))
    count_only_rules: tuple[str, ...] = spec_field(
        "countOnlyRules", "Rules of the common rule set that only count, e.g. "
        "SizeRestrictions_BODY for an API taking bodies over 8 KB.", (),
        check=_waf_rule_names)


@dataclass(frozen=True)
class HealthCheckConfig:
    # Resolved by the stack parse (it needs app.readyPath).
    path: str = spec_field("path", "Path each HTTPS health check requests (default "
                           "app.readyPath); behind the CDN the one path the origin "
                           "lock lets through without the secret header.", None,
                           check=abs_http_path)
    interval: int = spec_field("interval", "Route 53 health check interval, seconds.", 30,
                               choices=(10, 30))
    failure_threshold: int = spec_field("failureThreshold", "Failures before unhealthy.", 3,
                                        min=1, max=10)


@dataclass(frozen=True)
class EdgeConfig:
    routing: str = spec_field("routing", "How Route 53 spreads users over targets: by "
                              "`weight`, by `region` (latency) or primary/secondary in "
                              "target order (failover).",
                              "weighted", choices=("weighted", "latency", "failover"))
    zone: str | None = spec_field("zone", "Route 53 hosted zone that holds the domain "
                                  "(required).", None, check=dns_name)
    cdn: bool = spec_field("cdn", "Put CloudFront in front of the targets; their origins then "
                           "answer only CloudFront (403 otherwise).", False)
    health_check: HealthCheckConfig = spec_field("healthCheck", "Per-target health checks.",
                                                 default_factory=HealthCheckConfig)
    price_class: str = spec_field("priceClass", "CloudFront price class (which edge locations "
                                  "serve users).", "PriceClass_All",
                                  choices=("PriceClass_All", "PriceClass_200", "PriceClass_100"))
    cacheable_paths: tuple[str, ...] = spec_field(
        "cacheablePaths", "CloudFront path patterns safe to cache (GET/HEAD, the same response "
        "for every user), e.g. /static/*; nothing else is ever cached.", (),
        check=_path_patterns)
    cache_ttl: int = spec_field("cacheTtl", "Seconds cacheablePaths responses are cached when "
                                "the app sends no Cache-Control max-age.", 300,
                                min=1, max=31536000)
    origin_verify_header: str = spec_field(
        "originVerifyHeader", "Header carrying the random secret CloudFront adds to every "
        "origin request (the origin lock).", "X-Origin-Verify", check=_origin_header)
    access_logs: AccessLogsConfig = spec_field("accessLogs", "CloudFront access logs.",
                                               default_factory=AccessLogsConfig)
    waf: WafConfig = spec_field("waf", "AWS WAF in front of CloudFront.",
                                default_factory=WafConfig)

    def resolve(self, app: AppConfig) -> EdgeConfig:
        """With the defaults that depend on other sections filled in."""
        if self.health_check.path is not None:
            return self
        return replace(self, health_check=replace(self.health_check, path=app.ready_path))

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        if self.cacheable_paths and not self.cdn:
            problems.add(f"{path}.cacheablePaths", "only applies with edge.cdn: true")
        if self.access_logs.bucket and not self.cdn:
            problems.add(f"{path}.accessLogs.bucket", "only applies with edge.cdn: true")
        if self.waf.enabled and not self.cdn:
            problems.add(f"{path}.waf.enabled", "only applies with edge.cdn: true (the web "
                         "ACL sits on the CloudFront distribution)")
        if self.access_logs.bucket and not self.access_logs.enabled:
            problems.add(f"{path}.accessLogs.bucket", "is set but accessLogs.enabled is false")

    def check_stack(self, cfg: StackConfig, indexed: Sequence[tuple[int, TargetBase]],
                    problems: Problems) -> None:
        """What routing across the targets (index in the config list, target) needs."""
        p, domain = f"{NAMESPACE}:", cfg.domain
        if self.zone is None:
            needs = "the Route 53 records and health checks"
            if self.cdn:
                needs += ", CloudFront's alias and its certificate's DNS validation"
            problems.add(f"{p}edge.zone", f"is required for edge routing: the Route 53 hosted "
                         f"zone holding {domain!r} ({needs})")
        elif domain != self.zone and not domain.endswith("." + self.zone):
            problems.add(f"{p}domain", f"{domain!r} is not inside edge.zone {self.zone!r}")
        elif domain == self.zone and not self.cdn:
            problems.add(f"{p}domain", f"{domain!r} is the zone apex; without cdn the routing "
                         "records for it are CNAMEs to each target's own name, which the apex "
                         "cannot hold: use a subdomain or set edge.cdn: true")
        if "." not in domain:
            problems.add(f"{p}domain", f"edge routing needs a public DNS name, got {domain!r}")
        for i, target in indexed:
            target.check_edge(self, domain, f"{p}targets[{i}]", problems)
        rotation = [t for t in cfg.targets if t.weight > 0]
        if self.routing == "failover":
            if len(cfg.targets) < 2:
                problems.add(f"{p}edge.routing", "failover needs at least two targets "
                             "(primary, secondary)")
            elif len(rotation) != 2:
                problems.add(f"{p}edge.routing", f"failover pairs exactly two targets in "
                             f"rotation (primary, secondary, in target order), got "
                             f"{len(rotation)} with weight > 0; set weight: 0 on the others to "
                             "keep them deployed and health-checked as standbys")

