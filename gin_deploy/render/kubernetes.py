"""Kubernetes manifests of the `kubernetes` target: pure functions of plain values.

Each function returns one object as a plain dict, exactly as the API server
receives it. `KubernetesTarget` passes the very same dicts to pulumi-kubernetes
(setting the few values that are Outputs - the image digest, auto-generated
Secret names - at their leaves), and the render tests validate them offline
against the Kubernetes OpenAPI schemas, the pinned Gateway API and cert-manager
CRD schemas, and checkov. Nothing here talks to a cluster or to Pulumi.

Layout per target (see docs/kubernetes.md):
  <namespace>          the app: Deployment(s), Services, HPA, PDB, NetworkPolicy,
                       Secrets, HTTPRoutes; Pod Security `restricted` enforced.
  <gatewayNamespace>   the Gateway, the NGINX pods NGINX Gateway Fabric runs for
                       it, and its certificate; Pod Security `baseline` enforced
                       (`restricted` warned and audited).
  cluster              a ClusterIssuer for that certificate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gin_deploy.render import cert_manager, flagger

Manifest = dict[str, Any]

# The image contract of app/Dockerfile: a static binary in `scratch` as this user.
RUN_AS_USER = 65532
SERVICE_PORT = 80
CONTAINER_NAME = "app"
TRACK_LABEL = "gin-deploy/track"
NAME_LABEL = "app.kubernetes.io/name"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = f"{GATEWAY_GROUP}/v1"
CERT_MANAGER_API_VERSION = "cert-manager.io/v1"
# Private address ranges: where in-cluster gateway pods connect from.
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                    "fc00::/7")


@dataclass(frozen=True)
class KubernetesApp:
    """Everything the manifests depend on, as plain values (defaults documented in config)."""

    name: str
    namespace: str
    gateway_namespace: str
    domain: str
    version: str
    port: int = 8080
    health_path: str = "/healthz"
    ready_path: str = "/readyz"
    env: Mapping[str, str] = field(default_factory=dict)
    shutdown_timeout: int = 10
    # The app's IDLE_TIMEOUT and WRITE_TIMEOUT, seconds (docs/ecs.md#timeouts).
    idle_timeout: int = 60
    write_timeout: int = 30
    trusted_proxies: tuple[str, ...] = ()   # of the app: who may set X-Forwarded-For
    replicas: int = 2
    max_replicas: int = 6
    max_surge: str = "1"
    max_unavailable: str = "0"
    cpu_request: str = "100m"
    cpu_limit: str = "500m"
    memory_request: str = "64Mi"
    memory_limit: str = "128Mi"
    cpu_target: int = 70
    memory_target: int = 80
    pre_stop_sleep: int = 5
    gateway_class_name: str = "nginx"
    wait_for_address: bool = True
    hsts: str = "max-age=63072000; includeSubDomains"
    # Edge routing: more names the gateway answers (the target's own name at the edge) ...
    extra_names: tuple[str, ...] = ()
    # ... and behind a CDN the origin lock: HTTPS requests must carry this header with the
    # CDN's secret value; `origin_open_path` (the health check's) is exempt.
    origin_verify_header: str | None = None
    origin_open_path: str | None = None

    @property
    def hostnames(self) -> list[str]:
        return list(dict.fromkeys((self.domain, *self.extra_names)))

    def listener_names(self, scheme: str) -> list[str]:
        """`http`/`https` for the domain, `<scheme>-<n>` for each extra name."""
        return [scheme if i == 0 else f"{scheme}-{i}" for i in range(len(self.hostnames))]

    @property
    def tls_secret_name(self) -> str:
        return f"{self.name}-tls"

    @property
    def termination_grace_period(self) -> int:
        """preStop sleep + the app's drain + headroom: a stop never cuts a request short."""
        return self.pre_stop_sleep + self.shutdown_timeout + 5

    def deployment_name(self, track: str) -> str:
        return self.name if track == "stable" else f"{self.name}-{track}"


def _int_or_percent(value: str) -> int | str:
    """'1' -> 1, '25%' -> '25%' (IntOrString: a bare string must be a percentage)."""
    return value if value.endswith("%") else int(value)


def common_labels(app: KubernetesApp) -> dict[str, str]:
    return {NAME_LABEL: app.name, "app.kubernetes.io/managed-by": "gin-deploy"}


