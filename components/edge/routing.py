"""EdgeRouting: the stack's domain in front of all its deployed targets (Route 53,
CloudFront). Built after the targets from their `TargetEndpoint`s, complete when
its constructor returns; what the targets needed before (their names, the origin
lock) came from EdgeOrigins (origins.py).

Names (see docs/edge.md for the why):

* `<target>.origin.<domain>`: each target's own name - an alias to its load balancer
  (ecs), or an A / AAAA / CNAME record for its address (kubernetes gateway, host).
  Its HTTPS health check asks it for the health check path.
* the routing name - `domain` itself, or `origin.<domain>` behind the CDN: one CNAME
  per target to its own name, with the target's health check and a set identifier
  (the target's name), by routing policy: weighted (each target's weight; 0 keeps it
  deployed and checked, out of rotation), latency (by region) or failover (the two
  targets in rotation: primary, secondary). An unhealthy target drops out by itself.
* with a CDN (cdn.py): `domain` is an alias to a CloudFront distribution in front
  of the routing name.

Every resource is its child, in us-east-1 (Route 53 and CloudFront are global;
CloudFront takes certificates from us-east-1 only).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws_provider import regional_provider
from components.edge.cdn import CdnArgs, Site, build_cdn
from components.edge.origins import CDN_REGION
from components.endpoint import TargetEndpoint

ROUTING_TYPE = "gin-deploy:edge:EdgeRouting"
ROUTING_POLICIES = ("weighted", "latency", "failover")
RECORD_TTL_S = 60
HEALTH_CHECK_PORT = 443


@dataclass(frozen=True)
class HealthCheckArgs:
    """Route 53's HTTPS check of each target, on its own name."""

    path: str = "/readyz"
    interval: int = 30              # seconds: 10 or 30
    failure_threshold: int = 3


@dataclass(frozen=True)
class EdgeRoutingArgs:
    domain: str
    # The Route 53 public hosted zone that holds `domain`.
    zone: str
    # The deployed targets, in stack order.
    endpoints: Sequence[TargetEndpoint]
    # Each target's own name at the edge, by target name (EdgeOrigins' names).
    origin_names: Mapping[str, str]
    app: str
    project: str
    stack: str
    # weighted | latency | failover
    routing: str = "weighted"
    health_check: HealthCheckArgs = field(default_factory=HealthCheckArgs)
    # CloudFront in front (the routing records then carry `cdn.routed_name`).
    cdn: CdnArgs | None = None
    # An existing us-east-1 provider (e.g. with assume_role); default: a new one.
    provider: aws.Provider | None = None

    def __post_init__(self) -> None:
        if self.routing not in ROUTING_POLICIES:
            raise ValueError(f"routing must be one of {' | '.join(ROUTING_POLICIES)}, "
                             f"got {self.routing!r}")
        missing = [e.name for e in self.endpoints if e.name not in self.origin_names]
        if missing:
            raise ValueError(f"origin_names: no name for target(s) {', '.join(missing)}")
        if not any(e.weight > 0 for e in self.endpoints):
            raise ValueError("endpoints: at least one target needs a weight above 0")
        if self.routing == "latency":
            unplaced = [e.name for e in by_priority(self.routing, self.endpoints)
                        if e.region is None]
            if unplaced:
                raise ValueError(f"endpoints: latency routing needs a region for "
                                 f"{', '.join(unplaced)}")

    @property
    def routed_name(self) -> str:
        """The name the routing records carry."""
        return self.cdn.routed_name if self.cdn is not None else self.domain


def record_type(address: str) -> str:
    """A for an IPv4 address, AAAA for IPv6, CNAME for a host name."""
    if not address:
        raise ValueError("the target has no address yet (a Kubernetes gateway without a "
                         "load balancer address?)")
    try:
        return "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
    except ValueError:
        return "CNAME"


def by_priority(routing: str, endpoints: Sequence[TargetEndpoint]) -> list[TargetEndpoint]:
    """Targets in rotation (weight > 0), the one the routing policy prefers first:
    weighted by weight (ties in target order), failover and latency in target order."""
    rotation = [e for e in endpoints if e.weight > 0]
    if routing == "weighted":
        return sorted(rotation, key=lambda e: -e.weight)
    return rotation


def routing_policy(routing: str, endpoint: TargetEndpoint,
                   rotation: Sequence[TargetEndpoint]) -> dict[str, Any] | None:
    """The routing record's policy arguments for one target; None: no routing record
    (out of rotation under latency or failover routing)."""
    if routing == "weighted":
        return {"weighted_routing_policies": [
            aws.route53.RecordWeightedRoutingPolicyArgs(weight=endpoint.weight)]}
    names = [e.name for e in rotation]
    if endpoint.name not in names:
        return None
    if routing == "latency":
        if endpoint.region is None:
            raise ValueError(f"latency routing needs a region for target {endpoint.name}")
        return {"latency_routing_policies": [
            aws.route53.RecordLatencyRoutingPolicyArgs(region=endpoint.region)]}
    role = "PRIMARY" if names.index(endpoint.name) == 0 else "SECONDARY"
    return {"failover_routing_policies": [
        aws.route53.RecordFailoverRoutingPolicyArgs(type=role)]}


