"""The Pulumi program: load config -> build -> targets -> edge -> exports.

`__main__.py` only calls `main()`; tests call it too, under mocks. This package is
the only place that maps stack config to component args: one module per target
kind (host.py, ecs.py, kubernetes.py) and edge.py. Each target kind registers one
builder in TARGET_BUILDERS; a kind without a builder fails with a clear "not
implemented yet" before any resource is registered. With `edge`, EdgeOrigins
comes first (the targets need their names at the edge and the origin lock) and
EdgeRouting routes the targets once they exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pulumi

from components.build import GinBuild, GinBuildArgs
from components.certificate import ValidationRecords
from components.endpoint import EdgeOrigin, TargetEndpoint
from gin_deploy.config import (
    NAMESPACE,
    ConfigError,
    StackConfig,
    TargetConfig,
    load_stack_config,
)
from gin_deploy.program.ecs import build_ecs
from gin_deploy.program.edge import build_edge_origins, build_edge_routing
from gin_deploy.program.host import build_host
from gin_deploy.program.kubernetes import build_kubernetes


class TargetBuilder(Protocol):
    """`validation`: the stack's ACM validation records (a kind that makes ACM
    certificates validates through them: one writer per record)."""

    def __call__(self, target: TargetConfig, cfg: StackConfig, build: GinBuild,
                 edge: EdgeOrigin | None = None, *,
                 validation: ValidationRecords | None = None) -> TargetEndpoint: ...


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
            # Relative to the project dir (the engine's cwd): the same in every checkout.
            source_dir=Path(cfg.app.source),
            output_dir=Path("build"),
            version=cfg.app.version,
            build_binary=any(t.kind == "host" for t in cfg.targets),
        ),
    )
    origins = build_edge_origins(cfg, cfg.edge) if cfg.edge is not None else None
    # Certificates for the same name share one validation record (targets first, in
    # order, then the CDN's): the first to need a name writes its record.
    validation = ValidationRecords()
    endpoints = [
        TARGET_BUILDERS[t.kind](t, cfg, build,
                                None if origins is None else origins.origin_for(t.name),
                                validation=validation)
        for t in cfg.targets
    ]
    edge = None
    if cfg.edge is not None and origins is not None:
        edge = build_edge_routing(cfg, cfg.edge, origins, endpoints, validation)

    pulumi.export("version", build.version)
    pulumi.export("endpoints", {e.name: e.url for e in endpoints})
    # What `python -m gin_deploy status` asks each live target by (gin_deploy/status).
    pulumi.export("targets", [{"name": e.name, "kind": e.kind, "url": e.url,
                               "caCert": e.ca_cert, **e.status} for e in endpoints])
    pulumi.export("url", edge.url if edge is not None else endpoints[0].url)
    if edge is not None:
        pulumi.export("healthChecks", edge.health_check_ids)
        if edge.distribution is not None:
            pulumi.export("distributionId", edge.distribution_id)
            pulumi.export("distributionDomain", edge.distribution_domain)
        if edge.access_logs_bucket is not None:
            pulumi.export("accessLogsBucket", edge.access_logs_bucket)
    ca_certs = [e.ca_cert for e in endpoints if e.ca_cert]
    if ca_certs:
        pulumi.export("caCert", ca_certs[0])
