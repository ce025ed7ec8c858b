"""`kind: host` targets: stack config -> HostTarget args."""

from __future__ import annotations

from pathlib import Path

import pulumi

from components.build import GinBuild
from components.certificate import ValidationRecords
from components.endpoint import EdgeOrigin, TargetEndpoint
from components.host import HostTarget, HostTargetArgs
from gin_deploy.config import HostTargetConfig, StackConfig, TargetConfig


def build_host(target: TargetConfig, cfg: StackConfig, build: GinBuild,
               edge: EdgeOrigin | None = None, *,
               validation: ValidationRecords | None = None) -> TargetEndpoint:
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


def _private_key(target: HostTargetConfig) -> pulumi.Output[str] | None:
    """The SSH key as a Pulumi secret, from secret config or a key file."""
    if target.private_key:
        return pulumi.Output.secret(target.private_key)
    if target.private_key_path:
        return pulumi.Output.secret(Path(target.private_key_path).expanduser().read_text())
    return None
