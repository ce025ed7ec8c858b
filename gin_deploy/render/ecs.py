"""Pure renderers for the ECS target: container definitions, task definition input,
IAM policy documents, the ECR lifecycle policy, the subnet plan and the HSTS value.

Everything here takes plain values and returns plain JSON-able data, so it is
unit-tested and checked by the tools that own each format without any engine:
the task definition by botocore's parameter validator against the ECS API model
(RegisterTaskDefinition), the IAM documents by parliament. `EcsTarget` resolves
its Inputs in one `Output.all(...)` and calls these inside `apply`.

Choices, briefly:

* The container runs as a numeric non-root user with a read-only root
  filesystem, no privileges, all Linux capabilities dropped, an init process
  (PID 1 reaps and forwards signals) and a health check that runs the binary's
  own `healthcheck` subcommand (the image is `scratch`: no shell, no curl) on the
  liveness path: ECS replaces a task that fails it, so it must not fail while the
  app is merely not ready (draining, warming up); readiness is the load balancer's.
* `stopTimeout` covers the longest request (`WRITE_TIMEOUT`) and the app's drain
  (`SHUTDOWN_TIMEOUT`) plus a margin, and Fargate caps it at 120 s, so a drain that
  does not fit is refused here, not cut short at run time.
* Secrets only ever appear as `secrets[].valueFrom` ARNs; a name in both the
  plain environment and the secrets is an error.
* awslogs runs in non-blocking mode with a bounded buffer: a CloudWatch Logs
  hiccup never stalls request handling.
* The execution role may pull from exactly one repository (two when the task runs
  an existing image from another ECR repository), write to exactly
  one log group and read exactly the given parameters; `ecr:GetAuthorizationToken`
  is the one action that only exists on `*`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gin_deploy.agent.names import is_env_name
from gin_deploy.render._jinja import check_int, check_no_control

# Fargate's upper bound for stopTimeout (seconds).
FARGATE_MAX_STOP_TIMEOUT = 120
# Seconds between the end of the app's drain and SIGKILL.
STOP_MARGIN_S = 5
NON_ROOT_USER = "65532:65532"  # the image's USER (distroless "nonroot")
# The binary's own probe (app/README.md); `-url` points it at the liveness path.
HEALTH_COMMAND = ("CMD", "/app", "healthcheck")
IAM_VERSION = "2012-10-17"

_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")
_URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
_IMAGE_BY_DIGEST = re.compile(r"[a-z0-9.-]+(?::\d+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}")
_IMAGE_BY_TAG = re.compile(r"[a-z0-9.-]+(?::\d+)?/[a-z0-9._/-]+:[\w][\w.-]{0,127}")
# A private ECR repository's image: <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<name>.
_ECR_IMAGE = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                        r"([a-z0-9._/-]+)[:@].*")
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:\S+")
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
_ACCOUNT = re.compile(r"\d{12}")
_ARCHES = {"amd64": "X86_64", "arm64": "ARM64"}


def _check_arn(name: str, value: str, service: str | None = None) -> None:
    if not isinstance(value, str) or not _ARN.fullmatch(value):
        raise ValueError(f"{name}: {value!r} is not an ARN")
    if service is not None and value.split(":")[2] != service:
        raise ValueError(f"{name}: {value!r} is not an {service} ARN")


@dataclass(frozen=True)
class HealthCheck:
    """The container health check (Docker semantics)."""

    interval_s: int = 10
    timeout_s: int = 5
    retries: int = 3
    start_period_s: int = 15


@dataclass(frozen=True)
class ContainerSpec:
    """The app's one container, in plain values."""

    name: str
    image: str                           # repository@sha256:<digest>: every deploy is exact
    port: int
    log_group: str
    log_region: str
    drain_s: int                         # the app's SHUTDOWN_TIMEOUT
    environment: Mapping[str, str] = field(default_factory=dict)
    write_timeout_s: int = 30            # the app's WRITE_TIMEOUT: its longest request
    secrets: Mapping[str, str] = field(default_factory=dict)  # env name -> parameter ARN
    log_stream_prefix: str = "app"
    health_path: str = "/healthz"        # liveness: the container health check probes it
    user: str = NON_ROOT_USER
    health: HealthCheck = field(default_factory=HealthCheck)
    nofile: int = 65536
    # Accept `registry/repository:tag` too (the user's explicit opt-in: the tag may move).
    allow_tag: bool = False

    def __post_init__(self) -> None:
        if not _CONTAINER_NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} must be letters, digits, '-' and '_'")
        if not (_IMAGE_BY_DIGEST.fullmatch(self.image)
                or (self.allow_tag and _IMAGE_BY_TAG.fullmatch(self.image))):
            raise ValueError(f"image: {self.image!r} must be referenced by digest "
                             "(registry/repository@sha256:...)")
        check_int("port", self.port, minimum=1, maximum=65535)
        if not isinstance(self.health_path, str) or not _URL_PATH.fullmatch(self.health_path):
            raise ValueError(f"health_path: {self.health_path!r} must be an absolute URL path")
        check_int("drain_s", self.drain_s, minimum=1)
        check_int("write_timeout_s", self.write_timeout_s, minimum=1)
        if self.stop_timeout_s > FARGATE_MAX_STOP_TIMEOUT:
            raise ValueError(f"drain_s + write_timeout_s: {self.drain_s} + "
                             f"{self.write_timeout_s} s plus a {STOP_MARGIN_S} s margin exceed "
                             f"Fargate's {FARGATE_MAX_STOP_TIMEOUT} s stop timeout")
        if not _REGION.fullmatch(self.log_region):
            raise ValueError(f"log_region: {self.log_region!r} is not a region")
        check_no_control("log_group", self.log_group)
        if self.user.split(":")[0] in ("0", "root") or not re.fullmatch(r"\d+(:\d+)?", self.user):
            raise ValueError(f"user: {self.user!r} must be a numeric non-root uid[:gid]")
        for key, value in self.environment.items():
            if not is_env_name(key):
                raise ValueError(f"environment: {key!r} is not a valid env var name")
            if not isinstance(value, str):
                raise ValueError(f"environment: {key} must be a string, got {value!r}")
        for key, arn in self.secrets.items():
            if not is_env_name(key):
                raise ValueError(f"secrets: {key!r} is not a valid env var name")
            _check_arn(f"secrets.{key}", arn)
            if arn.split(":")[2] not in ("ssm", "secretsmanager"):
                raise ValueError(f"secrets.{key}: {arn!r} must be an SSM parameter or a "
                                 "Secrets Manager secret")
        both = sorted(set(self.environment) & set(self.secrets))
        if both:
            raise ValueError(f"{both} are both plain environment and secrets")

    @property
    def health_command(self) -> list[str]:
        return [*HEALTH_COMMAND, "-url", f"http://127.0.0.1:{self.port}{self.health_path}"]

    @property
    def stop_timeout_s(self) -> int:
        """A request that arrived just before SIGTERM may run for the write timeout, then
        the drain; the margin lets the app exit on its own before SIGKILL."""
        return self.write_timeout_s + self.drain_s + STOP_MARGIN_S


