"""EdgeRouting: the stack's domain in front of all its targets (Route 53, CloudFront).

Names (see docs/edge.md for the why):

* `<target>.origin.<domain>`: each target's own name - an alias to its load balancer
  (ecs), or an A / AAAA / CNAME record for its address (kubernetes gateway, host).
  Its HTTPS health check asks it for the health check path.
* the routing name - `domain` itself, or `origin.<domain>` behind the CDN: one CNAME
  per target to its own name, with the target's health check and a set identifier
  (the target's name), by `edge.routing`: weighted (each target's weight; 0 keeps it
  deployed and checked, out of rotation), latency (by region) or failover (the two
  targets in rotation: primary, secondary). An unhealthy target drops out by itself.
* with `edge.cdn`: `domain` is an alias to a CloudFront distribution whose default
  behaviour (the API: never cached, every method) goes to the routing name; opt-in
  cacheable paths (GET/HEAD) go to an origin group that fails over from the routing
  name to the target the policy would pick next. CloudFront adds a random secret
  header to every origin request and the targets answer 403 without it (the origin
  lock, built into each target kind; the health check path stays open).

The component is created before the targets (they need its origin secret, their
edge names and CloudFront's address ranges: `origin_for`) and routes them once they
exist (`route`); every resource is its child, in us-east-1 (Route 53 and CloudFront
are global; CloudFront takes certificates from us-east-1 only).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.endpoint import EdgeOrigin, TargetEndpoint
from gin_deploy.config import (
    AppConfig,
    EdgeConfig,
    HstsConfig,
    routed_origin_name,
    target_origin_name,
)

CDN_REGION = "us-east-1"
# CloudFront's origin-facing servers (IPv4; origins are reached over IPv4).
CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"
# AWS managed cache policy "CachingDisabled": the API is never cached.
CACHING_DISABLED_POLICY_ID = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
# The origin secret: letters and digits only (a literal in nginx, an ALB header
# condition without wildcards, a Gateway API header match without ':').
ORIGIN_SECRET_LENGTH = 48
RECORD_TTL_S = 60
HEALTH_CHECK_PORT = 443
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


@dataclass(frozen=True)
class EdgeRoutingArgs:
    edge: EdgeConfig
    app: AppConfig
    domain: str
    hsts: HstsConfig
    project: str
    stack: str
    # An existing us-east-1 provider (e.g. with assume_role); default: a new one.
    provider: aws.Provider | None = None


def record_type(address: str) -> str:
    """A for an IPv4 address, AAAA for IPv6, CNAME for a host name."""
    if not address:
        raise ValueError("the target has no address yet (a Kubernetes gateway without a "
                         "load balancer address?)")
    try:
        return "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
    except ValueError:
        return "CNAME"


def by_priority(edge: EdgeConfig, endpoints: Sequence[TargetEndpoint]) -> list[TargetEndpoint]:
    """Targets in rotation (weight > 0), the one the routing policy prefers first:
    weighted by weight (ties in target order), failover and latency in target order."""
    rotation = [e for e in endpoints if e.weight > 0]
    if edge.routing == "weighted":
        return sorted(rotation, key=lambda e: -e.weight)
    return rotation


def routing_policy(edge: EdgeConfig, endpoint: TargetEndpoint,
                   rotation: Sequence[TargetEndpoint]) -> dict[str, Any] | None:
    """The routing record's policy arguments for one target; None: no routing record
    (out of rotation under latency or failover routing)."""
    if edge.routing == "weighted":
        return {"weighted_routing_policies": [
            aws.route53.RecordWeightedRoutingPolicyArgs(weight=endpoint.weight)]}
    names = [e.name for e in rotation]
    if endpoint.name not in names:
        return None
    if edge.routing == "latency":
        assert endpoint.region is not None, "config requires regions for latency routing"
        return {"latency_routing_policies": [
            aws.route53.RecordLatencyRoutingPolicyArgs(region=endpoint.region)]}
    role = "PRIMARY" if names.index(endpoint.name) == 0 else "SECONDARY"
    return {"failover_routing_policies": [
        aws.route53.RecordFailoverRoutingPolicyArgs(type=role)]}


class EdgeRouting(pulumi.ComponentResource):
    """Route 53 health checks and records across all targets; CloudFront in front."""

    provider: aws.Provider
    zone_id: pulumi.Output[str]
    origin_secret: random.RandomPassword | None
    cdn_cidrs: pulumi.Output[list[str]] | None
    health_checks: dict[str, aws.route53.HealthCheck]
    target_records: dict[str, aws.route53.Record]
    routing_records: dict[str, aws.route53.Record]
    certificate_arn: pulumi.Output[str] | None
    distribution: aws.cloudfront.Distribution | None
    url: pulumi.Output[str]
    health_check_ids: pulumi.Output[dict[str, str]]
    distribution_id: pulumi.Output[str] | None
    distribution_domain: pulumi.Output[str] | None

    def __init__(self, name: str, args: EdgeRoutingArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gin-deploy:edge:EdgeRouting", name, None, opts)
        # Plain inputs were validated with the stack config (gin_deploy/config.py).
        edge = args.edge
        assert edge.zone is not None, "config requires edge.zone"
        self._name, self._args = name, args
        self.provider = args.provider or aws.Provider(
            f"{name}-aws",
            region=CDN_REGION,
            default_tags=aws.ProviderDefaultTagsArgs(tags={
                "app": args.app.name, "stack": args.stack, "managed-by": "gin-deploy"}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._invoke = pulumi.InvokeOutputOptions(parent=self, provider=self.provider)
        self.zone_id = aws.route53.get_zone_output(
            name=edge.zone, private_zone=False, opts=self._invoke).zone_id
        self.origin_secret = None
        self.cdn_cidrs = None
        if edge.cdn:
            # Only CloudFront and the targets know it; rotate with `pulumi up --replace`.
            self.origin_secret = random.RandomPassword(
                f"{name}-origin-verify",
                length=ORIGIN_SECRET_LENGTH,
                special=False,
                min_lower=1, min_upper=1, min_numeric=1,
                opts=pulumi.ResourceOptions(parent=self),
            )
            prefix_list = aws.ec2.get_managed_prefix_list_output(
                name=CLOUDFRONT_ORIGIN_FACING, opts=self._invoke)
            self.cdn_cidrs = prefix_list.entries.apply(
                lambda entries: sorted({e.cidr for e in entries}))
        self.health_checks, self.target_records, self.routing_records = {}, {}, {}
        self._cdn_records: list[aws.route53.Record] = []
        self.certificate_arn = None
        self.distribution = None
        self.distribution_id = None
        self.distribution_domain = None
        self.url = pulumi.Output.from_input(f"https://{args.domain}")
        self.health_check_ids = pulumi.Output.from_input({})

    # --- before the targets ----------------------------------------------------------

    def origin_for(self, target: str) -> EdgeOrigin:
        """What target `target` must do for edge routing (passed to its component)."""
        a = self._args
        names = (target_origin_name(target, a.domain),)
        if self.origin_secret is None:
            return EdgeOrigin(names=names)
        return EdgeOrigin(
            names=names,
            verify_header=a.edge.origin_verify_header,
            verify_value=self.origin_secret.result,
            open_path=a.edge.health_check.path,
            cdn_cidrs=self.cdn_cidrs,
        )

    # --- once the targets exist ------------------------------------------------------

    def route(self, endpoints: Sequence[TargetEndpoint]) -> None:
        """Health checks and records for every target; CloudFront with `edge.cdn`."""
        a, edge = self._args, self._args.edge
        rotation = by_priority(edge, endpoints)
        routing_name = routed_origin_name(a.domain) if edge.cdn else a.domain
        for endpoint in endpoints:
            own = self._target_record(endpoint)
            check = self._health_check(endpoint, own)
            policy = routing_policy(edge, endpoint, rotation)
            if policy is not None:
                self.routing_records[endpoint.name] = aws.route53.Record(
                    f"{self._name}-{endpoint.name}-route",
                    zone_id=self.zone_id,
                    name=routing_name,
                    type="CNAME",
                    ttl=RECORD_TTL_S,
                    records=[target_origin_name(endpoint.name, a.domain)],
                    set_identifier=endpoint.name,
                    health_check_id=check.id,
                    **policy,
                    opts=self._child(depends_on=[own]),
                )
        ready: list[pulumi.Input[Any]] = [r.fqdn for r in self.routing_records.values()]
        if edge.cdn:
            secondary = rotation[1] if len(rotation) > 1 else rotation[0]
            self._cdn(routing_name, target_origin_name(secondary.name, a.domain))
            assert self.distribution is not None
            self.distribution_id = self.distribution.id
            self.distribution_domain = self.distribution.domain_name
            ready += [r.fqdn for r in self._cdn_records]
        url = f"https://{a.domain}"
        # Resolves once the names point where they should.
        self.url = pulumi.Output.all(*ready).apply(lambda _: url)
        names = list(self.health_checks)
        self.health_check_ids = pulumi.Output.all(
            *(c.id for c in self.health_checks.values())).apply(
            lambda ids: dict(zip(names, ids, strict=True)))
        outputs: dict[str, Any] = {"url": self.url, "healthChecks": self.health_check_ids}
        if self.distribution is not None:
            outputs.update(distributionId=self.distribution_id,
                           distributionDomain=self.distribution_domain)
        self.register_outputs(outputs)

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider, **kwargs)

    def _target_record(self, endpoint: TargetEndpoint) -> aws.route53.Record:
        """`<target>.origin.<domain>`: the target's own name, once the target is deployed."""
        name = target_origin_name(endpoint.name, self._args.domain)
        # The address, but only after the target's url resolves (it is deployed).
        address = pulumi.Output.all(endpoint.url, endpoint.origin_host).apply(lambda v: v[1])
        if endpoint.alias_zone_id is not None:
            record = aws.route53.Record(
                f"{self._name}-{endpoint.name}-origin",
                zone_id=self.zone_id,
                name=name,
                type="A",
                aliases=[aws.route53.RecordAliasArgs(
                    name=address, zone_id=endpoint.alias_zone_id,
                    evaluate_target_health=True)],
                opts=self._child(),
            )
        else:
            record = aws.route53.Record(
                f"{self._name}-{endpoint.name}-origin",
                zone_id=self.zone_id,
                name=name,
                type=address.apply(record_type),
                ttl=RECORD_TTL_S,
                records=[address],
                opts=self._child(),
            )
        self.target_records[endpoint.name] = record
        return record

    def _health_check(self, endpoint: TargetEndpoint,
                      own: aws.route53.Record) -> aws.route53.HealthCheck:
        a, hc = self._args, self._args.edge.health_check
        check = aws.route53.HealthCheck(
            f"{self._name}-{endpoint.name}-health",
            type="HTTPS",
            fqdn=target_origin_name(endpoint.name, a.domain),
            port=HEALTH_CHECK_PORT,
            resource_path=a.edge.health_check.path,
            enable_sni=True,
            request_interval=hc.interval,
            failure_threshold=hc.failure_threshold,
            tags={"Name": f"{a.app.name}-{a.stack}-{endpoint.name}"},
            opts=self._child(depends_on=[own]),
        )
        self.health_checks[endpoint.name] = check
        return check

    # --- CloudFront ------------------------------------------------------------------

    def _cdn(self, routing_name: str, secondary_name: str) -> None:
        a, edge = self._args, self._args.edge
        assert self.origin_secret is not None
        self.certificate_arn = self._certificate()
        secret_header = [aws.cloudfront.DistributionOriginCustomHeaderArgs(
            name=edge.origin_verify_header,
            value=pulumi.Output.secret(self.origin_secret.result))]

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
                    origin_read_timeout=ORIGIN_READ_TIMEOUT_S,
                    origin_keepalive_timeout=ORIGIN_KEEPALIVE_TIMEOUT_S,
                    ip_address_type="ipv4",
                ),
            )

        # The API: every method, every viewer header (Host included, so origins see the
        # domain their certificates cover) plus the viewer's address; never cached.
        api_requests = aws.cloudfront.OriginRequestPolicy(
            f"{self._name}-api-requests",
            comment=f"{a.app.name} ({a.stack}): all viewer headers, cookies and query "
                    "strings, and the viewer address",
            headers_config=aws.cloudfront.OriginRequestPolicyHeadersConfigArgs(
                header_behavior="allViewerAndWhitelistCloudFront",
                headers=aws.cloudfront.OriginRequestPolicyHeadersConfigHeadersArgs(
                    items=[VIEWER_ADDRESS_HEADER])),
            cookies_config=aws.cloudfront.OriginRequestPolicyCookiesConfigArgs(
                cookie_behavior="all"),
            query_strings_config=aws.cloudfront.OriginRequestPolicyQueryStringsConfigArgs(
                query_string_behavior="all"),
            opts=self._child(),
        )
        headers = self._security_headers()
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
        origins = [origin(ROUTED_ORIGIN_ID, routing_name)]
        groups: list[aws.cloudfront.DistributionOriginGroupArgs] = []
        ordered: list[aws.cloudfront.DistributionOrderedCacheBehaviorArgs] = []
        if edge.cacheable_paths:
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
            cache, cacheable_requests = self._cache_policies()
            ordered = [aws.cloudfront.DistributionOrderedCacheBehaviorArgs(
                path_pattern=pattern,
                target_origin_id=FAILOVER_GROUP_ID,
                allowed_methods=["GET", "HEAD", "OPTIONS"],
                cached_methods=["GET", "HEAD"],
                cache_policy_id=cache.id,
                origin_request_policy_id=cacheable_requests.id,
                **behavior,
            ) for pattern in edge.cacheable_paths]
        self.distribution = aws.cloudfront.Distribution(
            f"{self._name}-cdn",
            enabled=True,
            comment=f"{a.app.name} ({a.project}/{a.stack}), gin-deploy",
            aliases=[a.domain],
            origins=origins,
            origin_groups=groups or None,
            default_cache_behavior=default,
            ordered_cache_behaviors=ordered or None,
            viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(
                acm_certificate_arn=self.certificate_arn,
                ssl_support_method="sni-only",
                minimum_protocol_version="TLSv1.2_2021",
            ),
            http_version="http2and3",
            is_ipv6_enabled=True,
            price_class=edge.price_class,
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(
                    restriction_type="none")),
            opts=self._child(depends_on=list(self.routing_records.values())),
        )
        # `domain` (IPv4 and IPv6) -> CloudFront.
        self._cdn_records = [aws.route53.Record(
            f"{self._name}-cdn-{kind.lower()}",
            zone_id=self.zone_id,
            name=a.domain,
            type=kind,
            aliases=[aws.route53.RecordAliasArgs(
                name=self.distribution.domain_name,
                zone_id=self.distribution.hosted_zone_id,
                evaluate_target_health=False)],
            opts=self._child(),
        ) for kind in ("A", "AAAA")]

    def _certificate(self) -> pulumi.Output[str]:
        """The viewer certificate for `domain`: ACM in us-east-1, validated in Route 53."""
        a = self._args
        cert = aws.acm.Certificate(
            f"{self._name}-cert",
            domain_name=a.domain,
            validation_method="DNS",
            key_algorithm="RSA_2048",
            opts=self._child(),
        )
        option = cert.domain_validation_options.apply(
            lambda options: next(o for o in options if o.domain_name == a.domain))
        record = aws.route53.Record(
            f"{self._name}-cert-validation-0",
            zone_id=self.zone_id,
            name=option.apply(lambda o: str(o.resource_record_name)),
            type=option.apply(lambda o: str(o.resource_record_type)),
            records=[option.apply(lambda o: str(o.resource_record_value))],
            ttl=300,
            # An ECS target's certificate for the same name uses the same record.
            allow_overwrite=True,
            opts=self._child(),
        )
        validation = aws.acm.CertificateValidation(
            f"{self._name}-cert-validation",
            certificate_arn=cert.arn,
            validation_record_fqdns=[record.fqdn],
            opts=self._child(),
        )
        return validation.certificate_arn

    def _security_headers(self) -> aws.cloudfront.ResponseHeadersPolicy:
        a = self._args
        security = aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs(
            strict_transport_security=aws.cloudfront.
            ResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurityArgs(
                access_control_max_age_sec=a.hsts.max_age,
                include_subdomains=a.hsts.include_subdomains,
                preload=a.hsts.preload,
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
            f"{self._name}-security-headers",
            comment=f"{a.app.name} ({a.stack}): HSTS and browser security headers",
            security_headers_config=security,
            opts=self._child(),
        )

    def _cache_policies(self) -> tuple[aws.cloudfront.CachePolicy,
                                       aws.cloudfront.OriginRequestPolicy]:
        """Cacheable paths: keyed on host and query string only (no cookies, no auth)."""
        a, edge = self._args, self._args.edge
        cache = aws.cloudfront.CachePolicy(
            f"{self._name}-cache",
            comment=f"{a.app.name} ({a.stack}): cacheable paths",
            min_ttl=0,
            default_ttl=edge.cache_ttl,
            max_ttl=max(edge.cache_ttl, 86400),
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
            opts=self._child(),
        )
        requests = aws.cloudfront.OriginRequestPolicy(
            f"{self._name}-cacheable-requests",
            comment=f"{a.app.name} ({a.stack}): cacheable paths, the viewer address only",
            headers_config=aws.cloudfront.OriginRequestPolicyHeadersConfigArgs(
                header_behavior="whitelist",
                headers=aws.cloudfront.OriginRequestPolicyHeadersConfigHeadersArgs(
                    items=[VIEWER_ADDRESS_HEADER])),
            cookies_config=aws.cloudfront.OriginRequestPolicyCookiesConfigArgs(
                cookie_behavior="none"),
            query_strings_config=aws.cloudfront.OriginRequestPolicyQueryStringsConfigArgs(
                query_string_behavior="none"),
            opts=self._child(),
        )
        return cache, requests
