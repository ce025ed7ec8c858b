"""`kind: ecs` targets: stack config -> EcsTarget args."""

from __future__ import annotations

import pulumi

from components.build import GinBuild
from components.certificate import ValidationRecords
from components.certificate_alarm import days_to_expiry_alarm
from components.ecs import (
    EcsContainerArgs,
    EcsLoadBalancerArgs,
    EcsNetworkArgs,
    EcsRelease,
    EcsServiceArgs,
    EcsTarget,
    EcsTargetArgs,
    ImagePusher,
)
from components.endpoint import EdgeOrigin, TargetEndpoint
from gin_deploy.config import EcsTargetConfig, StackConfig, TargetConfig
from gin_deploy.render.headers import HstsPolicy


def ecs_target_args(target: EcsTargetConfig, cfg: StackConfig, push_image: ImagePusher,
                    edge: EdgeOrigin | None = None,
                    validation: ValidationRecords | None = None) -> EcsTargetArgs:
    """Every EcsTarget argument from the stack config (defaults already resolved);
    `push_image` is not used when the target runs an existing image."""
    region = target.region
    assert region is not None, "config parsing requires a region for ecs targets"
    app, t, hsts = cfg.app, target, cfg.tls.hsts
    min_count, max_count = t.min_count, t.max_count
    return EcsTargetArgs(
        region=region,
        domain=cfg.domain,
        zone_name=t.hosted_zone,
        stack=cfg.stack,
        push_image=push_image if t.image is None else None,
        image=t.image.ref if t.image is not None else None,
        image_allow_tag=t.image.allow_tag if t.image is not None else False,
        container=EcsContainerArgs(
            name=app.name, port=app.port, health_path=app.health_path,
            ready_path=app.ready_path, env=dict(app.env),
            secret_env=cfg.secret_env, shutdown_timeout=app.shutdown_timeout,
            idle_timeout=app.idle_timeout, write_timeout=app.write_timeout,
            trusted_proxies=app.trusted_proxies, secret_arns=dict(t.secret_arns),
            kms_key_arns=t.kms_key_arns),
        network=EcsNetworkArgs(
            vpc_cidr=t.vpc_cidr, az_count=t.az_count, nat=t.nat, vpc_id=t.vpc_id,
            public_subnet_ids=t.public_subnet_ids, private_subnet_ids=t.private_subnet_ids,
            ingress_cidrs=t.ingress_cidrs, flow_logs=t.flow_logs),
        load_balancer=EcsLoadBalancerArgs(
            certificate_arn=t.certificate_arn, sans=t.sans, idle_timeout=t.idle_timeout,
            access_logs=t.access_logs, access_logs_bucket=t.access_logs_bucket,
            deletion_protection=t.deletion_protection, waf=t.waf,
            waf_rate_limit=t.waf_rate_limit,
            hsts=HstsPolicy(hsts.max_age, hsts.include_subdomains, hsts.preload),
            validation_records=validation.in_zone(t.hosted_zone)
            if validation is not None else None),
        service=EcsServiceArgs(
            cpu=t.cpu, memory=t.memory, desired_count=t.desired_count, min_count=min_count,
            max_count=max_count, arch=t.arch, spot=t.spot,
            health_check_grace_seconds=t.health_check_grace_seconds,
            release=ecs_release(t), cpu_target=t.cpu_target,
            requests_per_target=t.requests_per_target, keep_images=t.keep_images,
            log_retention_days=t.log_retention_days, task_policy_arns=t.task_policy_arns),
        # Edge routing owns the domain's records when there is one.
        manage_dns=cfg.edge is None,
        edge=edge,
    )


def ecs_release(target: EcsTargetConfig) -> EcsRelease:
    r = target.release
    return EcsRelease(strategy=r.strategy, steps=r.steps, bake_seconds=r.bake_seconds,
                      max_error_rate=r.max_error_rate, max_p95_ms=r.max_p95_ms,
                      min_requests=r.min_requests)


def build_ecs(target: TargetConfig, cfg: StackConfig, build: GinBuild,
              edge: EdgeOrigin | None = None, *,
              validation: ValidationRecords | None = None) -> TargetEndpoint:
    """TARGET_BUILDERS entry for `kind: ecs`: the EcsTarget and what edge/exports see."""
    assert isinstance(target, EcsTargetConfig)

    def push(repository: pulumi.Output[str], username: pulumi.Output[str],
             password: pulumi.Output[str], platform: str) -> pulumi.Output[str]:
        return build.push(target.name, repository, username=username, password=password,
                          platform=platform)

    ecs = EcsTarget(target.name, ecs_target_args(target, cfg, push, edge, validation))
    days_to_expiry_alarm(target.name, ecs.certificate_arn, ecs.provider, parent=ecs)
    return TargetEndpoint(
        name=target.name, kind="ecs", url=ecs.url, origin_host=ecs.alb_dns_name,
        weight=target.weight, region=target.region, alias_zone_id=ecs.alb_zone_id,
        status={"region": target.region, "cluster": ecs.cluster.name,
                "service": ecs.service.name},
    )
