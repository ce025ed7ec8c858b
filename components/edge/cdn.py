"""CloudFront in front of the routed targets (built by EdgeRouting, its children).

`domain` is an alias to a distribution whose default behaviour (the API: never
cached, every method, every viewer header) goes to the routing name; opt-in
cacheable paths (GET/HEAD) go to an origin group that fails over from the routing
name to the target the policy would pick next. CloudFront adds the origin lock's
secret header to every origin request. The viewer certificate is a
DnsValidatedCertificate in us-east-1 (CloudFront takes certificates from there only).
Access logs go to S3 (logs.py) unless turned off; a WAF web ACL (waf.py) is optional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.certificate import (
    DnsValidatedCertificate,
    DnsValidatedCertificateArgs,
    ZoneValidationRecords,
)
from components.edge.logs import AccessLogs, AccessLogsArgs, build_access_logs
from components.edge.origins import CDN_REGION
from components.edge.waf import WafArgs, build_waf
from gin_deploy.render.headers import HstsPolicy

# AWS managed cache policy "CachingDisabled": the API is never cached.
CACHING_DISABLED_POLICY_ID = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
# Origin failover (cacheable paths): these answers, or no connection, try the secondary.
FAILOVER_STATUS_CODES = (500, 502, 503, 504)
ORIGIN_CONNECTION_ATTEMPTS = 2
ORIGIN_CONNECTION_TIMEOUT_S = 5
ORIGIN_READ_TIMEOUT_S = 30
ORIGIN_KEEPALIVE_TIMEOUT_S = 5
ROUTED_ORIGIN_ID = "routed"
FAILOVER_GROUP_ID = "failover"
# The same browser-facing headers the nginx and gateway origins send.
CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
# The client address as CloudFront saw it ("ip:port"), passed to origins.
VIEWER_ADDRESS_HEADER = "CloudFront-Viewer-Address"
PRICE_CLASSES = ("PriceClass_All", "PriceClass_200", "PriceClass_100")

ChildOptions = Callable[..., pulumi.ResourceOptions]


@dataclass(frozen=True)
class CdnArgs:
    """CloudFront in front of the routing name."""

    # The name CloudFront connects to; it carries the routing records.
    routed_name: str
    # The origin lock: CloudFront sends `verify_header: verify_value` to every origin.
    verify_header: str
    verify_value: pulumi.Input[str]
    hsts: HstsPolicy = field(default_factory=HstsPolicy)
    price_class: str = "PriceClass_All"
    # Path patterns safe to cache (GET/HEAD, the same answer for every user).
    cacheable_paths: tuple[str, ...] = ()
    # Seconds they are cached when the app sends no Cache-Control max-age.
    cache_ttl: int = 300
    # How long CloudFront waits for an origin's answer: the app's write timeout.
    origin_read_timeout: int = ORIGIN_READ_TIMEOUT_S
    # The stack's ACM validation records in the zone (one writer per record).
    validation_records: ZoneValidationRecords | None = None
    # Standard logging (v2) to S3; None: no access logs.
    access_logs: AccessLogsArgs | None = field(default_factory=AccessLogsArgs)
    # A WAF web ACL on the distribution; None: none.
    waf: WafArgs | None = None

    def __post_init__(self) -> None:
        if self.price_class not in PRICE_CLASSES:
            raise ValueError(f"price_class must be one of {' | '.join(PRICE_CLASSES)}, "
                             f"got {self.price_class!r}")


@dataclass(frozen=True)
class Site:
    """Where the distribution goes and whose it is (names, comments)."""

    name: str            # prefixes every resource
    domain: str
    zone_id: pulumi.Output[str]
    app: str
    project: str
    stack: str


@dataclass(frozen=True)
class Cdn:
    certificate_arn: pulumi.Output[str]
    distribution: aws.cloudfront.Distribution
    # `domain` -> the distribution, IPv4 and IPv6.
    records: list[aws.route53.Record]
    web_acl: aws.wafv2.WebAcl | None = None
    access_logs: AccessLogs | None = None


def build_cdn(site: Site, args: CdnArgs, *, secondary_name: str,
              routing_records: Sequence[aws.route53.Record], parent: pulumi.Resource,
              child: ChildOptions) -> Cdn:
    """The distribution, its policies and certificate, and the records for `domain`."""
    name = site.name
    certificate = DnsValidatedCertificate(
        f"{name}-cert",
        DnsValidatedCertificateArgs(domain=site.domain, zone_id=site.zone_id,
                                    shared_records=args.validation_records),
        opts=child(),
        # Its resources were EdgeRouting's own children before the component existed.
        moved_from=parent,
    )
    secret_header = [aws.cloudfront.DistributionOriginCustomHeaderArgs(
        name=args.verify_header, value=pulumi.Output.secret(args.verify_value))]

    def origin(origin_id: str, domain_name: str) -> aws.cloudfront.DistributionOriginArgs:
        return aws.cloudfront.DistributionOriginArgs(
            origin_id=origin_id,
            domain_name=domain_name,
            custom_headers=secret_header,
            connection_attempts=ORIGIN_CONNECTION_ATTEMPTS,
            connection_timeout=ORIGIN_CONNECTION_TIMEOUT_S,
            custom_origin_config=aws.cloudfront.DistributionOriginCustomOriginConfigArgs(
                http_port=80,
                https_port=443,
                origin_protocol_policy="https-only",
                origin_ssl_protocols=["TLSv1.2"],
                origin_read_timeout=args.origin_read_timeout,
                origin_keepalive_timeout=ORIGIN_KEEPALIVE_TIMEOUT_S,
                ip_address_type="ipv4",
            ),
        )

    # The API: every method, every viewer header (Host included, so origins see the
    # domain their certificates cover) plus the viewer's address; never cached.
    api_requests = aws.cloudfront.OriginRequestPolicy(
        f"{name}-api-requests",
        comment=f"{site.app} ({site.stack}): all viewer headers, cookies and query "
                "strings, and the viewer address",
        headers_config=aws.cloudfront.OriginRequestPolicyHeadersConfigArgs(
            header_behavior="allViewerAndWhitelistCloudFront",
            headers=aws.cloudfront.OriginRequestPolicyHeadersConfigHeadersArgs(
                items=[VIEWER_ADDRESS_HEADER])),
        cookies_config=aws.cloudfront.OriginRequestPolicyCookiesConfigArgs(
            cookie_behavior="all"),
        query_strings_config=aws.cloudfront.OriginRequestPolicyQueryStringsConfigArgs(
            query_string_behavior="all"),
        opts=child(),
    )
    headers = _security_headers(site, args.hsts, child)
    behavior: dict[str, Any] = {
        "viewer_protocol_policy": "redirect-to-https",
        "response_headers_policy_id": headers.id,
        "compress": True,
    }
    default = aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
        target_origin_id=ROUTED_ORIGIN_ID,
        allowed_methods=["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"],
        cached_methods=["GET", "HEAD"],
        cache_policy_id=CACHING_DISABLED_POLICY_ID,
        origin_request_policy_id=api_requests.id,
        **behavior,
    )
    origins = [origin(ROUTED_ORIGIN_ID, args.routed_name)]
    groups: list[aws.cloudfront.DistributionOriginGroupArgs] = []
    ordered: list[aws.cloudfront.DistributionOrderedCacheBehaviorArgs] = []
    if args.cacheable_paths:
        # Origin failover works for GET/HEAD/OPTIONS only, so it serves the
        # cacheable (read-only) paths: the routing name, then the next target.
        origins.append(origin(secondary_name, secondary_name))
        groups.append(aws.cloudfront.DistributionOriginGroupArgs(
            origin_id=FAILOVER_GROUP_ID,
            failover_criteria=aws.cloudfront.DistributionOriginGroupFailoverCriteriaArgs(
                status_codes=list(FAILOVER_STATUS_CODES)),
            members=[aws.cloudfront.DistributionOriginGroupMemberArgs(origin_id=o)
                     for o in (ROUTED_ORIGIN_ID, secondary_name)],
        ))
        cache, cacheable_requests = _cache_policies(site, args.cache_ttl, child)
        ordered = [aws.cloudfront.DistributionOrderedCacheBehaviorArgs(
            path_pattern=pattern,
            target_origin_id=FAILOVER_GROUP_ID,
            allowed_methods=["GET", "HEAD", "OPTIONS"],
            cached_methods=["GET", "HEAD"],
            cache_policy_id=cache.id,
            origin_request_policy_id=cacheable_requests.id,
            **behavior,
        ) for pattern in args.cacheable_paths]
    web_acl = None
    if args.waf is not None:
        web_acl = build_waf(name, args.waf, metric_prefix=f"{site.app}-{site.stack}-edge",
                            # WAF refuses parentheses in descriptions.
                            description=f"{site.app} {site.project}/{site.stack}: CloudFront",
                            child=child)
    distribution = aws.cloudfront.Distribution(
        f"{name}-cdn",
        enabled=True,
        comment=f"{site.app} ({site.project}/{site.stack}), gin-deploy",
        aliases=[site.domain],
        origins=origins,
        origin_groups=groups or None,
        default_cache_behavior=default,
        ordered_cache_behaviors=ordered or None,
        viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(
            acm_certificate_arn=certificate.certificate_arn,
            ssl_support_method="sni-only",
            minimum_protocol_version="TLSv1.2_2021",
        ),
        http_version="http2and3",
        is_ipv6_enabled=True,
        price_class=args.price_class,
        restrictions=aws.cloudfront.DistributionRestrictionsArgs(
            geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(
                restriction_type="none")),
        web_acl_id=web_acl.arn if web_acl is not None else None,
        opts=child(depends_on=list(routing_records)),
    )
    access_logs = None
    if args.access_logs is not None:
        opts = child()
        access_logs = build_access_logs(
            name, args.access_logs, distribution.arn, region=CDN_REGION,
            invoke=pulumi.InvokeOutputOptions(parent=opts.parent, provider=opts.provider),
            child=child)
    records = [aws.route53.Record(
        f"{name}-cdn-{kind.lower()}",
        zone_id=site.zone_id,
        name=site.domain,
        type=kind,
        aliases=[aws.route53.RecordAliasArgs(
            name=distribution.domain_name,
            zone_id=distribution.hosted_zone_id,
            evaluate_target_health=False)],
        opts=child(),
    ) for kind in ("A", "AAAA")]
    return Cdn(certificate_arn=certificate.certificate_arn, distribution=distribution,
               records=records, web_acl=web_acl, access_logs=access_logs)


def _security_headers(site: Site, hsts: HstsPolicy,
                      child: ChildOptions) -> aws.cloudfront.ResponseHeadersPolicy:
    security = aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs(
        strict_transport_security=aws.cloudfront.
        ResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurityArgs(
            access_control_max_age_sec=hsts.max_age,
            include_subdomains=hsts.include_subdomains,
            preload=hsts.preload,
            override=True),
        content_type_options=aws.cloudfront.
        ResponseHeadersPolicySecurityHeadersConfigContentTypeOptionsArgs(override=True),
        frame_options=aws.cloudfront.
        ResponseHeadersPolicySecurityHeadersConfigFrameOptionsArgs(
            frame_option="DENY", override=True),
        referrer_policy=aws.cloudfront.
        ResponseHeadersPolicySecurityHeadersConfigReferrerPolicyArgs(
            referrer_policy="no-referrer", override=True),
        content_security_policy=aws.cloudfront.
        ResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicyArgs(
            content_security_policy=CONTENT_SECURITY_POLICY, override=True),
    )
    return aws.cloudfront.ResponseHeadersPolicy(
        f"{site.name}-security-headers",
        comment=f"{site.app} ({site.stack}): HSTS and browser security headers",
        security_headers_config=security,
        opts=child(),
    )


def _cache_policies(site: Site, cache_ttl: int, child: ChildOptions,
                    ) -> tuple[aws.cloudfront.CachePolicy, aws.cloudfront.OriginRequestPolicy]:
    """Cacheable paths: keyed on host and query string only (no cookies, no auth)."""
    cache = aws.cloudfront.CachePolicy(
        f"{site.name}-cache",
        comment=f"{site.app} ({site.stack}): cacheable paths",
        min_ttl=0,
        default_ttl=cache_ttl,
        max_ttl=max(cache_ttl, 86400),
        parameters_in_cache_key_and_forwarded_to_origin=aws.cloudfront.
        CachePolicyParametersInCacheKeyAndForwardedToOriginArgs(
            cookies_config=aws.cloudfront.
            CachePolicyParametersInCacheKeyAndForwardedToOriginCookiesConfigArgs(
                cookie_behavior="none"),
            headers_config=aws.cloudfront.
            CachePolicyParametersInCacheKeyAndForwardedToOriginHeadersConfigArgs(
                header_behavior="whitelist",
                headers=aws.cloudfront.
                CachePolicyParametersInCacheKeyAndForwardedToOriginHeadersConfigHeadersArgs(
                    items=["Host"])),
            query_strings_config=aws.cloudfront.
            CachePolicyParametersInCacheKeyAndForwardedToOriginQueryStringsConfigArgs(
                query_string_behavior="all"),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        ),
        opts=child(),
    )
    requests = aws.cloudfront.OriginRequestPolicy(
        f"{site.name}-cacheable-requests",
        comment=f"{site.app} ({site.stack}): cacheable paths, the viewer address only",
        headers_config=aws.cloudfront.OriginRequestPolicyHeadersConfigArgs(
            header_behavior="whitelist",
            headers=aws.cloudfront.OriginRequestPolicyHeadersConfigHeadersArgs(
                items=[VIEWER_ADDRESS_HEADER])),
        cookies_config=aws.cloudfront.OriginRequestPolicyCookiesConfigArgs(
            cookie_behavior="none"),
        query_strings_config=aws.cloudfront.OriginRequestPolicyQueryStringsConfigArgs(
            query_string_behavior="none"),
        opts=child(),
    )
    return cache, requests