def selector_labels(app: KubernetesApp, track: str) -> dict[str, str]:
    return {NAME_LABEL: app.name, TRACK_LABEL: track}


def _meta(app: KubernetesApp, name: str | None, namespace: str | None = None,
          **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if name is not None:
        meta["name"] = name
    meta["namespace"] = namespace if namespace is not None else app.namespace
    meta["labels"] = common_labels(app)
    meta.update(extra)
    return meta


# --- namespaces -----------------------------------------------------------------


def namespace(app: KubernetesApp, name: str, enforce: str) -> Manifest:
    """A namespace enforcing a Pod Security Standard; `restricted` always warned/audited."""
    labels = {
        **common_labels(app),
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest",
    }
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}}


def app_namespace(app: KubernetesApp) -> Manifest:
    return namespace(app, app.namespace, "restricted")


def gateway_namespace(app: KubernetesApp) -> Manifest:
    # NGINX Gateway Fabric's data-plane pods set the `ip_unprivileged_port_start`
    # sysctl and an init container without allowPrivilegeEscalation: false, which
    # `baseline` admits and `restricted` does not.
    return namespace(app, app.gateway_namespace, "baseline")


# --- the workload -----------------------------------------------------------------


def app_env(app: KubernetesApp) -> dict[str, str]:
    """Plain env of every pod (PORT and INSTANCE_ID are set per pod by the Deployment)."""
    env = {
        "GIN_MODE": "release",
        "SHUTDOWN_TIMEOUT": f"{app.shutdown_timeout}s",
        "IDLE_TIMEOUT": f"{app.idle_timeout}s",
        "WRITE_TIMEOUT": f"{app.write_timeout}s",
        "TRUSTED_PROXIES": ",".join(app.trusted_proxies or PRIVATE_NETWORKS),
    }
    env.update(app.env)
    return env


def service_account(app: KubernetesApp) -> Manifest:
    """The pods' own identity: no API access, no token."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(app, app.name),
            "automountServiceAccountToken": False}


def env_secret(app: KubernetesApp, data: Mapping[str, str], name: str | None = None) -> Manifest:
    """app.secretEnv values; immutable, so a change makes a new Secret and rolls the pods."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(app, name),
            "type": "Opaque", "immutable": True, "stringData": dict(data)}


def dockerconfigjson(server: str, username: str, password: str) -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": username, "password": password,
                                          "auth": auth}}}, sort_keys=True)


def registry_secret(app: KubernetesApp, config_json: str, name: str | None = None) -> Manifest:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(app, name),
            "type": "kubernetes.io/dockerconfigjson", "immutable": True,
            "stringData": {".dockerconfigjson": config_json}}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
            "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures}


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(
    app: KubernetesApp,
    *,
    track: str = "stable",
    image: str,
    version: str,
    pinned: bool = False,
    replicas: int | None = None,
    env_secret_name: str | None = None,
    pull_secret_name: str | None = None,
) -> Manifest:
    """One track of the app. `replicas` None leaves the count to the HPA (stable).

    `pinned`: `image` is (or will be set to) a repo digest, even if not spelled so here.
    """
    selector = selector_labels(app, track)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        # A digest never changes: pull once. A tag (a canary) may move: always pull.
        "imagePullPolicy": "IfNotPresent" if pinned or "@sha256:" in image else "Always",
        "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
        "env": [
            {"name": "PORT", "value": str(app.port)},
            {"name": "INSTANCE_ID",
             "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            *({"name": k, "value": v} for k, v in sorted(app_env(app).items())),
        ],
        "startupProbe": _probe(app.health_path, period=2, failures=30),
        "readinessProbe": _probe(app.ready_path, period=5, failures=2),
        "livenessProbe": _probe(app.health_path, period=10, failures=3),
        "resources": {
            "requests": {"cpu": app.cpu_request, "memory": app.memory_request},
            "limits": {"cpu": app.cpu_limit, "memory": app.memory_limit},
        },
        "securityContext": _security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if env_secret_name is not None:
        container["envFrom"] = [{"secretRef": {"name": env_secret_name}}]
    if app.pre_stop_sleep:
        # The gateway keeps sending until it sees the endpoint go; the image has no
        # shell, so the kubelet sleeps (lifecycle sleep action, Kubernetes 1.30+).
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": app.pre_stop_sleep}}}
    spread = [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": selector}, "matchLabelKeys": ["pod-template-hash"]}
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": app.name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": app.termination_grace_period,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": spread,
        "containers": [container],
    }
    if pull_secret_name is not None:
        pod_spec["imagePullSecrets"] = [{"name": pull_secret_name}]
    spec: dict[str, Any] = {
        "revisionHistoryLimit": 5,
        "minReadySeconds": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": _int_or_percent(app.max_surge),
            "maxUnavailable": _int_or_percent(app.max_unavailable),
        }},
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": {**common_labels(app), **selector,
                                    "app.kubernetes.io/version": _label_value(version)}},
            "spec": pod_spec,
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(app, app.deployment_name(track)), "spec": spec}


