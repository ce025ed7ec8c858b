"""KubernetesTarget: the service on one Kubernetes cluster, behind NGINX over HTTPS.

Per cluster, with its own `kubernetes.Provider` (from a kubeconfig context or a
kubeconfig given as a Pulumi secret), so one stack can hold clusters of several
clouds: two namespaces (the app's under Pod Security `restricted`, the gateway's),
the app's Deployment (image by digest), Service, HPA, PDB and NetworkPolicy,
NGINX Gateway Fabric (Gateway API) and cert-manager installed by Helm, a Gateway
with HTTP and HTTPS listeners, HTTPRoutes (redirect; HSTS; canary split by
weight), and an ACME ClusterIssuer solving HTTP-01 through that Gateway (DNS-01 in
Route 53 where several targets or a CDN answer the domain). Behind
edge routing the Gateway also answers the target's own name at the edge, and
behind a CDN its HTTPS route forwards only requests with CloudFront's secret header.

Every object is rendered by gin_deploy.render.kubernetes from plain values; the
few Outputs (the pushed image's digest, generated Secret names) are set at their
leaves here. Semantics and operations: docs/kubernetes.md.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from components.endpoint import EdgeOrigin
from gin_deploy.render import cert_manager, flagger, helm_values
from gin_deploy.render import kubernetes as render
from gin_deploy.render import kubernetes_versions as versions

Manifest = dict[str, Any]
_CONTAINER = ("spec", "template", "spec", "containers", 0)
_ORIGIN_VERIFY_VALUE = ("spec", "rules", 0, "matches", 0, "headers", 0, "value")
CLIENT_IP_MODES = ("XForwardedFor", "ProxyProtocol")


@dataclass(frozen=True)
class CanaryArgs:
    # The canary release: an image tag (or sha256:...) pushed to the registry.
    version: str
    # Percent of traffic it gets.
    weight: int


@dataclass(frozen=True)
class KubernetesTargetArgs:
    # The plain values every manifest is rendered from (names, release version, sizes,
    # probes, gateway class, HSTS); `edge` adds its names and the origin lock.
    app: render.KubernetesApp
    # The stable release: the repo digest GinBuild pushed (`repo@sha256:...`), or an
    # existing image's reference (a plain string; a tag only where the config allowed it).
    image: pulumi.Input[str]
    # The image repository (e.g. ghcr.io/acme/hello-gin): canary images, pull secret.
    registry: str
    # With a password (a Pulumi secret): a pull secret for private images.
    registry_username: str | None = None
    registry_password: pulumi.Input[str] | None = None
    # The cluster: a context of the local kubeconfig and/or kubeconfig contents (a secret).
    context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None
    # cert-manager's issuer: ACME (HTTP-01 through the Gateway, or DNS-01 in Route 53 with
    # `acme.route53`); None: self-signed.
    acme: render.Acme | None = None
    # With `acme.route53` by access key: its secret part (a Pulumi secret).
    route53_secret_access_key: pulumi.Input[str] | None = None
    canary: CanaryArgs | None = None
    # A canary or blue/green release run by Flagger (None: rolling updates). It replaces
    # `canary`, the Service and the HTTPS HTTPRoute, which Flagger then owns.
    analysis: flagger.Analysis | None = None
    # Install Flagger with Helm (with `analysis`); False reuses the cluster's.
    install_flagger: bool = True
    # Install NGINX Gateway Fabric (+ Gateway API CRDs) and cert-manager with Helm;
    # False reuses what the cluster has (app.gateway_class_name).
    install_gateway: bool = True
    install_cert_manager: bool = True
    # The load balancer in front of NGINX: its CIDRs and how it passes the client address.
    trusted_proxies: tuple[str, ...] = ()
    client_ip_mode: str = "XForwardedFor"
    # The app's pods accept traffic only from the gateway's namespace.
    network_policy: bool = True
    # Seconds the provider awaits a Deployment's rollout before the update fails.
    rollout_timeout: int = 600
    # Values of the app's secret env vars by name; they reach the cluster only as secrets.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    # Set by edge routing: extra names, and behind a CDN the origin lock.
    edge: EdgeOrigin | None = None

    def __post_init__(self) -> None:
        if not self.registry:
            raise ValueError("registry is required (the image repository)")
        if self.analysis is not None and self.canary is not None:
            raise ValueError("canary (a static weight) and analysis (Flagger) exclude "
                             "each other")
        if self.rollout_timeout < 1:
            raise ValueError(f"rollout_timeout must be positive, got {self.rollout_timeout}")
        if self.client_ip_mode not in CLIENT_IP_MODES:
            raise ValueError(f"client_ip_mode must be one of {' | '.join(CLIENT_IP_MODES)}, "
                             f"got {self.client_ip_mode!r}")
        if self.edge is not None and self.edge.locked and self.edge.verify_header is None:
            raise ValueError("edge: a locked origin needs verify_header")
        route53 = self.acme.route53 if self.acme is not None else None
        if route53 is not None and not route53.web_identity and \
                self.route53_secret_access_key is None:
            raise ValueError("route53_secret_access_key: required with acme.route53's "
                             "access key")


def app_with_edge(args: KubernetesTargetArgs) -> render.KubernetesApp:
    """`args.app` with what edge routing asks of the target: its names, the lock."""
    app, edge = args.app, args.edge
    if edge is None:
        return app
    return dataclasses.replace(
        app,
        extra_names=tuple(dict.fromkeys((*app.extra_names, *edge.names))),
        origin_verify_header=edge.verify_header if edge.locked else None,
        origin_open_path=edge.open_path if edge.locked else None,
    )


def canary_image(repository: str, version: str) -> str:
    """`<repository>:<tag>`, or `<repository>@sha256:...` for a digest."""
    return f"{repository}@{version}" if version.startswith("sha256:") else f"{repository}:{version}"


def with_leaf(manifest: Manifest, path: Sequence[str | int], value: Any) -> Manifest:
    """A copy of `manifest` with the value at `path` replaced (e.g. by an Output).

    Only the containers along `path` are copied; the rest is shared, unchanged.
    """
    result = copy.copy(manifest)
    node: Any = result
    for key in path[:-1]:
        child = copy.copy(node[key])
        node[key] = child
        node = child
    node[path[-1]] = value
    return result


class CustomResource(pulumi.CustomResource):
    """A Kubernetes custom resource, like `k8s.apiextensions.CustomResource` (same type
    token `kubernetes:<apiVersion>:<kind>`), that also exposes the object's `status`."""

    status: pulumi.Output[Any]

    def __init__(self, resource_name: str, manifest: Manifest,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"],
                 "metadata": manifest["metadata"], "spec": manifest["spec"], "status": None}
        super().__init__(f"kubernetes:{manifest['apiVersion']}:{manifest['kind']}",
                         resource_name, props, opts)


