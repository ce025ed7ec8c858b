"""The Pulumi program: load config -> build -> targets -> edge -> exports.

`__main__.py` only calls `main()`; tests call it too, under mocks.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from components.build import GinBuild, GinBuildArgs
from components.host import HostTarget, HostTargetArgs
from gin_deploy.config import (
    IMPLEMENTED_KINDS,
    NAMESPACE,
    ConfigError,
    HostTargetConfig,
    StackConfig,
    load_stack_config,
)


def check_implemented(cfg: StackConfig) -> None:
    """Refuse target kinds whose component does not exist yet, before any resource."""
    problems = [
        f"{NAMESPACE}:targets[{i}].kind: {t.kind!r} targets are not implemented yet "
        f"(implemented: {', '.join(IMPLEMENTED_KINDS)})"
        for i, t in enumerate(cfg.targets)
        if t.kind not in IMPLEMENTED_KINDS
    ]
    if cfg.edge is not None:
        problems.append(f"{NAMESPACE}:edge: edge routing is not implemented yet")
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
    endpoints: dict[str, pulumi.Output[str]] = {}
    ca_certs: dict[str, str] = {}
    for target in cfg.targets:
        if isinstance(target, HostTargetConfig):
            assert build.binary_path is not None and build.binary_sha256 is not None
            host = HostTarget(target.name, HostTargetArgs(
                target=target, app=cfg.app, domain=cfg.domain, tls=cfg.tls,
                project=cfg.project, stack=cfg.stack, version=build.version,
                binary_path=build.binary_path, binary_sha256=build.binary_sha256,
                project_dir=cfg.project_dir,
                secret_env=cfg.secret_env,
                private_key=_private_key(target),
            ))
            endpoints[target.name] = host.url
            if host.ca_cert:
                ca_certs[target.name] = host.ca_cert

    pulumi.export("version", build.version)
    pulumi.export("endpoints", endpoints)
    pulumi.export("url", next(iter(endpoints.values())))
    if ca_certs:
        pulumi.export("caCert", next(iter(ca_certs.values())))


def _private_key(target: HostTargetConfig) -> pulumi.Output[str] | None:
    """The SSH key as a Pulumi secret, from secret config or a key file."""
    if target.private_key:
        return pulumi.Output.secret(target.private_key)
    if target.private_key_path:
        return pulumi.Output.secret(Path(target.private_key_path).expanduser().read_text())
    return None