def _label_value(text: str) -> str:
    """A valid label value: at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_"
                      for c in text)[:63]
    return cleaned.strip("_.-") or "unknown"


def canary_replicas(app: KubernetesApp, weight: int) -> int:
    return max(1, -(-app.replicas * weight // 100))  # its share of the minimum, at least 1


def service(app: KubernetesApp, track: str = "stable") -> Manifest:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(app, app.deployment_name(track)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(app, track),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http",
                       "protocol": "TCP", "appProtocol": "http"}],
        },
    }


def horizontal_pod_autoscaler(app: KubernetesApp) -> Manifest:
    def metric(resource: str, target: int) -> dict[str, Any]:
        return {"type": "Resource", "resource": {
            "name": resource, "target": {"type": "Utilization", "averageUtilization": target}}}

    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(app, app.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": app.deployment_name("stable")},
            "minReplicas": app.replicas,
            "maxReplicas": app.max_replicas,
            "metrics": [metric("cpu", app.cpu_target), metric("memory", app.memory_target)],
        },
    }


def app_pods(app: KubernetesApp, by_flagger: bool = False) -> dict[str, Any]:
    """Every pod of the app (Flagger's primary pods have `<name>-primary` in NAME_LABEL)."""
    if not by_flagger:
        return {"matchLabels": {NAME_LABEL: app.name}}
    return {"matchExpressions": [{"key": NAME_LABEL, "operator": "In",
                                  "values": [app.name, flagger.primary_name(app.name)]}]}


def pod_disruption_budget(app: KubernetesApp, by_flagger: bool = False) -> Manifest:
    """Voluntary disruptions (node drains) take one pod at a time, stable and canary."""
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(app, app.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": app_pods(app, by_flagger),
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def network_policy(app: KubernetesApp, by_flagger: bool = False) -> Manifest:
    """The app's pods accept connections only from the gateway's namespace, on the app port."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(app, app.name),
        "spec": {
            "podSelector": app_pods(app, by_flagger),
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {
                    NAMESPACE_NAME_LABEL: app.gateway_namespace}}}],
                "ports": [{"protocol": "TCP", "port": app.port}],
            }],
        },
    }


# --- the edge: Gateway API --------------------------------------------------------------


def gateway(app: KubernetesApp) -> Manifest:
    """HTTP :80 (redirect + ACME HTTP-01) and HTTPS :443 with the cert-manager secret."""
    allowed = {"namespaces": {"from": "Selector", "selector": {"matchExpressions": [{
        "key": NAMESPACE_NAME_LABEL, "operator": "In",
        # The app's routes, and cert-manager's HTTP-01 routes next to the certificate.
        "values": sorted({app.namespace, app.gateway_namespace})}]}}}
    annotations = {}
    if app.wait_for_address:
        annotations["pulumi.com/waitFor"] = "jsonpath={.status.addresses[0].value}"
    metadata = _meta(app, app.name, app.gateway_namespace)
    if annotations:
        metadata["annotations"] = annotations
    listeners: list[dict[str, Any]] = []
    for http, https, hostname in zip(app.listener_names("http"), app.listener_names("https"),
                                     app.hostnames, strict=True):
        listeners += [
            {"name": http, "protocol": "HTTP", "port": 80, "hostname": hostname,
             "allowedRoutes": allowed},
            {"name": https, "protocol": "HTTPS", "port": 443, "hostname": hostname,
             "tls": {"mode": "Terminate", "certificateRefs": [
                 {"group": "", "kind": "Secret", "name": app.tls_secret_name}]},
             "allowedRoutes": allowed},
        ]
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "Gateway",
        "metadata": metadata,
        "spec": {"gatewayClassName": app.gateway_class_name, "listeners": listeners},
    }


def _parent(app: KubernetesApp, section: str) -> dict[str, Any]:
    return {"group": GATEWAY_GROUP, "kind": "Gateway", "name": app.name,
            "namespace": app.gateway_namespace, "sectionName": section}


def https_route(app: KubernetesApp, canary_weight: int = 0,
                origin_verify_value: str = "") -> Manifest:
    """All HTTPS traffic to the app, HSTS on every response, split by weight to a canary.

    With the origin lock (`app.origin_verify_header`), only requests carrying the header
    with `origin_verify_value`, or asking for `app.origin_open_path` exactly, match a
    rule; NGINX Gateway Fabric answers every other request itself (404, no rule matched)
    and it never reaches the app.
    """
    backends: list[dict[str, Any]] = [
        {"group": "", "kind": "Service", "name": app.deployment_name("stable"),
         "port": SERVICE_PORT, "weight": 100 - canary_weight}]
    if canary_weight:
        backends.append({"group": "", "kind": "Service", "name": app.deployment_name("canary"),
                         "port": SERVICE_PORT, "weight": canary_weight})
    match: dict[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}
    matches = [match]
    if app.origin_verify_header is not None:
        match["headers"] = [{"type": "Exact", "name": app.origin_verify_header,
                             "value": origin_verify_value}]
        if app.origin_open_path is not None:
            matches.append({"path": {"type": "Exact", "value": app.origin_open_path}})
    filters = [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "set": [{"name": "Strict-Transport-Security", "value": app.hsts}]}}]
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
        "metadata": _meta(app, app.name),
        "spec": {
            "parentRefs": [_parent(app, name) for name in app.listener_names("https")],
            "hostnames": app.hostnames,
            "rules": [{"matches": matches, "filters": filters, "backendRefs": backends}],
        },
    }


def flagger_canary(app: KubernetesApp, analysis: flagger.Analysis, *,
                   progress_deadline: int = 600, origin_verify_value: str = "") -> Manifest:
    """The Canary: Flagger makes the HTTPS route (hosts, HSTS, origin lock) with weights."""
    lock, open_path = app.origin_verify_header, app.origin_open_path
    matches: list[dict[str, Any]] = [] if lock is None else [
        {"uri": {"prefix": "/"}, "headers": {lock: {"exact": origin_verify_value}}},
        *([{"uri": {"exact": open_path}}] if open_path is not None else [])]
    return flagger.canary(
        name=app.name, namespace=app.namespace, labels=common_labels(app), port=SERVICE_PORT,
        gateway_refs=[_parent(app, name) for name in app.listener_names("https")],
        hosts=app.hostnames, matches=matches, analysis=analysis,
        response_headers={"Strict-Transport-Security": app.hsts},
        progress_deadline=progress_deadline)


def redirect_route(app: KubernetesApp) -> Manifest:
    """HTTP -> HTTPS, permanently. cert-manager's challenge routes (Exact paths) win."""
    return {
        "apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
        "metadata": _meta(app, f"{app.name}-redirect"),
        "spec": {
            "parentRefs": [_parent(app, name) for name in app.listener_names("http")],
            "hostnames": app.hostnames,
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [{"type": "RequestRedirect", "requestRedirect": {
                    "scheme": "https", "statusCode": 301}}],
            }],
        },
    }


