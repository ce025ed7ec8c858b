"""The task of an EcsTarget: logs, secrets, IAM roles and the task definition.

Container definitions come from `gin_deploy.render.ecs` (non-root, read-only,
init, health check, awslogs, secrets only by reference); secret values live only
in SSM SecureStrings that the execution role alone may read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.ecs.common import Scope, to_json
from gin_deploy.render import ecs as render

# SSM Standard parameters hold up to 4 KB; Advanced up to 8 KB.
SSM_STANDARD_MAX_BYTES = 4096


@dataclass(frozen=True)
class EcsContainerArgs:
    """The app as its container runs it."""

    # The app's name: the container's, and the prefix of descriptions and log paths.
    name: str
    port: int = 8080
    # Liveness (the container health check) and readiness (the load balancer's).
    health_path: str = "/healthz"
    ready_path: str = "/readyz"
    env: Mapping[str, str] = field(default_factory=dict)
    # Secret values by env name; stored only as SSM SecureStrings.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    # Secrets that already exist, by env name: a Secrets Manager secret (ARN, optionally
    # `:json-key::`) or an SSM parameter ARN; and the customer-managed KMS keys they
    # are encrypted with. The execution role may read (decrypt) exactly these.
    secret_arns: Mapping[str, str] = field(default_factory=dict)
    kms_key_arns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        both = sorted(set(self.secret_env) & set(self.secret_arns))
        if both:
            raise ValueError(f"secret_arns: {both} are also in secret_env")
        if self.kms_key_arns and not self.secret_arns:
            raise ValueError("kms_key_arns: only applies with secret_arns")
    # Seconds the app drains in-flight requests on SIGTERM.
    shutdown_timeout: int = 10
    # The app's IDLE_TIMEOUT (above the load balancer's) and WRITE_TIMEOUT (its longest
    # request, which deregistration and the stop timeout cover), seconds.
    idle_timeout: int = 60
    write_timeout: int = 30
    # CIDRs whose X-Forwarded-For the app trusts, besides the load balancer's subnets.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSettings:
    cpu: int
    memory: int
    arch: str
    log_retention_days: int
    # IAM policies for a task role; none: no task role, so no AWS credentials in the app.
    task_policy_arns: tuple[str, ...]


@dataclass(frozen=True)
class EcsTask:
    log_group: aws.cloudwatch.LogGroup
    execution_role: aws.iam.Role
    task_role: aws.iam.Role | None
    task_definition: aws.ecs.TaskDefinition
    # `NAME=version,...` of the SSM parameters (None without any): tasks read secret
    # values only when they start, so a new version must start new tasks.
    secret_versions: pulumi.Output[str] | None


def task_family(app: str, stack: str, target: str) -> str:
    """Task definition family: unique per app, stack and target within an account."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{app}-{stack}-{target}")[:255]


def build_task(scope: Scope, container: EcsContainerArgs, settings: TaskSettings, *,
               region: str, image: pulumi.Output[str], repository: aws.ecr.Repository,
               alb_cidrs: pulumi.Output[list[str]], account_id: pulumi.Output[str],
               partition: pulumi.Output[str], existing_image: str | None = None,
               allow_tag: bool = False) -> EcsTask:
    """`existing_image`: the reference of an image gin-deploy did not push (`image` then
    is it), whose ECR repository the execution role may pull from too."""
    name = scope.name
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs", retention_in_days=settings.log_retention_days, opts=scope.opts())
    parameters = {
        env: aws.ssm.Parameter(
            f"{name}-secret-{env}",
            type="SecureString",
            value=pulumi.Output.secret(value),
            tier="Standard" if len(value.encode()) <= SSM_STANDARD_MAX_BYTES else "Advanced",
            description=f"{container.name} {env} ({scope.stack}/{name}, gin-deploy)",
            opts=scope.opts(),
        )
        for env, value in sorted(container.secret_env.items())
    }
    tasks_trust = pulumi.Output.all(partition, account_id).apply(
        lambda v: to_json(render.ecs_tasks_trust_policy(
            partition=v[0], account_id=v[1], region=region)))
    execution_role = aws.iam.Role(
        f"{name}-execution-role", assume_role_policy=tasks_trust,
        description=f"ECS agent for {scope.label}: pull, logs, secrets",
        opts=scope.opts())
    existing = [render.secret_resource_arn(a) for a in container.secret_arns.values()]

    def execution_policy_json(v: list[Any]) -> str:
        own = list(v[3:])
        return to_json(render.execution_role_policy(
            repository_arn=v[0], log_group_arn=v[1],
            image_repository_arn=render.ecr_repository_arn(existing_image, v[2])
            if existing_image is not None else None,
            parameter_arns=sorted({*own, *(a for a in existing if ":ssm:" in a)}),
            secret_arns=sorted({a for a in existing if ":secretsmanager:" in a}),
            kms_key_arns=container.kms_key_arns))

    execution_policy = aws.iam.RolePolicy(
        f"{name}-execution-policy",
        role=execution_role.id,
        policy=pulumi.Output.all(repository.arn, log_group.arn, partition,
                                 *(p.arn for p in parameters.values())).apply(
            execution_policy_json),
        opts=scope.opts())
    task_role = None
    if settings.task_policy_arns:
        task_role = aws.iam.Role(
            f"{name}-task-role", assume_role_policy=tasks_trust,
            description=f"{scope.label} application role",
            opts=scope.opts())
        for i, arn in enumerate(settings.task_policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-task-policy-{i}", role=task_role.name,
                                         policy_arn=arn, opts=scope.opts())

    def container_json(v: dict[str, Any]) -> str:
        spec = render.ContainerSpec(
            name=container.name,
            image=v["image"],
            port=container.port,
            log_group=v["logGroup"],
            log_region=region,
            drain_s=container.shutdown_timeout,
            write_timeout_s=container.write_timeout,
            environment=render.app_environment(
                port=container.port, ready_path=container.ready_path,
                drain_s=container.shutdown_timeout,
                idle_timeout_s=container.idle_timeout,
                write_timeout_s=container.write_timeout,
                trusted_proxies=[*v["albCidrs"], *container.trusted_proxies],
                extra=container.env),
            secrets=v["secrets"],
            log_stream_prefix=name,
            health_path=container.health_path,
            allow_tag=allow_tag,
        )
        return to_json(render.container_definitions(spec))

    container_definitions = pulumi.Output.from_input({
        "image": image,
        "logGroup": log_group.name,
        "albCidrs": alb_cidrs,
        "secrets": {**container.secret_arns, **{env: p.arn for env, p in parameters.items()}},
    }).apply(container_json)
    platform = render.runtime_platform(settings.arch)
    task_definition = aws.ecs.TaskDefinition(
        f"{name}-task",
        family=task_family(container.name, scope.stack, name),
        container_definitions=container_definitions,
        cpu=str(settings.cpu),
        memory=str(settings.memory),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family=platform["operatingSystemFamily"],
            cpu_architecture=platform["cpuArchitecture"]),
        execution_role_arn=execution_role.arn,
        task_role_arn=task_role.arn if task_role is not None else None,
        # The agent needs its permissions before the first task starts.
        opts=scope.opts(depends_on=[execution_policy]),
    )
    secret_versions = None
    if parameters:
        names = list(parameters)
        secret_versions = pulumi.Output.all(*(p.version for p in parameters.values())).apply(
            lambda versions: ",".join(f"{n}={v}" for n, v in zip(names, versions, strict=True)))
    return EcsTask(log_group=log_group, execution_role=execution_role, task_role=task_role,
                   task_definition=task_definition, secret_versions=secret_versions)
