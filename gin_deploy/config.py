"""The stack config contract (namespace `gin-deploy`) as typed, validated values.

`load_stack_config()` reads `pulumi.Config("gin-deploy")` once, in `__main__.py`;
components never read config themselves. Every problem is reported at once with
its full key path, and the program stops with `ConfigError` before any resource
is registered.

Secrets: values that must be secret (an SSH private key, a kubeconfig, a
registry password) may only come from config stored encrypted — nested secrets
set with `pulumi config set --secret --path 'targets[2].privateKey'` — or from a
file path on the deploying machine; a plain value is an error. App secrets are
named in `app.secretEnv` and read from their own secret config keys.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pulumi
from pulumi.runtime import config as pulumi_config

from gin_deploy.schema import Problems, parse_value, spec_field

NAMESPACE = "gin-deploy"
TOP_LEVEL_KEYS = ("app", "domain", "tls", "targets", "edge")
TARGET_KINDS = ("host", "ecs", "kubernetes")

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Env vars the deploy tooling sets itself; users must not override them.
RESERVED_ENV = frozenset({"PORT", "BIND_ADDR", "INSTANCE_ID"})

# AWS Fargate task sizes: CPU units -> allowed memory (MiB).
FARGATE_SIZES: Mapping[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}


class ConfigError(pulumi.RunError):
    """Invalid stack config; the message lists every problem by key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid stack config ({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
            f"nothing was deployed:\n{lines}"
        )


# --- checks (return a message or None) ------------------------------------------


def is_dns_name(value: str) -> bool:
    if not value or len(value) > 253 or value.endswith("."):
        return False
    return all(_LABEL.match(label) for label in value.lower().split("."))


def _dns_name(value: str) -> str | None:
    if is_dns_name(value):
        return None
    return ("must be a valid DNS name (labels of a-z, 0-9 and '-', at most 253 chars), "
            f"got {value!r}")


def _resource_name(value: str) -> str | None:
    if _NAME.match(value):
        return None
    return f"must be 1-32 chars of a-z, 0-9 and '-', starting with a letter, got {value!r}"


def _abs_http_path(value: str) -> str | None:
    if value.startswith("/") and " " not in value and "?" not in value:
        return None
    return f"must be an absolute URL path starting with '/', got {value!r}"


def _env_map(value: dict[str, str]) -> str | None:
    bad = [k for k in value if not _ENV_NAME.match(k)]
    if bad:
        return f"env var names must match [A-Za-z_][A-Za-z0-9_]*, got {bad}"
    reserved = sorted(RESERVED_ENV & set(value))
    if reserved:
        return f"{reserved} are set by gin-deploy per instance and cannot be overridden"
    return None


def _env_names(value: tuple[str, ...]) -> str | None:
    bad = [k for k in value if not _ENV_NAME.match(k)]
    if bad:
        return f"names must be valid env var names, got {bad}"
    return None


def _cidrs(value: tuple[str, ...]) -> str | None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"must be a list of IP addresses or CIDRs, got {item!r}"
    return None


# CloudFront path patterns: '/', then letters, digits and _-.*$/~"'@:+ (? and * wildcards).
_PATH_PATTERN = re.compile(r"^/[A-Za-z0-9_\-.*$/~\"'@:+?&=]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
# Headers CloudFront does not let an origin custom header set (or that mean something else).
_RESERVED_HEADER_PREFIXES = ("x-amz-", "x-edge-", "cloudfront-", "x-forwarded-")
_RESERVED_HEADERS = frozenset({
    "accept-encoding", "authorization", "cache-control", "connection", "content-length",
    "cookie", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
    "if-unmodified-since", "max-forwards", "pragma", "proxy-authorization", "proxy-connection",
    "range", "request-range", "te", "trailer", "transfer-encoding", "upgrade", "via",
    "x-real-ip", "x-request-id"})
CLOUDFRONT_MAX_CACHE_BEHAVIORS = 25


def _path_patterns(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not _PATH_PATTERN.match(v) or len(v) > 255]
    if bad:
        return f"must be CloudFront path patterns starting with '/' (e.g. /static/*), got {bad}"
    if len(set(value)) != len(value):
        return "must not repeat a pattern"
    if len(value) > CLOUDFRONT_MAX_CACHE_BEHAVIORS:
        return f"at most {CLOUDFRONT_MAX_CACHE_BEHAVIORS} patterns (CloudFront cache behaviors)"
    return None


def _origin_header(value: str) -> str | None:
    lower = value.lower()
    if not _HEADER_NAME.match(value) or len(value) > 64:
        return f"must be a header name of letters, digits and single dashes, got {value!r}"
    if lower in _RESERVED_HEADERS or lower.startswith(_RESERVED_HEADER_PREFIXES):
        return f"{value!r} is a header CloudFront or the proxies set themselves; pick another name"
    return None


def _region(value: str) -> str | None:
    return None if _REGION.match(value) else f"must be a region name like us-east-1, got {value!r}"


def _email(value: str) -> str | None:
    return None if _EMAIL.match(value) else f"must be an email address, got {value!r}"


def _acme_server(value: str) -> str | None:
    url = urlparse(value)
    if url.scheme == "https" and url.hostname:
        return None
    if url.scheme == "http" and url.hostname in _LOCAL_HOSTS:
        return None  # a local test CA such as Pebble
    return f"must be an https:// ACME directory URL (http only for localhost), got {value!r}"


# --- the contract ---------------------------------------------------------------


@dataclass(frozen=True)
class AppConfig:
    name: str = spec_field("name", "Service name; prefixes resources.", "hello-gin",
                           check=_resource_name)
    source: str = spec_field("source", "Directory with go.mod (and a Dockerfile for image "
                             "targets), relative to the project.", "app")
    port: int = spec_field("port", "Port the service listens on in containers.", 8080,
                           min=1, max=65535)
    health_path: str = spec_field("healthPath", "Liveness endpoint.", "/healthz",
                                  check=_abs_http_path)
    ready_path: str = spec_field("readyPath", "Readiness endpoint; gates rollouts.", "/readyz",
                                 check=_abs_http_path)
    env: dict[str, str] = spec_field("env", "Plain env vars for the service.",
                                     default_factory=dict, check=_env_map)
    secret_env: tuple[str, ...] = spec_field(
        "secretEnv", "Names of secret config keys (`pulumi config set --secret NAME`) "
        "exposed to the service as env vars of the same name.", (), check=_env_names)
    version: str | None = spec_field("version", "Release version; default: a hash of the "
                                     "sources.", None)
    shutdown_timeout: int = spec_field("shutdownTimeout", "Seconds the service drains "
                                       "in-flight requests on SIGTERM; stop timeouts exceed it.",
                                       10, min=1, max=300)
    trusted_proxies: tuple[str, ...] = spec_field(
        "trustedProxies", "CIDRs whose X-Forwarded-For the service trusts (hosts: set to the "
        "loopback nginx automatically).", (), check=_cidrs)


@dataclass(frozen=True)
class AcmeConfig:
    email: str = spec_field("email", "Account email for the ACME CA.", check=_email)
    server: str = spec_field("server", "ACME directory URL (Let's Encrypt by default; "
                             "staging or any RFC 8555 server).",
                             "https://acme-v02.api.letsencrypt.org/directory",
                             check=_acme_server)
    ca_bundle: str | None = spec_field("caBundle", "PEM file trusted for the ACME server "
                                       "itself (test servers such as Pebble).", None)


@dataclass(frozen=True)
class HstsConfig:
    max_age: int = spec_field("maxAge", "Strict-Transport-Security max-age, seconds.",
                              63072000, min=0, max=2 * 63072000)
    include_subdomains: bool = spec_field("includeSubDomains", "Add includeSubDomains.", True)
    preload: bool = spec_field("preload", "Add preload (only if you submit the domain).", False)


@dataclass(frozen=True)
class TlsConfig:
    mode: str | None = spec_field("mode", "Host certificates: `self-signed` (a per-stack local "
                                  "CA) or `acme`; default `acme` when `acme` is set.", None,
                                  choices=("self-signed", "acme"))
    acme: AcmeConfig | None = spec_field("acme", "ACME account and server.", None)
    hsts: HstsConfig = spec_field("hsts", "HSTS header policy.", default_factory=HstsConfig)

    @property
    def effective_mode(self) -> str:
        return self.mode or ("acme" if self.acme else "self-signed")


@dataclass(frozen=True)
class CanaryConfig:
    version: str = spec_field("version", "Version (image tag) of the canary release.")
    weight: int = spec_field("weight", "Percent of traffic to the canary.", 0, min=0, max=100)


@dataclass(frozen=True)
class RegistryConfig:
    server: str = spec_field("server", "Image repository, e.g. ghcr.io/acme/hello-gin.")
    username: str | None = spec_field("username", "Registry user.", None)
    password: str | None = spec_field("password", "Registry password (must be a secret).", None)


@dataclass(frozen=True)
class TargetBase:
    name: str = spec_field("name", "Unique target name; prefixes its resources.",
                           check=_resource_name)
    kind: str = spec_field("kind", "Target kind.", choices=TARGET_KINDS)
    weight: int = spec_field("weight", "Share of traffic at the edge (0 = deployed, out of "
                             "rotation).", 1, min=0, max=255)
    region: str | None = spec_field("region", "Region (required by latency routing; ecs: the "
                                    "AWS region).", None, check=_region)


@dataclass(frozen=True)
class HostTargetConfig(TargetBase):
    connection: str = spec_field("connection", "How to reach the host.", "local",
                                 choices=("local", "ssh"))
    host: str | None = spec_field("host", "SSH address (ssh only).", None)
    user: str | None = spec_field("user", "SSH user (ssh only).", None)
    ssh_port: int = spec_field("sshPort", "SSH port.", 22, min=1, max=65535)
    private_key: str | None = spec_field("privateKey", "SSH private key (must be a secret).", None)
    private_key_path: str | None = spec_field("privateKeyPath", "SSH private key file on the "
                                              "deploying machine.", None)
    instances: int = spec_field("instances", "Instances of the service on the host.", 2,
                                min=1, max=64)
    supervisor: str = spec_field("supervisor", "Process supervisor.", "supervisord",
                                 choices=("supervisord", "systemd"))
    mode: str | None = spec_field("mode", "`user`: own nginx + supervisord as the login user on "
                                  "unprivileged ports; `system`: system nginx and services. "
                                  "Default: user for local, system for ssh.", None,
                                  choices=("user", "system"))
    base_port: int = spec_field("basePort", "Loopback port of the first instance; the rest "
                                "follow.", 9080, min=1024, max=65535)
    http_port: int | None = spec_field("httpPort", "nginx HTTP port (default 8080 user mode, "
                                       "80 system).", None, min=1, max=65535)
    https_port: int | None = spec_field("httpsPort", "nginx HTTPS port (default 8443 user mode, "
                                        "443 system).", None, min=1, max=65535)
    state_dir: str | None = spec_field("stateDir", "Where releases, configs and logs live on the "
                                       "host (default: per stack under ~/.local/state for "
                                       "user mode, /srv/gin-deploy/<app> for system).", None)
    install: bool = spec_field("install", "apt-get install missing nginx/supervisor/certbot "
                               "(Debian/Ubuntu hosts).", False)
    keep_releases: int = spec_field("keepReleases", "Releases kept for instant rollback.", 5,
                                    min=2, max=50)
    ready_timeout: int = spec_field("readyTimeout", "Seconds an instance may take to become "
                                    "ready in a rolling update.", 30, min=1, max=600)
    trusted_proxies: tuple[str, ...] = spec_field(
        "trustedProxies", "CIDRs of proxies in front of nginx whose X-Forwarded-For is "
        "trusted (e.g. a CDN).", (), check=_cidrs)

    @property
    def effective_mode(self) -> str:
        return self.mode or ("user" if self.connection == "local" else "system")

    @property
    def effective_http_port(self) -> int:
        return self.http_port or (8080 if self.effective_mode == "user" else 80)

    @property
    def effective_https_port(self) -> int:
        return self.https_port or (8443 if self.effective_mode == "user" else 443)

    @property
    def instance_ports(self) -> tuple[int, ...]:
        return tuple(range(self.base_port, self.base_port + self.instances))


@dataclass(frozen=True)
class EcsTargetConfig(TargetBase):
    cpu: int = spec_field("cpu", "Fargate CPU units.", 256, choices=tuple(FARGATE_SIZES))
    memory: int = spec_field("memory", "Fargate memory, MiB (must fit the CPU size).", 512)
    desired_count: int = spec_field("desiredCount", "Tasks to run.", 2, min=1, max=1000)
    min_count: int | None = spec_field("minCount", "Autoscaling minimum (default "
                                       "desiredCount).", None, min=1, max=1000)
    max_count: int | None = spec_field("maxCount", "Autoscaling maximum (default "
                                       "2 x desiredCount).", None, min=1, max=1000)
    arch: str = spec_field("arch", "CPU architecture of the tasks and image.", "amd64",
                           choices=("amd64", "arm64"))
    spot: int = spec_field("spot", "Percent of tasks on FARGATE_SPOT (0 = none; below 100 "
                           "one task always stays on FARGATE).", 0, min=0, max=100)
    # Network: a new VPC, or your own (vpcId + subnet ids).
    nat: str = spec_field("nat", "Egress for tasks: `none` runs them in public subnets with "
                          "public IPs (cheap dev), `single` one NAT gateway, `perAz` one per "
                          "AZ. With vpcId: `none` uses publicSubnetIds, else "
                          "privateSubnetIds.", "single", choices=("none", "single", "perAz"))
    az_count: int = spec_field("azCount", "Availability zones of the new VPC.", 3, min=2, max=3)
    vpc_cidr: str = spec_field("vpcCidr", "IPv4 CIDR of the new VPC (/16 to /20).",
                               "10.0.0.0/16", check=lambda v: _cidrs((v,)))
    vpc_id: str | None = spec_field("vpcId", "Existing VPC to use instead of a new one.", None,
                                    check=lambda v: None if v.startswith("vpc-")
                                    else f"must be a VPC id (vpc-...), got {v!r}")
    public_subnet_ids: tuple[str, ...] = spec_field(
        "publicSubnetIds", "With vpcId: subnets (2+ AZs) for the load balancer.", (),
        check=lambda v: None if all(s.startswith("subnet-") for s in v)
        else f"must be subnet ids (subnet-...), got {list(v)}")
    private_subnet_ids: tuple[str, ...] = spec_field(
        "privateSubnetIds", "With vpcId: subnets with NAT egress for the tasks.", (),
        check=lambda v: None if all(s.startswith("subnet-") for s in v)
        else f"must be subnet ids (subnet-...), got {list(v)}")
    ingress_cidrs: tuple[str, ...] = spec_field(
        "ingressCidrs", "Who may reach the load balancer on 80/443.", ("0.0.0.0/0",),
        check=_cidrs)
    # TLS and DNS.
    certificate_arn: str | None = spec_field(
        "certificateArn", "Existing ACM certificate (same region) instead of a new one.", None,
        check=lambda v: None if re.match(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/", v)
        else f"must be an ACM certificate ARN, got {v!r}")
    sans: tuple[str, ...] = spec_field(
        "sans", "Extra names on the new certificate (`*.` wildcards allowed).", (),
        check=lambda v: next((f"must be DNS names, got {s!r}" for s in v
                              if not is_dns_name(s.removeprefix("*."))), None))
    hosted_zone: str | None = spec_field(
        "hostedZone", "Route 53 public zone for certificate validation and the alias record "
        "(default: edge.zone, else the domain's parent).", None, check=_dns_name)
    # Load balancer.
    idle_timeout: int = spec_field("idleTimeout", "Load balancer idle timeout, seconds.", 60,
                                   min=1, max=4000)
    access_logs_bucket: str | None = spec_field(
        "accessLogsBucket", "Existing S3 bucket (with the ELB log delivery policy) for access "
        "logs.", None, check=lambda v: None if re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", v)
        else f"must be an S3 bucket name, got {v!r}")
    # Deployments and scaling.
    health_check_grace_seconds: int = spec_field(
        "healthCheckGraceSeconds", "Seconds new tasks may fail load balancer health checks.",
        30, min=0, max=3600)
    blue_green: bool = spec_field("blueGreen", "Native ECS blue/green deployments instead of "
                                  "rolling.", False)
    bake_minutes: int = spec_field("bakeMinutes", "Blue/green: minutes both versions stay "
                                   "before the old one is dropped (rollback window).", 5,
                                   min=0, max=1440)
    cpu_target: int = spec_field("cpuTarget", "Autoscaling: target average CPU percent.", 60,
                                 min=10, max=95)
    requests_per_target: int = spec_field("requestsPerTarget", "Autoscaling: target load "
                                          "balancer requests per task per minute.", 1000,
                                          min=1, max=1000000)
    # Images, logs, IAM.
    keep_images: int = spec_field("keepImages", "Images the ECR repository keeps.", 20,
                                  min=1, max=10000)
    log_retention_days: int = spec_field(
        "logRetentionDays", "CloudWatch Logs retention.", 30,
        choices=(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                 2192, 2557, 2922, 3288, 3653))
    task_policy_arns: tuple[str, ...] = spec_field(
        "taskPolicyArns", "IAM policies for a task role (default: no task role, so the app "
        "gets no AWS credentials).", (),
        check=lambda v: next((f"must be IAM policy ARNs, got {a!r}" for a in v
                              if not re.match(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/", a)),
                             None))

    def effective_zone(self, domain: str, edge_zone: str | None) -> str:
        """The Route 53 zone that holds `domain` for this target."""
        parent = domain.split(".", 1)[1] if domain.count(".") >= 2 else domain
        return self.hosted_zone or edge_zone or parent

    @property
    def scaling_bounds(self) -> tuple[int, int]:
        """(min, max) tasks for autoscaling."""
        return self.min_count or self.desired_count, self.max_count or 2 * self.desired_count


@dataclass(frozen=True)
class KubernetesTargetConfig(TargetBase):
    context: str | None = spec_field("context", "kubeconfig context of the cluster.", None)
    kubeconfig: str | None = spec_field("kubeconfig", "kubeconfig contents (must be a "
                                        "secret).", None)
    kubeconfig_path: str | None = spec_field("kubeconfigPath", "kubeconfig file on the "
                                             "deploying machine.", None)
    namespace: str | None = spec_field("namespace", "Namespace (default: the app name).", None,
                                       check=_dns_name)
    replicas: int = spec_field("replicas", "Replicas (the HPA minimum).", 2, min=1, max=1000)
    max_replicas: int | None = spec_field("maxReplicas", "HPA maximum (default 3 x "
                                          "replicas).", None, min=1, max=1000)
    canary: CanaryConfig | None = spec_field("canary", "Canary release split by HTTPRoute "
                                             "weights.", None)
    registry: RegistryConfig | None = spec_field("registry", "Registry the image is pushed to "
                                                 "for this cluster (required).", None)
    max_surge: str = spec_field("maxSurge", "Rolling update: extra pods during a rollout (a "
                                "count or a percentage).", "1")
    max_unavailable: str = spec_field("maxUnavailable", "Rolling update: pods that may be "
                                      "unavailable during a rollout (a count or a percentage).",
                                      "0")
    cpu_request: str = spec_field("cpuRequest", "CPU request per pod (Kubernetes quantity).",
                                  "100m")
    cpu_limit: str = spec_field("cpuLimit", "CPU limit per pod.", "500m")
    memory_request: str = spec_field("memoryRequest", "Memory request per pod.", "64Mi")
    memory_limit: str = spec_field("memoryLimit", "Memory limit per pod.", "128Mi")
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
    gateway_class_name: str = spec_field("gatewayClassName", "GatewayClass of the Gateway.",
                                         "nginx", check=_dns_name)
    gateway_namespace: str | None = spec_field("gatewayNamespace", "Namespace of the Gateway, "
                                               "its NGINX pods and certificate (default: "
                                               "namespace + `-gateway`).", None, check=_dns_name)
    trusted_proxies: tuple[str, ...] = spec_field(
        "trustedProxies", "CIDRs of the load balancer in front of the gateway whose client "
        "address NGINX trusts (see clientIpMode).", (), check=_cidrs)
    client_ip_mode: str = spec_field("clientIpMode", "How that load balancer passes the client "
                                     "address.", "XForwardedFor",
                                     choices=("XForwardedFor", "ProxyProtocol"))
    wait_for_address: bool = spec_field("waitForAddress", "Wait until the gateway's load "
                                        "balancer has an address (false on clusters without "
                                        "one).", True)

    def effective_namespace(self, app_name: str) -> str:
        return self.namespace or app_name

    def effective_gateway_namespace(self, app_name: str) -> str:
        return self.gateway_namespace or f"{self.effective_namespace(app_name)}-gateway"

    @property
    def effective_max_replicas(self) -> int:
        return self.max_replicas or 3 * self.replicas

    @property
    def canary_weight(self) -> int:
        """Percent of traffic to the canary; 0 when there is none."""
        return self.canary.weight if self.canary else 0

    @staticmethod
    def parse_quantity(value: str) -> float | None:
        """A Kubernetes quantity ('250m', '64Mi', '1.5', '1G') as a number, or None."""
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", value)
        if not match:
            return None
        scale = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                 "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}
        return float(match[1]) * scale[match[2]]


@dataclass(frozen=True)
class HealthCheckConfig:
    path: str | None = spec_field("path", "Path each HTTPS health check requests (default "
                                  "app.readyPath); behind the CDN the one path the origin "
                                  "lock lets through without the secret header.", None,
                                  check=_abs_http_path)
    interval: int = spec_field("interval", "Route 53 health check interval, seconds.", 30,
                               choices=(10, 30))
    failure_threshold: int = spec_field("failureThreshold", "Failures before unhealthy.", 3,
                                        min=1, max=10)


@dataclass(frozen=True)
class EdgeConfig:
    routing: str = spec_field("routing", "How Route 53 spreads users over targets: by "
                              "`weight`, by `region` (latency) or primary/secondary in "
                              "target order (failover).",
                              "weighted", choices=("weighted", "latency", "failover"))
    zone: str | None = spec_field("zone", "Route 53 hosted zone that holds the domain "
                                  "(required).", None, check=_dns_name)
    cdn: bool = spec_field("cdn", "Put CloudFront in front of the targets; their origins then "
                           "answer only CloudFront (403 otherwise).", False)
    health_check: HealthCheckConfig = spec_field("healthCheck", "Per-target health checks.",
                                                 default_factory=HealthCheckConfig)
    price_class: str = spec_field("priceClass", "CloudFront price class (which edge locations "
                                  "serve users).", "PriceClass_All",
                                  choices=("PriceClass_All", "PriceClass_200", "PriceClass_100"))
    cacheable_paths: tuple[str, ...] = spec_field(
        "cacheablePaths", "CloudFront path patterns safe to cache (GET/HEAD, the same response "
        "for every user), e.g. /static/*; nothing else is ever cached.", (),
        check=_path_patterns)
    cache_ttl: int = spec_field("cacheTtl", "Seconds cacheablePaths responses are cached when "
                                "the app sends no Cache-Control max-age.", 300,
                                min=1, max=31536000)
    origin_verify_header: str = spec_field(
        "originVerifyHeader", "Header carrying the random secret CloudFront adds to every "
        "origin request (the origin lock).", "X-Origin-Verify", check=_origin_header)

    def check_path(self, app: AppConfig) -> str:
        """The path health checks request (and the origin lock exempts)."""
        return self.health_check.path or app.ready_path


TargetConfig = HostTargetConfig | EcsTargetConfig | KubernetesTargetConfig
TARGET_CLASSES: Mapping[str, type[TargetConfig]] = {
    "host": HostTargetConfig,
    "ecs": EcsTargetConfig,
    "kubernetes": KubernetesTargetConfig,
}


@dataclass(frozen=True)
class StackConfig:
    project: str
    stack: str
    project_dir: Path
    app: AppConfig
    domain: str
    tls: TlsConfig
    targets: tuple[TargetConfig, ...]
    edge: EdgeConfig | None
    # Values of app.secretEnv, by env var name; only ever passed on as Pulumi secrets.
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)


# --- reading raw config ----------------------------------------------------------


@dataclass(frozen=True)
class RawValue:
    value: Any
    secret: bool


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_raw_config(namespace: str = NAMESPACE) -> dict[str, RawValue]:
    """Every key of the namespace with its decoded value and whether it is secret.

    Reads the engine-provided config directly so that keys we do not know (typos)
    can be reported, and secret-ness is known per top-level key.
    """
    raw: dict[str, RawValue] = {}
    prefix = f"{namespace}:"
    # The SDK offers per-key reads only; the key set is the engine-provided map
    # (set_all_config) plus the PULUMI_CONFIG environment fallback.
    keys = set(pulumi_config.CONFIG.get()) | set(pulumi_config.get_config_env())
    for full_key in sorted(keys):
        if full_key.startswith(prefix):
            text = pulumi_config.get_config(full_key)
            raw[full_key[len(prefix):]] = RawValue(
                _decode(text) if isinstance(text, str) else text,
                pulumi_config.is_config_secret(full_key),
            )
    return raw


def load_stack_config() -> StackConfig:
    """The validated config of the running stack; raises ConfigError."""
    return parse_stack_config(
        read_raw_config(),
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        project_dir=Path.cwd(),
    )


# --- parsing and cross-field rules ---------------------------------------------


def parse_stack_config(
    raw: Mapping[str, RawValue], *, project: str, stack: str, project_dir: Path
) -> StackConfig:
    problems = Problems()
    p = f"{NAMESPACE}:"

    app_raw = raw["app"].value if "app" in raw else {}
    app = parse_value(AppConfig, app_raw, f"{p}app", problems) or AppConfig()
    secret_env = _secret_env(app, raw, problems)
    allowed_keys = set(TOP_LEVEL_KEYS) | set(app.secret_env)
    for key in sorted(raw):
        if key not in allowed_keys:
            problems.add(f"{p}{key}", "unknown key (allowed: " + ", ".join(TOP_LEVEL_KEYS) +
                         ", and the secret keys named in app.secretEnv)")
    _check_source(app, project_dir, problems)

    domain = "localhost"
    if "domain" in raw:
        domain = parse_value(str, raw["domain"].value, f"{p}domain", problems) or domain
        if msg := _dns_name(domain):
            problems.add(f"{p}domain", msg)

    tls = parse_value(TlsConfig, raw["tls"].value if "tls" in raw else {}, f"{p}tls",
                      problems) or TlsConfig()
    if tls.mode == "acme" and tls.acme is None:
        problems.add(f"{p}tls.acme", "is required when tls.mode is acme (email and server)")
    if tls.acme and tls.acme.ca_bundle and not (project_dir / tls.acme.ca_bundle).is_file():
        problems.add(f"{p}tls.acme.caBundle", f"file {tls.acme.ca_bundle!r} does not exist")

    targets = _targets(raw.get("targets"), problems)
    edge = None
    # An empty edge object (the project default) means no edge routing.
    if "edge" in raw and raw["edge"].value not in (None, {}, ""):
        edge = parse_value(EdgeConfig, raw["edge"].value, f"{p}edge", problems)
    _cross_checks(app, secret_env, domain, tls, targets, edge, problems)

    if problems:
        raise ConfigError(problems.items)
    return StackConfig(project, stack, project_dir, app, domain, tls, targets, edge, secret_env)


def _secret_env(app: AppConfig, raw: Mapping[str, RawValue], problems: Problems) -> dict[str, str]:
    values: dict[str, str] = {}
    for i, name in enumerate(app.secret_env):
        path = f"{NAMESPACE}:app.secretEnv[{i}]"
        if name in app.env:
            problems.add(path, f"{name!r} is also a plain env var in app.env; keep it in one place")
        item = raw.get(name)
        if item is None:
            problems.add(path, f"secret config key '{NAMESPACE}:{name}' is not set; set it with "
                         f"`pulumi config set --secret {name}`")
        elif not item.secret:
            problems.add(path, f"config key '{NAMESPACE}:{name}' is stored in plain text; "
                         f"set it with `pulumi config set --secret {name}`")
        else:
            values[name] = item.value if isinstance(item.value, str) else json.dumps(item.value)
    return values


def _check_source(app: AppConfig, project_dir: Path, problems: Problems) -> None:
    source = project_dir / app.source
    if not (source / "go.mod").is_file():
        problems.add(f"{NAMESPACE}:app.source", f"{app.source!r} has no go.mod (a directory "
                     "with the Gin service, relative to the project)")


def _targets(item: RawValue | None, problems: Problems) -> tuple[TargetConfig, ...]:
    path = f"{NAMESPACE}:targets"
    if item is None or item.value in (None, [], ""):
        problems.add(path, "at least one target is required (kind: host | ecs | kubernetes)")
        return ()
    if not isinstance(item.value, list):
        problems.add(path, "must be a list of targets")
        return ()
    targets: list[TargetConfig] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(item.value):
        tpath = f"{path}[{i}]"
        if not isinstance(entry, dict):
            problems.add(tpath, "must be an object with name and kind")
            continue
        kind = entry.get("kind")
        if not isinstance(kind, str) or kind not in TARGET_CLASSES:
            problems.add(f"{tpath}.kind", f"must be one of {' | '.join(TARGET_KINDS)}, "
                         f"got {kind!r}")
            continue
        before = len(problems)
        target = parse_value(TARGET_CLASSES[kind], entry, tpath, problems)
        if len(problems) > before or target is None:
            continue
        if target.name in seen:
            problems.add(f"{tpath}.name", f"duplicate target name {target.name!r} "
                         f"(also targets[{seen[target.name]}])")
        seen.setdefault(target.name, i)
        _check_target(target, tpath, item.secret, problems)
        targets.append(target)
    return tuple(targets)


def _require_secret(path: str, field_name: str, targets_secret: bool, problems: Problems) -> None:
    if not targets_secret:
        problems.add(f"{path}.{field_name}", "must be a secret, not plain text: set it with "
                     f"`pulumi config set --secret --path '{path.split(':', 1)[1]}.{field_name}'`"
                     " (or use the *Path variant pointing at a file)")


def _check_target(t: TargetConfig, path: str, targets_secret: bool, problems: Problems) -> None:
    if isinstance(t, HostTargetConfig):
        _check_host(t, path, targets_secret, problems)
    elif isinstance(t, EcsTargetConfig):
        if t.region is None:
            problems.add(f"{path}.region", "is required for ecs targets (an AWS region)")
        if t.memory not in FARGATE_SIZES.get(t.cpu, ()):
            allowed = ", ".join(str(m) for m in FARGATE_SIZES[t.cpu])
            problems.add(f"{path}.memory", f"{t.memory} MiB is not a Fargate size for cpu "
                         f"{t.cpu}; allowed: {allowed}")
        lo, hi = t.scaling_bounds
        if lo > hi:
            problems.add(f"{path}.minCount", f"minCount {lo} exceeds maxCount {hi}")
        elif not lo <= t.desired_count <= hi:
            problems.add(f"{path}.desiredCount", f"{t.desired_count} is outside minCount.."
                         f"maxCount ({lo}..{hi})")
        if t.vpc_id is None:
            for key, value in (("publicSubnetIds", t.public_subnet_ids),
                               ("privateSubnetIds", t.private_subnet_ids)):
                if value:
                    problems.add(f"{path}.{key}", "only applies with vpcId (your own VPC)")
            net = ipaddress.ip_network(t.vpc_cidr, strict=False)
            if net.version != 4 or not 16 <= net.prefixlen <= 20:
                problems.add(f"{path}.vpcCidr", f"must be an IPv4 CIDR from /16 to /20, got "
                             f"{t.vpc_cidr!r}")
        else:
            if len(set(t.public_subnet_ids)) < 2:
                problems.add(f"{path}.publicSubnetIds", "with vpcId, at least two public "
                             "subnets (in different AZs) are required for the load balancer")
            if t.nat == "none" and t.private_subnet_ids:
                problems.add(f"{path}.privateSubnetIds", "unused with nat: none (tasks run in "
                             "the public subnets); remove it or set nat: single")
            if t.nat != "none" and not t.private_subnet_ids:
                problems.add(f"{path}.privateSubnetIds", "with vpcId, the tasks' subnets (with "
                             "NAT egress) are required, or set nat: none for public-IP tasks")
        if t.certificate_arn:
            if t.sans:
                problems.add(f"{path}.sans", "only applies to a new certificate, not with "
                             "certificateArn")
            arn_region = t.certificate_arn.split(":")[3]
            if t.region and arn_region != t.region:
                problems.add(f"{path}.certificateArn", f"is in {arn_region}; a load balancer "
                             f"in {t.region} needs a certificate from {t.region}")
    elif isinstance(t, KubernetesTargetConfig):
        if t.kubeconfig and t.kubeconfig_path:
            problems.add(path, "set only one of kubeconfig, kubeconfigPath (context may "
                         "select a context in either)")
        if not (t.context or t.kubeconfig or t.kubeconfig_path):
            problems.add(f"{path}.context", "one of context, kubeconfig (secret) or "
                         "kubeconfigPath is required: a target never deploys to whatever the "
                         "current kubeconfig context happens to be")
        if t.kubeconfig:
            _require_secret(path, "kubeconfig", targets_secret, problems)
        if t.kubeconfig_path and not Path(t.kubeconfig_path).expanduser().is_file():
            problems.add(f"{path}.kubeconfigPath", f"file {t.kubeconfig_path!r} does not exist")
        if t.registry and t.registry.password:
            _require_secret(path, "registry.password", targets_secret, problems)
        if t.max_replicas is not None and t.max_replicas < t.replicas:
            problems.add(f"{path}.maxReplicas", f"must be >= replicas ({t.replicas})")
        for ns_key, ns in (("namespace", t.namespace), ("gatewayNamespace", t.gateway_namespace)):
            if ns and ("." in ns or len(ns) > 63):
                problems.add(f"{path}.{ns_key}", f"must be a DNS label (no dots, at most 63 "
                             f"chars), got {ns!r}")
        if t.namespace and not t.gateway_namespace and len(t.namespace) > 55:
            problems.add(f"{path}.gatewayNamespace", "is required when namespace is longer "
                         "than 55 chars (the default appends '-gateway')")
        if t.gateway_namespace and t.gateway_namespace == t.namespace:
            problems.add(f"{path}.gatewayNamespace", "must differ from namespace (the app's "
                         "namespace enforces the restricted Pod Security Standard)")
        rollout = {"maxSurge": t.max_surge, "maxUnavailable": t.max_unavailable}
        for rollout_key, amount in rollout.items():
            if not re.fullmatch(r"\d+%?", amount):
                problems.add(f"{path}.{rollout_key}", f"must be a count or a percentage like "
                             f"25%, got {amount!r}")
        if all(v.rstrip("%") == "0" for v in rollout.values()):
            problems.add(f"{path}.maxUnavailable", "maxSurge and maxUnavailable cannot both "
                         "be 0 (a rollout could never progress)")
        for kind, request, limit in (("cpu", t.cpu_request, t.cpu_limit),
                                     ("memory", t.memory_request, t.memory_limit)):
            req, lim = t.parse_quantity(request), t.parse_quantity(limit)
            if req is None or req <= 0:
                problems.add(f"{path}.{kind}Request", f"must be a positive Kubernetes quantity "
                             f"like {'250m' if kind == 'cpu' else '64Mi'}, got {request!r}")
            if lim is None or lim <= 0:
                problems.add(f"{path}.{kind}Limit", f"must be a positive Kubernetes quantity "
                             f"like {'1' if kind == 'cpu' else '256Mi'}, got {limit!r}")
            if req and lim and req > lim:
                problems.add(f"{path}.{kind}Limit", f"{limit} is below {kind}Request {request}")
        if t.canary and t.canary.version and not re.fullmatch(
                r"sha256:[0-9a-f]{64}|[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", t.canary.version):
            problems.add(f"{path}.canary.version", "must be an image tag (A-Z a-z 0-9 _ . -, at "
                         f"most 128 chars) or a digest sha256:<64 hex>, got {t.canary.version!r}")
        if t.client_ip_mode == "ProxyProtocol" and not t.trusted_proxies:
            problems.add(f"{path}.trustedProxies", "is required with clientIpMode ProxyProtocol "
                         "(the addresses of the load balancer that sends it)")


def _check_host(t: HostTargetConfig, path: str, targets_secret: bool, problems: Problems) -> None:
    if t.connection == "ssh":
        if not t.host:
            problems.add(f"{path}.host", "is required when connection is ssh")
        if not t.user:
            problems.add(f"{path}.user", "is required when connection is ssh")
        if t.private_key and t.private_key_path:
            problems.add(path, "set only one of privateKey, privateKeyPath")
        if not (t.private_key or t.private_key_path):
            problems.add(f"{path}.privateKey", "an SSH key is required for ssh: privateKey "
                         "(secret) or privateKeyPath")
    else:
        for name, value in (("host", t.host), ("user", t.user), ("privateKey", t.private_key),
                            ("privateKeyPath", t.private_key_path)):
            if value:
                problems.add(f"{path}.{name}", "only applies to connection: ssh")
    if t.private_key:
        _require_secret(path, "privateKey", targets_secret, problems)
    if t.private_key_path and not Path(t.private_key_path).expanduser().is_file():
        problems.add(f"{path}.privateKeyPath", f"file {t.private_key_path!r} does not exist")
    if t.effective_mode == "user" and t.supervisor == "systemd":
        problems.add(f"{path}.supervisor", "systemd needs mode: system (user mode runs its own "
                     "supervisord)")
    ports = {"httpPort": t.effective_http_port, "httpsPort": t.effective_https_port}
    if t.effective_mode == "user":
        for key, port in ports.items():
            if port < 1024:
                problems.add(f"{path}.{key}", f"{port} needs root; user mode needs a port >= 1024")
    if t.effective_http_port == t.effective_https_port:
        problems.add(f"{path}.httpsPort", "must differ from httpPort")
    for key, port in ports.items():
        if port in t.instance_ports:
            problems.add(f"{path}.{key}", f"{port} collides with the instance ports "
                         f"{t.instance_ports[0]}-{t.instance_ports[-1]} (basePort + instances)")
    if t.instance_ports[-1] > 65535:
        problems.add(f"{path}.basePort", "basePort + instances exceeds 65535")


# Fargate stops a task at most 120 s after SIGTERM; the container's stop timeout
# must exceed the drain by a margin, so the drain must fit below it.
FARGATE_MAX_DRAIN_S = 115
SSM_MAX_SECRET_BYTES = 8192  # an Advanced-tier SSM parameter


def _ecs_app_checks(app: AppConfig, secret_env: Mapping[str, str], domain: str,
                    indexes: list[int], problems: Problems) -> None:
    p = f"{NAMESPACE}:"
    where = ", ".join(f"targets[{i}]" for i in indexes)
    if app.shutdown_timeout > FARGATE_MAX_DRAIN_S:
        problems.add(f"{p}app.shutdownTimeout", f"{app.shutdown_timeout}s does not fit Fargate's "
                     f"120 s stop timeout; ecs targets ({where}) need <= {FARGATE_MAX_DRAIN_S}")
    if "." not in domain:
        problems.add(f"{p}domain", f"ecs targets ({where}) need a public DNS name (a Route 53 "
                     f"record and an ACM certificate), got {domain!r}")
    for name, value in secret_env.items():
        if len(value.encode()) > SSM_MAX_SECRET_BYTES:
            problems.add(f"{p}{name}", f"secret is larger than the {SSM_MAX_SECRET_BYTES} bytes "
                         "an SSM parameter holds (ecs targets)")


def _cross_checks(
    app: AppConfig,
    secret_env: Mapping[str, str],
    domain: str,
    tls: TlsConfig,
    targets: tuple[TargetConfig, ...],
    edge: EdgeConfig | None,
    problems: Problems,
) -> None:
    p = f"{NAMESPACE}:"
    if targets and all(t.weight == 0 for t in targets):
        problems.add(f"{p}targets", "all weights are 0: at least one target must take traffic")
    ecs = [(i, t) for i, t in enumerate(targets) if isinstance(t, EcsTargetConfig)]
    if ecs:
        _ecs_app_checks(app, secret_env, domain, [i for i, _t in ecs], problems)
    for i, t in enumerate(targets):
        if isinstance(t, KubernetesTargetConfig) and t.registry is None:
            problems.add(f"{p}targets[{i}].registry", "is required for kubernetes targets (the "
                         "image repository the cluster pulls from, e.g. {server: "
                         "ghcr.io/acme/hello-gin})")
    for i, ecs_target in ecs:
        zone = ecs_target.effective_zone(domain, edge.zone if edge else None)
        for name in (domain, *(s.removeprefix("*.") for s in ecs_target.sans)):
            if name != zone and not name.endswith("." + zone):
                problems.add(f"{p}targets[{i}].hostedZone", f"{name!r} is not inside the Route "
                             f"53 zone {zone!r} (set hostedZone)")
    if edge is None and len(ecs) > 1:
        problems.add(f"{p}targets", f"{len(ecs)} ecs targets would each point {domain!r} at "
                     "their load balancer; add gin-deploy:edge to route across them")
    if edge is None:
        return
    _edge_checks(domain, targets, edge, problems)


ORIGIN_LABEL = "origin"


def routed_origin_name(domain: str) -> str:
    """With a CDN: the name CloudFront connects to, carrying the routing records."""
    return f"{ORIGIN_LABEL}.{domain}"


def target_origin_name(target: str, domain: str) -> str:
    """One target's own name: health checks and CloudFront failover reach it directly."""
    return f"{target}.{ORIGIN_LABEL}.{domain}"


def _edge_checks(domain: str, targets: tuple[TargetConfig, ...], edge: EdgeConfig,
                 problems: Problems) -> None:
    p = f"{NAMESPACE}:"
    if edge.zone is None:
        needs = "the Route 53 records and health checks"
        if edge.cdn:
            needs += ", CloudFront's alias and its certificate's DNS validation"
        problems.add(f"{p}edge.zone", f"is required for edge routing: the Route 53 hosted "
                     f"zone holding {domain!r} ({needs})")
    elif domain != edge.zone and not domain.endswith("." + edge.zone):
        problems.add(f"{p}domain", f"{domain!r} is not inside edge.zone {edge.zone!r}")
    elif domain == edge.zone and not edge.cdn:
        problems.add(f"{p}domain", f"{domain!r} is the zone apex; without cdn the routing "
                     "records for it are CNAMEs to each target's own name, which the apex "
                     "cannot hold: use a subdomain or set edge.cdn: true")
    if "." not in domain:
        problems.add(f"{p}domain", f"edge routing needs a public DNS name, got {domain!r}")
    for i, t in enumerate(targets):
        tpath = f"{p}targets[{i}]"
        if not is_dns_name(target_origin_name(t.name, domain)):
            problems.add(f"{tpath}.name", f"{target_origin_name(t.name, domain)!r} (the "
                         "target's own name at the edge) is not a valid DNS name; shorten it")
        if edge.routing == "latency" and t.region is None:
            problems.add(f"{tpath}.region", "is required with edge.routing latency (the AWS "
                         "region nearest the target: Route 53 measures latency to it)")
        if isinstance(t, HostTargetConfig):
            if t.connection != "ssh":
                problems.add(f"{tpath}.connection", "edge routing needs hosts reachable from "
                             "the internet: connection ssh with a public host address")
            if t.effective_https_port != 443:
                problems.add(f"{tpath}.httpsPort", f"{t.effective_https_port}: edge routing "
                             "sends users (and health checks) to port 443")
        if isinstance(t, KubernetesTargetConfig) and not t.wait_for_address:
            problems.add(f"{tpath}.waitForAddress", "must be true with edge routing (its "
                         "records point at the gateway's address)")
        if isinstance(t, KubernetesTargetConfig) and t.client_ip_mode == "ProxyProtocol" \
                and edge.cdn:
            problems.add(f"{tpath}.clientIpMode", "ProxyProtocol would name CloudFront as "
                         "the client; behind edge.cdn use XForwardedFor (CloudFront's "
                         "addresses are trusted automatically)")
        if isinstance(t, EcsTargetConfig) and t.blue_green and edge.cdn:
            problems.add(f"{tpath}.blueGreen", "cannot be combined with edge.cdn: the origin "
                         "lock needs a second listener rule (for health checks) that ECS's "
                         "blue/green traffic shifting would not move along; use rolling "
                         "deployments behind the CDN")
    rotation = [t for t in targets if t.weight > 0]
    if edge.routing == "failover":
        if len(targets) < 2:
            problems.add(f"{p}edge.routing", "failover needs at least two targets "
                         "(primary, secondary)")
        elif len(rotation) != 2:
            problems.add(f"{p}edge.routing", f"failover pairs exactly two targets in rotation "
                         f"(primary, secondary, in target order), got {len(rotation)} with "
                         "weight > 0; set weight: 0 on the others to keep them deployed and "
                         "health-checked as standbys")
    if edge.cacheable_paths and not edge.cdn:
        problems.add(f"{p}edge.cacheablePaths", "only applies with edge.cdn: true")