def container_definitions(spec: ContainerSpec) -> list[dict[str, Any]]:
    """The task's container definitions (ECS API shape), deterministic for a given spec."""
    return [{
        "name": spec.name,
        "image": spec.image,
        "essential": True,
        "user": spec.user,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "linuxParameters": {
            "initProcessEnabled": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "portMappings": [{
            "name": "http",
            "containerPort": spec.port,
            "hostPort": spec.port,
            "protocol": "tcp",
            "appProtocol": "http",
        }],
        "environment": [{"name": k, "value": spec.environment[k]}
                        for k in sorted(spec.environment)],
        "secrets": [{"name": k, "valueFrom": spec.secrets[k]} for k in sorted(spec.secrets)],
        "stopTimeout": spec.stop_timeout_s,
        "healthCheck": {
            "command": spec.health_command,
            "interval": spec.health.interval_s,
            "timeout": spec.health.timeout_s,
            "retries": spec.health.retries,
            "startPeriod": spec.health.start_period_s,
        },
        "ulimits": [{"name": "nofile", "softLimit": spec.nofile, "hardLimit": spec.nofile}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": spec.log_group,
                "awslogs-region": spec.log_region,
                "awslogs-stream-prefix": spec.log_stream_prefix,
                "mode": "non-blocking",
                "max-buffer-size": "25m",
            },
        },
    }]


def runtime_platform(arch: str) -> dict[str, str]:
    """The task's runtimePlatform for `arch` (amd64 | arm64), in ECS API shape."""
    if arch not in _ARCHES:
        raise ValueError(f"arch: {arch!r} must be one of {sorted(_ARCHES)}")
    return {"operatingSystemFamily": "LINUX", "cpuArchitecture": _ARCHES[arch]}


