"""`edge`: stack config -> EdgeOrigins (before the targets) and EdgeRouting (after)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.certificate import ValidationRecords
from components.certificate_alarm import days_to_expiry_alarm
from components.edge import (
    AccessLogsArgs,
    CdnArgs,
    EdgeOrigins,
    EdgeOriginsArgs,
    EdgeRouting,
    EdgeRoutingArgs,
    HealthCheckArgs,
    WafArgs,
)
from components.endpoint import TargetEndpoint
from gin_deploy.config import EdgeConfig, StackConfig, routed_origin_name, target_origin_name
from gin_deploy.render.headers import HstsPolicy


def routing_name(cfg: StackConfig) -> str:
    """EdgeRouting's name: `<app>-edge` (its children's URNs hang on it)."""
    return f"{cfg.app.name}-edge"


def origin_names(cfg: StackConfig) -> dict[str, str]:
    """Each target's own name at the edge, by target name."""
    return {t.name: target_origin_name(t.name, cfg.domain) for t in cfg.targets}


def edge_origins_args(cfg: StackConfig, edge: EdgeConfig) -> EdgeOriginsArgs:
    return EdgeOriginsArgs(
        names=origin_names(cfg), app=cfg.app.name, stack=cfg.stack, cdn=edge.cdn,
        verify_header=edge.origin_verify_header, open_path=edge.health_check.path)


def edge_routing_args(cfg: StackConfig, edge: EdgeConfig, endpoints: Sequence[TargetEndpoint],
                      verify_value: pulumi.Input[str] | None,
                      validation: ValidationRecords | None = None) -> EdgeRoutingArgs:
    """`verify_value`: the origin secret (EdgeOrigins'), which CloudFront sends;
    `validation`: the stack's ACM validation records (the targets' certificates')."""
    assert edge.zone is not None, "config requires edge.zone"
    cdn = None
    if edge.cdn:
        assert verify_value is not None, "EdgeOrigins makes a secret with cdn"
        hsts, logs, waf = cfg.tls.hsts, edge.access_logs, edge.waf
        cdn = CdnArgs(
            routed_name=routed_origin_name(cfg.domain),
            verify_header=edge.origin_verify_header, verify_value=verify_value,
            hsts=HstsPolicy(hsts.max_age, hsts.include_subdomains, hsts.preload),
            price_class=edge.price_class, cacheable_paths=edge.cacheable_paths,
            cache_ttl=edge.cache_ttl, origin_read_timeout=cfg.app.write_timeout,
            validation_records=validation.in_zone(edge.zone) if validation is not None
            else None,
            access_logs=AccessLogsArgs(bucket=logs.bucket, retention_days=logs.retention_days)
            if logs.enabled else None,
            waf=WafArgs(rate_limit=waf.rate_limit, action=waf.action,
                        count_only_rules=waf.count_only_rules) if waf.enabled else None)
    hc = edge.health_check
    return EdgeRoutingArgs(
        domain=cfg.domain, zone=edge.zone, endpoints=tuple(endpoints),
        origin_names=origin_names(cfg), app=cfg.app.name, project=cfg.project,
        stack=cfg.stack, routing=edge.routing,
        health_check=HealthCheckArgs(path=edge.health_check.path, interval=hc.interval,
                                     failure_threshold=hc.failure_threshold),
        cdn=cdn,
    )


def build_edge_origins(cfg: StackConfig, edge: EdgeConfig) -> EdgeOrigins:
    """What each target must do for the edge: created before them."""
    name = routing_name(cfg)
    return EdgeOrigins(
        f"{name}-origin", edge_origins_args(cfg, edge),
        # The origin secret was EdgeRouting's child before EdgeOrigins existed.
        moved_from=EdgeRouting.urn_of(name),
    )


def build_edge_routing(cfg: StackConfig, edge: EdgeConfig, origins: EdgeOrigins,
                       endpoints: Sequence[TargetEndpoint],
                       validation: ValidationRecords | None = None) -> EdgeRouting:
    """Health checks, records and CloudFront across the deployed targets."""
    name = routing_name(cfg)
    routing = EdgeRouting(name, edge_routing_args(cfg, edge, endpoints, origins.verify_value,
                                                  validation))
    if routing.certificate_arn is not None:  # CloudFront's, in us-east-1
        days_to_expiry_alarm(f"{name}-cdn", routing.certificate_arn, routing.provider,
                             parent=routing)
    return routing
