"""`kind: kubernetes` targets: stack config -> image push and KubernetesTarget args."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi

from components.build import GinBuild
from components.certificate import ValidationRecords
from components.endpoint import EdgeOrigin, TargetEndpoint
from components.kubernetes import CanaryArgs, KubernetesTarget, KubernetesTargetArgs
from gin_deploy.config import (
    DNS_01_ROUTE53,
    KubernetesTargetConfig,
    Route53Config,
    StackConfig,
    TargetConfig,
    TlsConfig,
)
from gin_deploy.render import flagger
from gin_deploy.render import kubernetes as render
from gin_deploy.render.cert_manager import Route53Solver
from gin_deploy.render.headers import hsts_value


def _image_key(repository: str) -> str:
    return "k8s-" + hashlib.sha256(repository.encode()).hexdigest()[:8]


def kubernetes_app(target: KubernetesTargetConfig, cfg: StackConfig,
                   version: str) -> render.KubernetesApp:
    """The plain values every manifest is rendered from (edge fields: the component's)."""
    t, app, hsts = target, cfg.app, cfg.tls.hsts
    return render.KubernetesApp(
        name=app.name,
        namespace=t.namespace,
        gateway_namespace=t.gateway_namespace,
        domain=cfg.domain,
        version=version,
        port=app.port,
        health_path=app.health_path,
        ready_path=app.ready_path,
        env=dict(app.env),
        shutdown_timeout=app.shutdown_timeout,
        idle_timeout=app.idle_timeout,
        write_timeout=app.write_timeout,
        trusted_proxies=app.trusted_proxies,
        replicas=t.replicas,
        max_replicas=t.max_replicas,
        max_surge=t.max_surge,
        max_unavailable=t.max_unavailable,
        cpu_request=t.cpu_request,
        cpu_limit=t.cpu_limit,
        memory_request=t.memory_request,
        memory_limit=t.memory_limit,
        cpu_target=t.cpu_target,
        memory_target=t.memory_target,
        pre_stop_sleep=t.pre_stop_sleep,
        gateway_class_name=t.gateway_class_name,
        wait_for_address=t.wait_for_address,
        hsts=hsts_value(hsts.max_age, hsts.include_subdomains, hsts.preload),
    )


def analysis_of(target: KubernetesTargetConfig) -> flagger.Analysis | None:
    """Flagger's analysis of a canary or blueGreen release; None for rolling updates."""
    if not target.by_flagger:
        return None
    policy = target.release
    return flagger.Analysis(
        steps=policy.steps, bake_seconds=policy.bake_seconds,
        max_error_rate=policy.max_error_rate, max_p95_ms=policy.max_p95_ms,
        min_requests=policy.min_requests,
        prometheus_url=target.prometheus_url if policy.bake_seconds else None)


def acme_of(tls: TlsConfig, project_dir: Path,
            route53: Route53Config | None = None) -> render.Acme | None:
    """cert-manager's ACME account, with the CA bundle read from the deploying machine;
    with DNS-01, the Route 53 solver from the target's credentials."""
    if tls.mode != "acme" or tls.acme is None:
        return None
    bundle = (project_dir / tls.acme.ca_bundle).read_text() if tls.acme.ca_bundle else None
    solver = None
    if tls.acme.challenge == DNS_01_ROUTE53:
        assert route53 is not None, "config requires route53 credentials with dns-01-route53"
        solver = Route53Solver(role_arn=route53.role_arn, access_key_id=route53.access_key_id,
                               hosted_zone_id=route53.hosted_zone_id)
    return render.Acme(tls.acme.email, tls.acme.server, bundle, route53=solver)


def kubernetes_target_args(target: KubernetesTargetConfig, cfg: StackConfig, *,
                           image: pulumi.Input[str], version: str,
                           edge: EdgeOrigin | None = None) -> KubernetesTargetArgs:
    """Every KubernetesTarget argument from the stack config; secrets as Pulumi secrets."""
    registry = target.registry
    if registry is not None:
        repository = registry.server
    else:
        # Config requires a registry or an existing image, whose repository then serves.
        assert target.image is not None
        repository = target.image.repository
    kubeconfig: pulumi.Input[str] | None = None
    if target.kubeconfig:
        kubeconfig = pulumi.Output.secret(target.kubeconfig)
    elif target.kubeconfig_path:
        kubeconfig = pulumi.Output.secret(Path(target.kubeconfig_path).expanduser().read_text())
    canary = target.canary
    return KubernetesTargetArgs(
        app=kubernetes_app(target, cfg, version),
        image=image,
        registry=repository,
        registry_username=registry.username if registry is not None else None,
        registry_password=pulumi.Output.secret(registry.password)
        if registry is not None and registry.password else None,
        context=target.context,
        kubeconfig=kubeconfig,
        acme=acme_of(cfg.tls, cfg.project_dir, target.route53),
        route53_secret_access_key=pulumi.Output.secret(target.route53.secret_access_key)
        if target.route53 is not None and target.route53.secret_access_key else None,
        canary=CanaryArgs(canary.version, canary.weight) if canary is not None else None,
        install_gateway=target.install_gateway,
        install_cert_manager=target.install_cert_manager,
        analysis=analysis_of(target),
        install_flagger=target.install_flagger,
        trusted_proxies=target.trusted_proxies,
        client_ip_mode=target.client_ip_mode,
        network_policy=target.network_policy,
        rollout_timeout=target.rollout_timeout,
        secret_env=cfg.secret_env,
        edge=edge,
    )


def build_kubernetes(target: TargetConfig, cfg: StackConfig, build: GinBuild,
                     edge: EdgeOrigin | None = None, *,
                     validation: ValidationRecords | None = None) -> TargetEndpoint:
    """TARGET_BUILDERS entry: push the image to the target's registry (unless the config
    gives an existing image), then deploy."""
    assert isinstance(target, KubernetesTargetConfig)
    image: pulumi.Input[str]
    if target.image is not None:
        image = target.image.ref
    else:
        registry = target.registry
        assert registry is not None  # required by config validation without an image
        password = pulumi.Output.secret(registry.password) if registry.password else None
        key = _image_key(registry.server)
        # Targets sharing a repository share one push.
        image = build.image_digests.get(key) or build.push(
            key, registry.server, username=registry.username, password=password)
    args = kubernetes_target_args(target, cfg, image=image, version=build.version,
                                  edge=edge)
    k8s_target = KubernetesTarget(target.name, args)
    app = args.app
    return TargetEndpoint(
        name=target.name, kind="kubernetes", url=k8s_target.url,
        origin_host=k8s_target.address.apply(lambda a: a or ""), weight=target.weight,
        region=target.region,
        # cert-manager's gateway-shim names the Certificate after the Gateway's secret.
        status={"context": target.context, "namespace": app.namespace,
                # Under Flagger the primary serves; the app's Deployment is its canary.
                "deployment": flagger.primary_name(app.name) if target.by_flagger
                else app.deployment_name("stable"),
                "certificate": {"namespace": app.gateway_namespace,
                                "name": app.tls_secret_name}},
    )