def app_environment(
    *,
    port: int,
    ready_path: str,
    drain_s: int,
    trusted_proxies: Sequence[str],
    extra: Mapping[str, str],
    idle_timeout_s: int = 60,
    write_timeout_s: int = 30,
) -> dict[str, str]:
    """The container's plain env: the app's contract (app/README.md) plus app.env.

    IDLE_TIMEOUT exceeds the load balancer's idle timeout and WRITE_TIMEOUT stays below
    it (checked in config): the load balancer closes idle connections, never the app.
    TRUSTED_PROXIES lists the load balancer's subnets (and whatever proxies the
    user put in front), so `ClientIP()` is the address the ALB appended to
    X-Forwarded-For, never a header a client forged.
    """
    for cidr in trusted_proxies:
        ipaddress.ip_network(cidr, strict=False)  # ValueError on garbage
    env = {
        "GIN_MODE": "release",
        "PORT": str(port),
        "READY_PATH": ready_path,
        "SHUTDOWN_TIMEOUT": f"{drain_s}s",
        "IDLE_TIMEOUT": f"{idle_timeout_s}s",
        "WRITE_TIMEOUT": f"{write_timeout_s}s",
        "TRUSTED_PROXIES": ",".join(dict.fromkeys(trusted_proxies)),
    }
    env.update(extra)
    return env


# --- IAM ------------------------------------------------------------------------


def ecs_tasks_trust_policy(*, partition: str, account_id: str, region: str) -> dict[str, Any]:
    """Trust for task and execution roles: ECS tasks of this account and region only."""
    if not _ACCOUNT.fullmatch(account_id) or not _REGION.fullmatch(region):
        raise ValueError(f"bad account {account_id!r} or region {region!r}")
    return {
        "Version": IAM_VERSION,
        "Statement": [{
            "Sid": "EcsTasksOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            # Confused-deputy protection, as the ECS docs recommend.
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": f"arn:{partition}:ecs:{region}:{account_id}:*"},
            },
        }],
    }


def ecs_service_trust_policy() -> dict[str, Any]:
    """Trust for the infrastructure role ECS blue/green uses to shift ALB traffic.

    Exactly the document the ECS guide gives: ECS does not promise source
    context keys for this role, so a condition could lock ECS out mid-deploy.
    """
    return {
        "Version": IAM_VERSION,
        "Statement": [{
            "Sid": "EcsInfrastructure",
            "Effect": "Allow",
            "Principal": {"Service": "ecs.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }],
    }


def secret_resource_arn(value_from: str) -> str:
    """The ARN a policy grants for a `secrets[].valueFrom`: a Secrets Manager reference
    may pick a JSON key and version (`<secret ARN>:<key>:<stage>:<id>`); IAM knows
    only the secret itself."""
    _check_arn("value_from", value_from)
    parts = value_from.split(":")
    return ":".join(parts[:7]) if parts[2] == "secretsmanager" else value_from


def _via_service(arn: str) -> str:
    """`kms:ViaService` of the service holding `arn` (SSM, Secrets Manager) in its region."""
    partition, service, region = arn.split(":")[1:4]
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"{service}.{region}.{suffix}"


def ecr_repository_arn(image: str, partition: str) -> str | None:
    """The ARN of the private ECR repository `image` is in; None for another registry."""
    match = _ECR_IMAGE.fullmatch(image)
    if match is None:
        return None
    account, region, name = match.groups()
    return f"arn:{partition}:ecr:{region}:{account}:repository/{name}"


def execution_role_policy(
    *,
    repository_arn: str,
    log_group_arn: str,
    image_repository_arn: str | None = None,
    parameter_arns: Sequence[str] = (),
    secret_arns: Sequence[str] = (),
    kms_key_arns: Sequence[str] = (),
) -> dict[str, Any]:
    """What the ECS agent needs to start the task, and nothing else.

    SSM SecureStrings under the AWS-managed `aws/ssm` key need no kms grant;
    `kms_key_arns` is for parameters or secrets under customer-managed keys, and
    decrypts only through SSM or Secrets Manager in the secrets' regions
    (`kms:ViaService`), never directly. `image_repository_arn`: the ECR repository of
    an existing image the task runs, when that is not the target's own.
    """
    _check_arn("repository_arn", repository_arn, "ecr")
    repositories = sorted({repository_arn, image_repository_arn or repository_arn})
    for arn in repositories:
        _check_arn("image_repository_arn", arn, "ecr")
    log_group_arn = log_group_arn.removesuffix(":*")
    _check_arn("log_group_arn", log_group_arn, "logs")
    for arn in parameter_arns:
        _check_arn("parameter_arns", arn, "ssm")
    for arn in secret_arns:
        _check_arn("secret_arns", arn, "secretsmanager")
        if arn != secret_resource_arn(arn):
            raise ValueError(f"secret_arns: {arn!r} names a JSON key or version; grant the "
                             "secret itself (secret_resource_arn)")
    for arn in kms_key_arns:
        _check_arn("kms_key_arns", arn, "kms")
        if ":key/" not in arn:
            raise ValueError(f"kms_key_arns: {arn!r} is not a key ARN (aliases do not "
                             "authorize kms:Decrypt)")
    if kms_key_arns and not (parameter_arns or secret_arns):
        raise ValueError("kms_key_arns: no parameter or secret to decrypt")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "EcrAuth",  # exists only on "*"
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "EcrPullThisRepository",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                       "ecr:GetDownloadUrlForLayer"],
            "Resource": repositories[0] if len(repositories) == 1 else repositories,
        },
        {
            "Sid": "LogsToThisGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group_arn}:log-stream:*",
        },
    ]
    if parameter_arns:
        statements.append({
            "Sid": "ReadTheseParameters",
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": sorted(parameter_arns),
        })
    if secret_arns:
        statements.append({
            "Sid": "ReadTheseSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": sorted(secret_arns),
        })
    if kms_key_arns:
        via = sorted({_via_service(a) for a in (*parameter_arns, *secret_arns)})
        statements.append({
            "Sid": "DecryptWithTheseKeys",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": sorted(kms_key_arns),
            "Condition": {"StringEquals": {"kms:ViaService": via}},
        })
    return {"Version": IAM_VERSION, "Statement": statements}