class EdgeRouting(pulumi.ComponentResource):
    """Route 53 health checks and records across all targets; CloudFront in front."""

    provider: aws.Provider
    zone_id: pulumi.Output[str]
    health_checks: dict[str, aws.route53.HealthCheck]
    target_records: dict[str, aws.route53.Record]
    routing_records: dict[str, aws.route53.Record]
    certificate_arn: pulumi.Output[str] | None
    distribution: aws.cloudfront.Distribution | None
    url: pulumi.Output[str]
    health_check_ids: pulumi.Output[dict[str, str]]
    distribution_id: pulumi.Output[str] | None
    distribution_domain: pulumi.Output[str] | None
    # With the CDN: the bucket its access logs go to, the WAF web ACL's ARN (if any).
    access_logs_bucket: pulumi.Output[str] | None
    web_acl_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: EdgeRoutingArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ROUTING_TYPE, name, None, opts)
        self._name, self._args = name, args
        self.provider = args.provider or regional_provider(
            f"{name}-aws", CDN_REGION, {"app": args.app, "stack": args.stack}, parent=self)
        self.zone_id = aws.route53.get_zone_output(
            name=args.zone, private_zone=False,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=self.provider)).zone_id
        self.health_checks, self.target_records, self.routing_records = {}, {}, {}

        rotation = by_priority(args.routing, args.endpoints)
        for endpoint in args.endpoints:
            own = self._target_record(endpoint)
            check = self._health_check(endpoint, own)
            policy = routing_policy(args.routing, endpoint, rotation)
            if policy is not None:
                self.routing_records[endpoint.name] = aws.route53.Record(
                    f"{name}-{endpoint.name}-route",
                    zone_id=self.zone_id,
                    name=args.routed_name,
                    type="CNAME",
                    ttl=RECORD_TTL_S,
                    records=[args.origin_names[endpoint.name]],
                    set_identifier=endpoint.name,
                    health_check_id=check.id,
                    **policy,
                    opts=self._child(depends_on=[own]),
                )
        ready: list[pulumi.Input[Any]] = [r.fqdn for r in self.routing_records.values()]

        self.certificate_arn = self.distribution = None
        self.distribution_id = self.distribution_domain = None
        self.access_logs_bucket = self.web_acl_arn = None
        if args.cdn is not None:
            secondary = rotation[1] if len(rotation) > 1 else rotation[0]
            cdn = build_cdn(
                Site(name=name, domain=args.domain, zone_id=self.zone_id, app=args.app,
                     project=args.project, stack=args.stack),
                args.cdn, secondary_name=args.origin_names[secondary.name],
                routing_records=list(self.routing_records.values()), parent=self,
                child=self._child)
            self.certificate_arn, self.distribution = cdn.certificate_arn, cdn.distribution
            self.distribution_id = cdn.distribution.id
            self.distribution_domain = cdn.distribution.domain_name
            if cdn.access_logs is not None:
                self.access_logs_bucket = cdn.access_logs.bucket
            if cdn.web_acl is not None:
                self.web_acl_arn = cdn.web_acl.arn
            ready += [r.fqdn for r in cdn.records]

        url = f"https://{args.domain}"
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
        if self.access_logs_bucket is not None:
            outputs["accessLogsBucket"] = self.access_logs_bucket
        if self.web_acl_arn is not None:
            outputs["webAclArn"] = self.web_acl_arn
        self.register_outputs(outputs)

    @staticmethod
    def urn_of(name: str) -> pulumi.Output[str]:
        """The URN of the (top-level) EdgeRouting named `name`, registered or not yet."""
        return pulumi.resource.create_urn(name, ROUTING_TYPE)

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider, **kwargs)

    def _target_record(self, endpoint: TargetEndpoint) -> aws.route53.Record:
        """`<target>.origin.<domain>`: the target's own name, once the target is deployed."""
        own_name = self._args.origin_names[endpoint.name]
        # The address, but only after the target's url resolves (it is deployed).
        address = pulumi.Output.all(endpoint.url, endpoint.origin_host).apply(lambda v: v[1])
        if endpoint.alias_zone_id is not None:
            record = aws.route53.Record(
                f"{self._name}-{endpoint.name}-origin",
                zone_id=self.zone_id,
                name=own_name,
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
                name=own_name,
                type=address.apply(record_type),
                ttl=RECORD_TTL_S,
                records=[address],
                opts=self._child(),
            )
        self.target_records[endpoint.name] = record
        return record

    def _health_check(self, endpoint: TargetEndpoint,
                      own: aws.route53.Record) -> aws.route53.HealthCheck:
        a, hc = self._args, self._args.health_check
        check = aws.route53.HealthCheck(
            f"{self._name}-{endpoint.name}-health",
            type="HTTPS",
            fqdn=a.origin_names[endpoint.name],
            port=HEALTH_CHECK_PORT,
            resource_path=hc.path,
            enable_sni=True,
            request_interval=hc.interval,
            failure_threshold=hc.failure_threshold,
            tags={"Name": f"{a.app}-{a.stack}-{endpoint.name}"},
            opts=self._child(depends_on=[own]),
        )
        self.health_checks[endpoint.name] = check
        return check
