"""`kind: ecs` targets: stack config -> EcsTarget args."""

from __future__ import annotations

import pulumi

from components.build import GinBuild
from components.ecs import EcsTarget, EcsTargetArgs
from components.endpoint import EdgeOrigin, TargetEndpoint
from gin_deploy.config import EcsTargetConfig, StackConfig, TargetConfig


def build_ecs(target: TargetConfig, cfg: StackConfig, build: GinBuild,
              edge: EdgeOrigin | None = None) -> TargetEndpoint:
    """TARGET_BUILDERS entry for `kind: ecs`: the EcsTarget and what edge/exports see."""
    assert isinstance(target, EcsTargetConfig)

    def push(repository: pulumi.Output[str], username: pulumi.Output[str],
             password: pulumi.Output[str], platform: str) -> pulumi.Output[str]:
        return build.push(target.name, repository, username=username, password=password,
                          platform=platform)

    ecs = EcsTarget(target.name, EcsTargetArgs(
        target=target, app=cfg.app, domain=cfg.domain, hsts=cfg.tls.hsts,
        project=cfg.project, stack=cfg.stack, push_image=push,
        zone_name=target.hosted_zone,
        manage_dns=cfg.edge is None, secret_env=cfg.secret_env, edge=edge,
    ))
    return TargetEndpoint(
        name=target.name, kind="ecs", url=ecs.url, origin_host=ecs.alb_dns_name,
        weight=target.weight, region=target.region, alias_zone_id=ecs.alb_zone_id,
    )