# --- ECR, ALB, VPC ----------------------------------------------------------------


def ecr_lifecycle_policy(keep: int) -> dict[str, Any]:
    """Keep the newest `keep` images (tagged or not); expire the rest."""
    check_int("keep", keep, minimum=1)
    return {"rules": [{
        "rulePriority": 1,
        "description": f"Keep the newest {keep} images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                      "countNumber": keep},
        "action": {"type": "expire"},
    }]}



def capacity_provider_strategy(spot_percent: int) -> list[dict[str, Any]]:
    """FARGATE/FARGATE_SPOT weights; below 100% spot one task always runs on FARGATE."""
    check_int("spot_percent", spot_percent, minimum=0, maximum=100)
    if spot_percent == 0:
        return [{"capacity_provider": "FARGATE", "base": 0, "weight": 1}]
    if spot_percent == 100:
        return [{"capacity_provider": "FARGATE_SPOT", "base": 0, "weight": 1}]
    return [
        {"capacity_provider": "FARGATE", "base": 1, "weight": 100 - spot_percent},
        {"capacity_provider": "FARGATE_SPOT", "base": 0, "weight": spot_percent},
    ]


@dataclass(frozen=True)
class SubnetPlan:
    public: tuple[str, ...]   # small: only load balancer nodes and NAT gateways live here
    private: tuple[str, ...]  # large: one task ENI per task


def subnet_plan(vpc_cidr: str, az_count: int) -> SubnetPlan:
    """Split an IPv4 VPC (/16../20) into one private quarter per AZ and small public subnets.

    For 10.0.0.0/16 and 3 AZs: private 10.0.0.0/18, 10.0.64.0/18, 10.0.128.0/18;
    public 10.0.192.0/22, 10.0.196.0/22, 10.0.200.0/22. The rest is left free. A /20
    still leaves each public subnet a /26: load balancers need at least a /27.
    """
    net = ipaddress.ip_network(vpc_cidr, strict=False)
    if not isinstance(net, ipaddress.IPv4Network) or not 16 <= net.prefixlen <= 20:
        raise ValueError(f"vpc_cidr: {vpc_cidr!r} must be an IPv4 network from /16 to /20")
    check_int("az_count", az_count, minimum=2, maximum=3)
    quarters = list(net.subnets(prefixlen_diff=2))
    public = list(quarters[3].subnets(prefixlen_diff=4))[:az_count]
    return SubnetPlan(public=tuple(str(s) for s in public),
                      private=tuple(str(s) for s in quarters[:az_count]))
