"""The Pulumi program: load config -> build -> targets -> edge -> exports.

`__main__.py` only calls `main()`; tests call it too, under mocks. Each target
kind registers one builder in TARGET_BUILDERS; a kind without a builder fails
with a clear "not implemented yet" before any resource is registered. With
`edge`, EdgeRouting comes first (the targets need its origin secret and names)
and routes the targets once they exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pulumi

from components.build import GinBuild, GinBuildArgs
from components.ecs import build_ecs
from components.edge import EdgeRouting, EdgeRoutingArgs
from components.endpoint import EdgeOrigin, TargetEndpoint
from components.host import HostTarget, HostTargetArgs
from components.kubernetes import build_kubernetes
from gin_deploy.config import (
    NAMESPACE,
    ConfigError,
    HostTargetConfig,
    StackConfig,
    TargetConfig,
    load_stack_config,
)


class TargetBuilder(Protocol):
    def __call__(self, target: TargetConfig, cfg: StackConfig, build: GinBuild,
                 edge: EdgeOrigin | None = None) -> TargetEndpoint: ...


def build_host(target: TargetConfig, cfg: StackConfig, build: GinBuild,
               edge: EdgeOrigin | None = None) -> TargetEndpoint:
    assert isinstance(target, HostTargetConfig)
    assert build.binary_path is not None and build.binary_sha256 is not None
    host = HostTarget(target.name, HostTargetArgs(
        target=target, app=cfg.app, domain=cfg.domain, tls=cfg.tls,
        project=cfg.project, stack=cfg.stack, version=build.version,
        binary_path=build.binary_path, binary_sha256=build.binary_sha256,
        project_dir=cfg.project_dir, secret_env=cfg.secret_env,
        private_key=_private_key(target), edge=edge,
    ))
    origin = target.host if target.connection == "ssh" and target.host else "localhost"
    return TargetEndpoint(
        name=target.name, kind="host", url=host.url,
        origin_host=pulumi.Output.from_input(origin), weight=target.weight,
        region=target.region, ca_cert=host.ca_cert,
    )


# One builder per implemented target kind.
TARGET_BUILDERS: dict[str, TargetBuilder] = {
    "host": build_host,
    "ecs": build_ecs,
    "kubernetes": build_kubernetes,
}


def check_implemented(cfg: StackConfig) -> None:
    """Refuse target kinds whose component does not exist yet, before any resource."""
    problems = [
        f"{NAMESPACE}:targets[{i}].kind: {t.kind!r} targets are not implemented yet "
        f"(implemented: {', '.join(sorted(TARGET_BUILDERS))})"
        for i, t in enumerate(cfg.targets)
        if t.kind not in TARGET_BUILDERS
    ]
    if problems:
        raise ConfigError(problems)


def main() -> None:
    cfg = load_stack_config()
    check_implemented(cfg)
    build = GinBuild(
        cfg.app.name,
        GinBuildArgs(
            app_name=cfg.app.name,
            source_dir=cfg.project_dir / cfg.app.source,
            output_dir=cfg.project_dir / "build",
            version=cfg.app.version,
            build_binary=any(t.kind == "host" for t in cfg.targets),
        ),
    )
    edge = None
    if cfg.edge is not None:
        edge = EdgeRouting(f"{cfg.app.name}-edge", EdgeRoutingArgs(
            edge=cfg.edge, app=cfg.app, domain=cfg.domain, hsts=cfg.tls.hsts,
            project=cfg.project, stack=cfg.stack,
        ))
    endpoints = [
        TARGET_BUILDERS[t.kind](t, cfg, build, edge.origin_for(t.name) if edge else None)
        for t in cfg.targets
    ]
    if edge is not None:
        edge.route(endpoints)

    pulumi.export("version", build.version)
    pulumi.export("endpoints", {e.name: e.url for e in endpoints})
    pulumi.export("url", edge.url if edge is not None else endpoints[0].url)
    if edge is not None:
        pulumi.export("healthChecks", edge.health_check_ids)
        if edge.distribution is not None:
            pulumi.export("distributionId", edge.distribution_id)
            pulumi.export("distributionDomain", edge.distribution_domain)
    ca_certs = [e.ca_cert for e in endpoints if e.ca_cert]
    if ca_certs:
        pulumi.export("caCert", ca_certs[0])


def _private_key(target: HostTargetConfig) -> pulumi.Output[str] | None:
    """The SSH key as a Pulumi secret, from secret config or a key file."""
    if target.private_key:
        return pulumi.Output.secret(target.private_key)
    if target.private_key_path:
        return pulumi.Output.secret(Path(target.private_key_path).expanduser().read_text())
    return None