# --- certificates: cert-manager ---------------------------------------------------------


@dataclass(frozen=True)
class Acme:
    email: str
    server: str
    ca_bundle_pem: str | None = None   # trust for a test ACME server (Pebble)
    route53: cert_manager.Route53Solver | None = None   # DNS-01 instead of HTTP-01


def issuer_name(app: KubernetesApp, acme: Acme | None) -> str:
    """Cluster-scoped, so named after the gateway namespace, unique in its cluster."""
    return f"{app.gateway_namespace}-{'acme' if acme else 'self-signed'}"


def cluster_issuer(app: KubernetesApp, acme: Acme | None) -> Manifest:
    """ACME solving HTTP-01 through this target's Gateway (DNS-01 in Route 53 with
    `acme.route53`), or self-signed without ACME."""
    spec: dict[str, Any]
    if acme is None:
        spec = {"selfSigned": {}}
    else:
        acme_spec: dict[str, Any] = {
            "email": acme.email,
            "server": acme.server,
            "privateKeySecretRef": {"name": f"{issuer_name(app, acme)}-account"},
            "solvers": [cert_manager.route53_solver(issuer_name(app, acme), acme.route53)
                        if acme.route53 else {"http01": {"gatewayHTTPRoute": {
                            "parentRefs": [_parent(app, n) for n in app.listener_names("http")]}}}],
        }
        if acme.ca_bundle_pem:
            acme_spec["caBundle"] = base64.b64encode(acme.ca_bundle_pem.encode()).decode()
        spec = {"acme": acme_spec}
    return {"apiVersion": CERT_MANAGER_API_VERSION, "kind": "ClusterIssuer",
            "metadata": {"name": issuer_name(app, acme), "labels": common_labels(app)},
            "spec": spec}


