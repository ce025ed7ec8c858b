"""`kind: kubernetes` targets: stack config -> image push and KubernetesTarget args."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi

from components.build import GinBuild
from components.endpoint import EdgeOrigin, TargetEndpoint
from components.kubernetes import KubernetesTarget, KubernetesTargetArgs
from gin_deploy.config import KubernetesTargetConfig, StackConfig, TargetConfig


def _image_key(repository: str) -> str:
    return "k8s-" + hashlib.sha256(repository.encode()).hexdigest()[:8]


def build_kubernetes(target: TargetConfig, cfg: StackConfig, build: GinBuild,
                     edge: EdgeOrigin | None = None) -> TargetEndpoint:
    """TARGET_BUILDERS entry: push the image to the target's registry, then deploy."""
    assert isinstance(target, KubernetesTargetConfig)
    assert target.registry is not None  # required by config validation
    registry = target.registry
    password = pulumi.Output.secret(registry.password) if registry.password else None
    key = _image_key(registry.server)
    # Targets sharing a repository share one push.
    digest = build.image_digests.get(key) or build.push(
        key, registry.server, username=registry.username, password=password)
    kubeconfig: pulumi.Input[str] | None = None
    if target.kubeconfig:
        kubeconfig = pulumi.Output.secret(target.kubeconfig)
    elif target.kubeconfig_path:
        kubeconfig = pulumi.Output.secret(Path(target.kubeconfig_path).expanduser().read_text())
    k8s_target = KubernetesTarget(target.name, KubernetesTargetArgs(
        target=target, app=cfg.app, domain=cfg.domain, tls=cfg.tls, version=build.version,
        image=digest, project_dir=cfg.project_dir, secret_env=cfg.secret_env,
        kubeconfig=kubeconfig, registry_password=password, edge=edge,
    ))
    return TargetEndpoint(
        name=target.name, kind="kubernetes", url=k8s_target.url,
        origin_host=k8s_target.address.apply(lambda a: a or ""), weight=target.weight,
        region=target.region,
    )
