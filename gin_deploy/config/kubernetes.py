"""`kind: kubernetes`: the service on one cluster, behind NGINX Gateway Fabric."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from gin_deploy.config.checks import cidrs, dns_name
from gin_deploy.config.image import ImageConfig, image_doc
from gin_deploy.config.schema import (
    NAMESPACE,
    Check,
    ParseContext,
    Problems,
    fill,
    require_secret,
    spec_field,
)
from gin_deploy.config.target import TargetBase
from gin_deploy.config.tls import DNS_01_ROUTE53, shared_domain

if TYPE_CHECKING:
    from gin_deploy.config.edge import EdgeConfig
    from gin_deploy.config.stack import StackConfig

_IMAGE_VERSION = re.compile(r"sha256:[0-9a-f]{64}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")
_ZONE_ID = re.compile(r"Z[A-Z0-9]{1,31}")
_SCALE = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def parse_quantity(value: str) -> float | None:
    """A Kubernetes quantity ('250m', '64Mi', '1.5', '1G') as a number, or None."""
    match = _QUANTITY.fullmatch(value)
    return float(match[1]) * _SCALE[match[2]] if match else None


def _quantity(example: str) -> Check:
    def check(value: str) -> str | None:
        number = parse_quantity(value)
        if number is None or number <= 0:
            return f"must be a positive Kubernetes quantity like {example}, got {value!r}"
        return None
    return check


def _rollout_amount(value: str) -> str | None:
    if re.fullmatch(r"\d+%?", value):
        return None
    return f"must be a count or a percentage like 25%, got {value!r}"


def _namespace(value: str) -> str | None:
    if message := dns_name(value):
        return message
    if "." in value or len(value) > 63:
        return f"must be a DNS label (no dots, at most 63 chars), got {value!r}"
    return None


def _image_version(value: str) -> str | None:
    if not value or _IMAGE_VERSION.fullmatch(value):
        return None
    return ("must be an image tag (A-Z a-z 0-9 _ . -, at most 128 chars) or a digest "
            f"sha256:<64 hex>, got {value!r}")


def _prometheus_url(value: str) -> str | None:
    if re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        return None
    return ("must be the http(s) URL of a Prometheus server, e.g. "
            f"http://prometheus.monitoring:9090, got {value!r}")


def _matches(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: str) -> str | None:
        return None if pattern.fullmatch(value) else f"must be {what}, got {value!r}"
    return check


@dataclass(frozen=True)
class Route53Config:
    role_arn: str | None = spec_field(
        "roleArn", "IAM role cert-manager assumes. Alone: by web identity with a token of "
        "a ServiceAccount the target makes (IRSA; the role trusts the cluster's OIDC "
        "provider for system:serviceaccount:cert-manager:<gatewayNamespace>-route53, "
        "audience sts.amazonaws.com); with an access key: assumed with that key.", None,
        check=_matches(_ROLE_ARN, "an IAM role ARN (arn:aws:iam::<account>:role/<name>)"))
    access_key_id: str | None = spec_field(
        "accessKeyId", "Access key id of an IAM user that may change the zone's records "
        "(with secretAccessKey).", None,
        check=_matches(_ACCESS_KEY_ID, "an AWS access key id (AKIA...)"))
    secret_access_key: str | None = spec_field("secretAccessKey", "Its secret access key "
                                               "(must be a secret).", None)
    hosted_zone_id: str | None = spec_field(
        "hostedZoneId", "The Route 53 zone's id: cert-manager then changes only that zone "
        "and needs no route53:ListHostedZonesByName.", None,
        check=_matches(_ZONE_ID, "a Route 53 hosted zone id (Z...)"))

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            problems.add(f"{path}.{'secretAccessKey' if self.access_key_id else 'accessKeyId'}",
                         "accessKeyId and secretAccessKey go together")
        if not (self.role_arn or self.access_key_id):
            problems.add(path, "set roleArn (a role cert-manager assumes by web identity, "
                         "IRSA) or accessKeyId with secretAccessKey")
        if self.secret_access_key:
            require_secret(ctx, path, "secretAccessKey", problems)


@dataclass(frozen=True)
class CanaryConfig:
    version: str = spec_field("version", "Version (image tag) of the canary release.",
                              check=_image_version)
    weight: int = spec_field("weight", "Percent of traffic to the canary.", 0, min=0, max=100)


@dataclass(frozen=True)
class RegistryConfig:
    server: str = spec_field("server", "Image repository, e.g. ghcr.io/acme/hello-gin.")
    username: str | None = spec_field("username", "Registry user.", None)
    password: str | None = spec_field("password", "Registry password (must be a secret).", None)


@dataclass(frozen=True)
class KubernetesTargetConfig(TargetBase):
    acme_certificates: ClassVar[bool] = True
    context: str | None = spec_field("context", "kubeconfig context of the cluster.", None)
    kubeconfig: str | None = spec_field("kubeconfig", "kubeconfig contents (must be a "
                                        "secret).", None)
    kubeconfig_path: str | None = spec_field("kubeconfigPath", "kubeconfig file on the "
                                             "deploying machine.", None)
    # namespace and gatewayNamespace are resolved by the stack parse, maxReplicas at
    # construction.
    namespace: str = spec_field("namespace", "Namespace (default: the app name).", None,
                                check=_namespace)
    replicas: int = spec_field("replicas", "Replicas (the HPA minimum).", 2, min=1, max=1000)
    max_replicas: int = spec_field("maxReplicas", "HPA maximum (default 3 x "
                                   "replicas).", None, min=1, max=1000)
    canary: CanaryConfig | None = spec_field("canary", "Canary release split by HTTPRoute "
                                             "weights.", None)
    registry: RegistryConfig | None = spec_field(
        "registry", "Registry the image is pushed to for this cluster (required unless an "
        "image is given; with one: its pull credentials and the canary's repository).", None)
    image: ImageConfig | None = spec_field("image", image_doc("default: app.image"), None)
    max_surge: str = spec_field("maxSurge", "Rolling update: extra pods during a rollout (a "
                                "count or a percentage).", "1",
                                check=_rollout_amount)
    max_unavailable: str = spec_field("maxUnavailable", "Rolling update: pods that may be "
                                      "unavailable during a rollout (a count or a percentage).",
                                      "0", check=_rollout_amount)
    rollout_timeout: int = spec_field(
        "rolloutTimeout", "Seconds `pulumi up` waits for a rollout (the new pods Ready) "
        "before it fails; the old ReplicaSet keeps serving meanwhile and after.", 600,
        min=30, max=3600)
    cpu_request: str = spec_field("cpuRequest", "CPU request per pod (Kubernetes quantity).",
                                  "100m", check=_quantity("250m"))
    cpu_limit: str = spec_field("cpuLimit", "CPU limit per pod.", "500m",
                                check=_quantity("1"))
    memory_request: str = spec_field("memoryRequest", "Memory request per pod.", "64Mi",
                                     check=_quantity("64Mi"))
    memory_limit: str = spec_field("memoryLimit", "Memory limit per pod.", "128Mi",
                                   check=_quantity("256Mi"))
    cpu_target: int = spec_field("cpuTarget", "HPA target: average CPU use, percent of the "
                                 "request.", 70, min=10, max=100)
    memory_target: int = spec_field("memoryTarget", "HPA target: average memory use, percent of "
                                    "the request.", 80, min=10, max=100)
    pre_stop_sleep: int = spec_field("preStopSleep", "Seconds a stopping pod keeps serving "
                                     "while the gateway stops sending to it (the grace period "
                                     "adds app.shutdownTimeout).", 5, min=0, max=60)
    network_policy: bool = spec_field("networkPolicy", "NetworkPolicy: the app's pods accept "
                                      "traffic only from the gateway's namespace.", True)
    install_gateway: bool = spec_field("installGateway", "Install NGINX Gateway Fabric and the "
                                       "Gateway API CRDs (Helm); false reuses gatewayClassName.",
                                       True)
    install_cert_manager: bool = spec_field("installCertManager", "Install cert-manager (Helm); "
                                            "false reuses the cluster's.", True)
    install_flagger: bool = spec_field("installFlagger", "Install Flagger (Helm) when the "
                                       "release strategy is canary or blueGreen; false reuses "
                                       "the cluster's.", True)
    prometheus_url: str | None = spec_field(
        "prometheusUrl", "Prometheus server that scrapes the app's pods (with `namespace` and "
        "`pod` labels): Flagger's analysis of a canary or blueGreen release reads the "
        "service's metrics there (required unless the strategy is rolling or "
        "release.bakeSeconds is 0).", None, check=_prometheus_url)
    gateway_class_name: str = spec_field("gatewayClassName", "GatewayClass of the Gateway.",
                                         "nginx", check=dns_name)
    gateway_namespace: str = spec_field("gatewayNamespace", "Namespace of the Gateway, "
                                        "its NGINX pods and certificate (default: "
                                        "namespace + `-gateway`).", None, check=_namespace)
    trusted_proxies: tuple[str, ...] = spec_field(
        "trustedProxies", "CIDRs of the load balancer in front of the gateway whose client "
        "address NGINX trusts (see clientIpMode).", (), check=cidrs)
    client_ip_mode: str = spec_field("clientIpMode", "How that load balancer passes the client "
                                     "address.", "XForwardedFor",
                                     choices=("XForwardedFor", "ProxyProtocol"))
    wait_for_address: bool = spec_field("waitForAddress", "Wait until the gateway's load "
                                        "balancer has an address (false on clusters without "
                                        "one).", True)
    route53: Route53Config | None = spec_field(
        "route53", "AWS credentials cert-manager answers DNS-01 challenges in Route 53 with "
        "(required with tls.acme.challenge dns-01-route53).", None)

    def __post_init__(self) -> None:
        fill(self, max_replicas=3 * self.replicas)

    @property
    def dns01_credentials(self) -> bool:
        return self.route53 is not None

    @property
    def canary_weight(self) -> int:
        """Percent of traffic to the canary; 0 when there is none."""
        return self.canary.weight if self.canary else 0

    def resolve(self, cfg: StackConfig) -> Self:
        namespace = self.namespace or cfg.app.name
        return replace(self, namespace=namespace,
                       gateway_namespace=self.gateway_namespace or f"{namespace}-gateway",
                       image=self.image or cfg.app.image)

    @property
    def scale(self) -> int:
        return self.replicas

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        # namespace and gatewayNamespace are still as written here (None when unset).
        if self.kubeconfig and self.kubeconfig_path:
            problems.add(path, "set only one of kubeconfig, kubeconfigPath (context may "
                         "select a context in either)")
        if not (self.context or self.kubeconfig or self.kubeconfig_path):
            problems.add(f"{path}.context", "one of context, kubeconfig (secret) or "
                         "kubeconfigPath is required: a target never deploys to whatever the "
                         "current kubeconfig context happens to be")
        if self.kubeconfig:
            require_secret(ctx, path, "kubeconfig", problems)
        if self.kubeconfig_path and not Path(self.kubeconfig_path).expanduser().is_file():
            problems.add(f"{path}.kubeconfigPath",
                         f"file {self.kubeconfig_path!r} does not exist")
        if self.registry and self.registry.password:
            require_secret(ctx, path, "registry.password", problems)
        if self.max_replicas < self.replicas:
            problems.add(f"{path}.maxReplicas", f"must be >= replicas ({self.replicas})")
        if self.namespace and not self.gateway_namespace and len(self.namespace) > 55:
            problems.add(f"{path}.gatewayNamespace", "is required when namespace is longer "
                         "than 55 chars (the default appends '-gateway')")
        if self.gateway_namespace and self.gateway_namespace == self.namespace:
            problems.add(f"{path}.gatewayNamespace", "must differ from namespace (the app's "
                         "namespace enforces the restricted Pod Security Standard)")
        if all(v.rstrip("%") == "0" for v in (self.max_surge, self.max_unavailable)):
            problems.add(f"{path}.maxUnavailable", "maxSurge and maxUnavailable cannot both "
                         "be 0 (a rollout could never progress)")
        for kind, request, limit in (("cpu", self.cpu_request, self.cpu_limit),
                                     ("memory", self.memory_request, self.memory_limit)):
            if (parse_quantity(request) or 0) > (parse_quantity(limit) or 0):
                problems.add(f"{path}.{kind}Limit", f"{limit} is below {kind}Request {request}")
        if self.client_ip_mode == "ProxyProtocol" and not self.trusted_proxies:
            problems.add(f"{path}.trustedProxies", "is required with clientIpMode ProxyProtocol "
                         "(the addresses of the load balancer that sends it)")

    @property
    def by_flagger(self) -> bool:
        """Flagger runs the release (canary or blueGreen); rolling is the Deployment's."""
        return self.release.strategy in ("canary", "blueGreen")

    def check_release(self, path: str, problems: Problems) -> None:
        """What the resolved release needs (its strategy may come from the stack's)."""
        if not self.by_flagger:
            return
        strategy = self.release.strategy
        if self.canary is not None:
            problems.add(f"{path}.canary", f"a static canary weight applies only with release "
                         f"strategy rolling; with {strategy} Flagger moves the traffic step by "
                         "step (remove canary, or set release.strategy: rolling)")
        if self.release.bake_seconds and not self.prometheus_url:
            problems.add(f"{path}.prometheusUrl", f"is required with release strategy "
                         f"{strategy} (Flagger judges each step on the service's metrics in "
                         "this Prometheus); or set release.strategy: rolling, or "
                         "release.bakeSeconds: 0 for readiness only")

    @classmethod
    def check_kind(cls, cfg: StackConfig, members: Sequence[tuple[int, TargetBase]],
                   problems: Problems) -> None:
        for i, target in members:
            assert isinstance(target, KubernetesTargetConfig)
            # (After resolve: app.image counts.)
            if target.registry is None and target.image is None:
                problems.add(f"{NAMESPACE}:targets[{i}].registry", "is required for "
                             "kubernetes targets (the image repository the cluster pulls "
                             "from, e.g. {server: ghcr.io/acme/hello-gin}) unless an existing "
                             "image is given (app.image or the target's image)")
        for i, target in members:
            assert isinstance(target, KubernetesTargetConfig)
            target.check_release(f"{NAMESPACE}:targets[{i}]", problems)
        if f"{NAMESPACE}:tls" in problems.incomplete:
            return  # the challenge is not known: tls itself was rejected
        acme = cfg.tls.acme if cfg.tls.mode == "acme" else None
        dns01 = acme is not None and acme.challenge == DNS_01_ROUTE53
        for i, target in members:
            assert isinstance(target, KubernetesTargetConfig)
            path = f"{NAMESPACE}:targets[{i}].route53"
            if dns01 and target.route53 is None:
                problems.add(path, "is required with tls.acme.challenge dns-01-route53 (the "
                             "stack's default with several targets or edge.cdn): roleArn, or "
                             "accessKeyId with secretAccessKey, for cert-manager's Route 53 "
                             "solver")
            elif target.route53 is not None and not dns01 and not shared_domain(cfg):
                # (Where the domain is shared, tls.acme.challenge is the problem.)
                problems.add(path, "only applies with tls.acme.challenge dns-01-route53")

    def check_edge(self, edge: EdgeConfig, domain: str, path: str, problems: Problems) -> None:
        super().check_edge(edge, domain, path, problems)
        if not self.wait_for_address:
            problems.add(f"{path}.waitForAddress", "must be true with edge routing (its "
                         "records point at the gateway's address)")
        if self.client_ip_mode == "ProxyProtocol" and edge.cdn:
            problems.add(f"{path}.clientIpMode", "ProxyProtocol would name CloudFront as "
                         "the client; behind edge.cdn use XForwardedFor (CloudFront's "
                         "addresses are trusted automatically)")