# Top-level fields of core objects besides apiVersion/kind, as pulumi-kubernetes args.
_ARGS = {"metadata": "metadata", "spec": "spec", "type": "type", "immutable": "immutable",
         "stringData": "string_data",
         "automountServiceAccountToken": "automount_service_account_token",
         "rules": "rules", "roleRef": "role_ref", "subjects": "subjects"}


def _first_address(status: Any) -> str | None:
    addresses = (status or {}).get("addresses") or []
    return addresses[0].get("value") if addresses else None


class KubernetesTarget(pulumi.ComponentResource):
    """The service on one cluster: workload, NGINX Gateway Fabric, cert-manager, canary."""

    provider: k8s.Provider
    namespace: str
    gateway_namespace: str
    deployment: k8s.apps.v1.Deployment
    canary: k8s.apps.v1.Deployment | None
    # Flagger's Canary of the Deployment, with `analysis`.
    release: CustomResource | None
    gateway: CustomResource
    url: pulumi.Output[str]
    # The gateway load balancer's IP or host name; None until the cloud assigns one.
    address: pulumi.Output[str | None]

    def __init__(self, name: str, args: KubernetesTargetArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gin-deploy:kubernetes:KubernetesTarget", name, None, opts)
        # Plain values first: everything below is rendered from these.
        self._target_name = name
        app = app_with_edge(args)
        acme = args.acme
        weight = args.canary.weight if args.canary is not None else 0
        analysis = args.analysis
        self.namespace, self.gateway_namespace = app.namespace, app.gateway_namespace

        self.provider = k8s.Provider(
            f"{name}-provider",
            context=args.context,
            kubeconfig=pulumi.Output.secret(args.kubeconfig) if args.kubeconfig else None,
            opts=pulumi.ResourceOptions(parent=self),
        )

        def apply(role: str, manifest: Manifest, *, depends_on: Sequence[pulumi.Resource] = (),
                  **kwargs: Any) -> Any:
            """The typed pulumi-kubernetes resource for a rendered core object."""
            group, _, version = manifest["apiVersion"].rpartition("/")
            module = getattr(k8s, {"": "core", "apps": "apps", "autoscaling": "autoscaling",
                                   "policy": "policy", "networking.k8s.io": "networking",
                                   "rbac.authorization.k8s.io": "rbac"}[group])
            cls = getattr(getattr(module, version), manifest["kind"])
            values = {_ARGS[k]: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
            values.update(kwargs)
            opts = self._opts(depends_on)
            if analysis is not None and manifest["kind"] == "Deployment":
                # Flagger scales the Deployment (its canary target) between releases.
                opts.ignore_changes = ["spec.replicas"]
            if manifest["kind"] == "Deployment":
                # The provider awaits the rollout this long (its own default: 10 minutes).
                wait = f"{args.rollout_timeout}s"
                opts.custom_timeouts = pulumi.CustomTimeouts(create=wait, update=wait)
            return cls(f"{name}-{role}", **values, opts=opts)

        def custom(role: str, manifest: Manifest, *,
                   depends_on: Sequence[pulumi.Resource] = ()) -> CustomResource:
            return CustomResource(f"{name}-{role}", manifest, self._opts(depends_on))

        # Namespaces.
        app_ns = apply("namespace", render.app_namespace(app))
        gateway_ns = apply("gateway-namespace", render.gateway_namespace(app))

        # Cluster add-ons: the Gateway API, NGINX Gateway Fabric, cert-manager.
        crds: list[pulumi.Resource] = []
        gateway_deps: list[pulumi.Resource] = [gateway_ns]
        if args.install_gateway:
            crds.append(k8s.yaml.v2.ConfigFile(
                f"{name}-gateway-api-crds", file=versions.GATEWAY_API_CRDS_URL,
                opts=self._opts([])))
            values: pulumi.Input[dict[str, Any]] = helm_values.gateway_fabric_values(
                app.gateway_class_name, args.trusted_proxies, args.client_ip_mode)
            if args.edge is not None and args.edge.cdn_cidrs is not None:
                # Behind the CDN, NGINX also takes the client address from CloudFront.
                values = pulumi.Output.from_input(args.edge.cdn_cidrs).apply(
                    lambda cidrs: helm_values.gateway_fabric_values(
                        app.gateway_class_name, (*args.trusted_proxies, *cidrs),
                        args.client_ip_mode))
            gateway_deps.append(self._helm(
                "nginx-gateway-fabric", versions.NGINX_GATEWAY_FABRIC, values, crds))
        issuer_deps: list[pulumi.Resource] = [*crds]
        if args.install_cert_manager:
            issuer_deps.append(self._helm("cert-manager", versions.CERT_MANAGER,
                                          helm_values.cert_manager_values(), crds))
        flagger_deps: list[pulumi.Resource] = []
        if analysis is not None and args.install_flagger:
            # Its chart brings the Canary and MetricTemplate CRDs.
            flagger_deps.append(self._helm("flagger", versions.FLAGGER, flagger.flagger_values(
                analysis.prometheus_url), crds))

        # The workload.
        ns_deps: list[pulumi.Resource] = [app_ns]
        account = apply("service-account", render.service_account(app), depends_on=ns_deps)
        env_secret = None
        if args.secret_env:
            manifest = render.env_secret(app, {})
            env_secret = apply("env", manifest, depends_on=ns_deps,
                               string_data=pulumi.Output.secret(dict(args.secret_env)))
        pull_secret = None
        if args.registry_username and args.registry_password is not None:
            server = args.registry.split("/", 1)[0]
            username = args.registry_username
            config_json = pulumi.Output.from_input(args.registry_password).apply(
                lambda password: {".dockerconfigjson": render.dockerconfigjson(
                    server, username, password)})
            pull_secret = apply("registry-credentials", render.registry_secret(app, ""),
                                depends_on=ns_deps, string_data=pulumi.Output.secret(config_json))

        def workload(track: str, image: pulumi.Input[str], version: str, *, pinned: bool,
                     replicas: int | None) -> Manifest:
            manifest = render.deployment(
                app, track=track, image="", version=version, pinned=pinned, replicas=replicas,
                env_secret_name="" if env_secret else None,
                pull_secret_name="" if pull_secret else None)
            manifest = with_leaf(manifest, (*_CONTAINER, "image"), image)
            if env_secret is not None:
                manifest = with_leaf(manifest, (*_CONTAINER, "envFrom", 0, "secretRef", "name"),
                                     env_secret.metadata.name)
            if pull_secret is not None:
                manifest = with_leaf(manifest, ("spec", "template", "spec", "imagePullSecrets",
                                                0, "name"), pull_secret.metadata.name)
            return manifest

        workload_deps = [app_ns, account]
        # A pushed digest is an Output; a given reference is pinned only by a digest.
        stable_pinned = not isinstance(args.image, str) or "@sha256:" in args.image
        stable = workload("stable", args.image, app.version, pinned=stable_pinned,
                          replicas=None)
        self.deployment = apply("deployment", flagger.canary_target(stable) if analysis
                                else stable, depends_on=workload_deps)
        if analysis is None:
            apply("service", render.service(app), depends_on=ns_deps)
        hpa = apply("hpa", render.horizontal_pod_autoscaler(app), depends_on=[self.deployment])
        apply("pdb", render.pod_disruption_budget(app, analysis is not None), depends_on=ns_deps)
        self.canary = None
        if weight and args.canary is not None:
            image = canary_image(args.registry, args.canary.version)
            self.canary = apply("canary-deployment", workload(
                "canary", image, args.canary.version, pinned=image.count("@sha256:") == 1,
                replicas=render.canary_replicas(app, weight)), depends_on=workload_deps)
            apply("canary-service", render.service(app, "canary"), depends_on=ns_deps)
        if args.network_policy:
            apply("network-policy", render.network_policy(app, analysis is not None),
                  depends_on=ns_deps)

        # Certificates and the edge.
        if acme is not None and acme.route53 is not None:
            # DNS-01: what the Route 53 solver authenticates with, in cert-manager's namespace.
            issuer_deps += self._route53_credentials(app, acme, args, apply, issuer_deps)
        issuer = custom("cluster-issuer", render.cluster_issuer(app, acme),
                        depends_on=issuer_deps)
        custom("certificate", render.certificate(app, acme),
               depends_on=[gateway_ns, issuer, *issuer_deps])
        self.gateway = custom("gateway", render.gateway(app), depends_on=gateway_deps + crds)
        self.release = None
        if analysis is not None:
            route = self.release = self._flagger_canary(
                app, analysis, args, custom,
                [app_ns, self.gateway, self.deployment, hpa, *crds, *flagger_deps])
        else:
            https_route = render.https_route(app, weight)
            if app.origin_verify_header is not None:
                assert args.edge is not None and args.edge.verify_value is not None
                https_route = with_leaf(https_route, _ORIGIN_VERIFY_VALUE,
                                        pulumi.Output.secret(args.edge.verify_value))
            route = custom("https-route", https_route, depends_on=[app_ns, self.gateway, *crds])
        custom("redirect-route", render.redirect_route(app),
               depends_on=[app_ns, self.gateway, *crds])

        url = f"https://{app.domain}"
        # Resolves once the release and its route exist, so consumers wait for them.
        self.url = pulumi.Output.all(self.deployment.id, route.id).apply(lambda _: url)
        self.address = self.gateway.status.apply(_first_address)
        self.register_outputs({
            "url": self.url,
            "address": self.address,
            "namespace": self.namespace,
            "gatewayNamespace": self.gateway_namespace,
        })

    @staticmethod
    def _flagger_canary(app: render.KubernetesApp, analysis: flagger.Analysis,
                        args: KubernetesTargetArgs, custom: Any,
                        deps: list[pulumi.Resource]) -> CustomResource:
        """MetricTemplates and the Canary; Flagger makes the HTTPS route from it."""
        templates = [custom(f"metric-{m['metadata']['name'].removeprefix(app.name + '-')}", m,
                            depends_on=deps)
                     for m in flagger.metric_templates(app.name, app.namespace,
                                                       render.common_labels(app), analysis)]
        manifest = render.flagger_canary(app, analysis, progress_deadline=args.rollout_timeout)
        if app.origin_verify_header is not None:
            assert args.edge is not None and args.edge.verify_value is not None
            manifest = with_leaf(manifest, ("spec", "service", "match", 0, "headers",
                                            app.origin_verify_header, "exact"),
                                 pulumi.Output.secret(args.edge.verify_value))
        return cast(CustomResource, custom("canary", manifest, depends_on=[*deps, *templates]))

    @staticmethod
    def _route53_credentials(app: render.KubernetesApp, acme: render.Acme,
                             args: KubernetesTargetArgs, apply: Any,
                             deps: Sequence[pulumi.Resource]) -> list[pulumi.Resource]:
        assert acme.route53 is not None
        issuer, labels = render.issuer_name(app, acme), render.common_labels(app)
        manifests = cert_manager.credentials(issuer, labels, acme.route53, "")
        if acme.route53.web_identity:
            roles = ("route53-service-account", "route53-token-role", "route53-token-binding")
            return [apply(role, m, depends_on=deps)
                    for role, m in zip(roles, manifests, strict=True)]
        [secret] = manifests

        def with_key(value: str) -> dict[str, str]:
            return {**secret["stringData"], cert_manager.SECRET_ACCESS_KEY_KEY: value}

        assert args.route53_secret_access_key is not None
        # A secret in, a secret out: apply keeps it one.
        data = pulumi.Output.secret(args.route53_secret_access_key).apply(with_key)
        return [apply("route53-credentials", secret, depends_on=deps, string_data=data)]

    def _opts(self, depends_on: Sequence[pulumi.Resource]) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider,
                                      depends_on=list(depends_on))

    def _helm(self, role: str, chart: versions.HelmChart, values: pulumi.Input[dict[str, Any]],
              depends_on: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
        return k8s.helm.v3.Release(
            f"{self._target_name}-{role}",
            name=chart.name,
            chart=chart.chart,
            version=chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository)
            if chart.repository else None,
            namespace=chart.name,
            create_namespace=True,
            values=values,
            atomic=True,
            cleanup_on_fail=True,
            timeout=600,
            opts=self._opts(depends_on),
        )