def certificate(app: KubernetesApp, acme: Acme | None) -> Manifest:
    """The Gateway's TLS secret, issued and renewed by cert-manager."""
    metadata = _meta(app, app.name, app.gateway_namespace)
    # Issuance completes only once DNS points at the gateway: do not block `pulumi up`.
    metadata["annotations"] = {"pulumi.com/skipAwait": "true"}
    return {
        "apiVersion": CERT_MANAGER_API_VERSION, "kind": "Certificate",
        "metadata": metadata,
        "spec": {
            "secretName": app.tls_secret_name,
            "dnsNames": app.hostnames,
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer",
                          "name": issuer_name(app, acme)},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "secretTemplate": {"labels": common_labels(app)},
        },
    }


# --- everything, for tests and `render_manifests` ----------------------------------------


def render_manifests(
    app: KubernetesApp,
    *,
    image: str,
    acme: Acme | None,
    canary_image: str | None = None,
    canary_version: str | None = None,
    canary_weight: int = 0,
    secret_env: Mapping[str, str] | None = None,
    pull_secret_config: str | None = None,
    network_policy_enabled: bool = True,
    origin_verify_value: str = "",
    route53_secret_access_key: str = "",
    analysis: flagger.Analysis | None = None,
) -> list[Manifest]:
    """Every object of one target in apply order, with the given plain values.

    With `analysis`, Flagger's Canary and MetricTemplates replace the Service, the static
    canary and the HTTPS HTTPRoute. The component creates the same objects; Secret names
    (Pulumi's there) are fixed here (`<app>-env`, `<app>-registry`).
    """
    by_flagger = analysis is not None
    env_name = f"{app.name}-env" if secret_env else None
    pull_name = f"{app.name}-registry" if pull_secret_config else None
    objects: list[Manifest] = [app_namespace(app), gateway_namespace(app), service_account(app)]
    if secret_env:
        objects.append(env_secret(app, secret_env, env_name))
    if pull_secret_config:
        objects.append(registry_secret(app, pull_secret_config, pull_name))
    stable = deployment(app, image=image, version=app.version,
                        env_secret_name=env_name, pull_secret_name=pull_name)
    # Under Flagger it is the canary target, and Flagger makes the Services.
    objects += [flagger.canary_target(stable)] if by_flagger else [stable, service(app)]
    objects += [horizontal_pod_autoscaler(app), pod_disruption_budget(app, by_flagger)]
    if canary_weight and canary_image and canary_version and not by_flagger:
        objects.append(deployment(app, track="canary", image=canary_image,
                                  version=canary_version,
                                  replicas=canary_replicas(app, canary_weight),
                                  env_secret_name=env_name, pull_secret_name=pull_name))
        objects.append(service(app, "canary"))
    if network_policy_enabled:
        objects.append(network_policy(app, by_flagger))
    if acme is not None and acme.route53 is not None:
        objects += cert_manager.credentials(issuer_name(app, acme), common_labels(app),
                                            acme.route53, route53_secret_access_key)
    objects += [cluster_issuer(app, acme), certificate(app, acme), gateway(app)]
    if analysis is None:
        return [*objects, https_route(app, canary_weight, origin_verify_value),
                redirect_route(app)]
    return [*objects, *flagger.metric_templates(app.name, app.namespace, common_labels(app),
                                                analysis),
            flagger_canary(app, analysis, origin_verify_value=origin_verify_value),
            redirect_route(app)]
