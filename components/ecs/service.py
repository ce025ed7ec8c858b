"""The service part of an EcsTarget: cluster, Fargate service, alarms, autoscaling.

The service deploys with the ECS strategy of the target's release (ROLLING 100/200,
or BLUE_GREEN, CANARY, LINEAR shifting traffic between two target groups with bake
times: gin_deploy.render.ecs_release), rolls back on the circuit breaker and on its
alarms, and waits for steady state; target tracking scales it on CPU and, for rolling
deployments, on requests per task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.ecs.alarms import build_alarms, thresholds
from components.ecs.common import Scope
from components.ecs.load_balancer import EcsLoadBalancer
from components.ecs.network import EcsNetwork
from gin_deploy.render import ecs as render
from gin_deploy.render import ecs_release

# Target tracking: add capacity quickly, remove it slowly.
SCALE_OUT_COOLDOWN_S = 60
SCALE_IN_COOLDOWN_S = 300
ARCHITECTURES = ("amd64", "arm64")


@dataclass(frozen=True)
class EcsRelease:
    """How a new version goes out and what it must hold (the target's `release`)."""

    strategy: str = "canary"           # rolling | canary | blueGreen
    steps: tuple[int, ...] = (10, 100)
    bake_seconds: int = 60             # per step; ECS bakes whole minutes (rounded up)
    max_error_rate: float = 0.01
    max_p95_ms: int = 500
    min_requests: int = 100

    def __post_init__(self) -> None:
        try:
            _ = self.deployment
        except ValueError as e:
            raise ValueError(f"release.steps: {e}") from None

    @property
    def deployment(self) -> ecs_release.Deployment:
        return ecs_release.deployment(self.strategy, self.steps, self.bake_seconds)


@dataclass(frozen=True)
class EcsServiceArgs:
    """Size, deployments and scaling of the Fargate service (and its image and logs)."""

    cpu: int = 256                     # Fargate CPU units
    memory: int = 512                  # MiB; must fit the CPU size
    desired_count: int = 2
    # Autoscaling bounds.
    min_count: int = 2
    max_count: int = 4
    arch: str = "amd64"
    # Percent of tasks on FARGATE_SPOT (below 100 one task always stays on FARGATE).
    spot: int = 0
    # Seconds new tasks may fail load balancer health checks.
    health_check_grace_seconds: int = 30
    # The ECS deployment strategy and what the rollback alarms judge (alarms.py).
    release: EcsRelease = field(default_factory=EcsRelease)
    # Autoscaling targets: average CPU percent; load balancer requests per task per minute.
    cpu_target: int = 60
    requests_per_target: int = 1000
    keep_images: int = 20              # the ECR repository keeps this many
    log_retention_days: int = 30
    # IAM policies for a task role; none: no task role, so no AWS credentials in the app.
    task_policy_arns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.min_count <= self.desired_count <= self.max_count:
            raise ValueError(f"desired_count {self.desired_count} must lie within min_count.."
                             f"max_count ({self.min_count}..{self.max_count})")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {' | '.join(ARCHITECTURES)}, "
                             f"got {self.arch!r}")


@dataclass(frozen=True)
class EcsService:
    cluster: aws.ecs.Cluster
    service: aws.ecs.Service
    # What the deployments roll back on: 5xx share, p95, unhealthy tasks.
    alarms: list[aws.cloudwatch.MetricAlarm]


def build_service(scope: Scope, args: EcsServiceArgs, *, container_name: str,
                  container_port: int, task_definition: aws.ecs.TaskDefinition,
                  network: EcsNetwork, balancer: EcsLoadBalancer,
                  secret_versions: pulumi.Output[str] | None = None) -> EcsService:
    """`secret_versions` changes whenever a secret's value does: a new deployment."""
    name = scope.name
    cluster = aws.ecs.Cluster(
        f"{name}-cluster",
        settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
        opts=scope.opts())
    capacity = aws.ecs.ClusterCapacityProviders(
        f"{name}-capacity",
        cluster_name=cluster.name,
        capacity_providers=["FARGATE", "FARGATE_SPOT"],
        default_capacity_provider_strategies=[
            aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(
                capacity_provider="FARGATE", base=0, weight=1)],
        opts=scope.opts())
    target_groups = [balancer.target_group]
    if balancer.green_target_group is not None:
        target_groups.append(balancer.green_target_group)
    r = args.release
    alarms = build_alarms(scope, load_balancer=balancer.load_balancer.arn_suffix,
                          target_groups=[tg.arn_suffix for tg in target_groups],
                          thresholds=thresholds(
                              max_error_rate=r.max_error_rate, max_p95_ms=r.max_p95_ms,
                              min_requests=r.min_requests, bake_seconds=r.bake_seconds))
    service = aws.ecs.Service(
        f"{name}-service",
        cluster=cluster.arn,
        task_definition=task_definition.arn,
        desired_count=args.desired_count,
        capacity_provider_strategies=[
            aws.ecs.ServiceCapacityProviderStrategyArgs(**s)
            for s in render.capacity_provider_strategy(args.spot)],
        platform_version="LATEST",
        network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
            subnets=network.task_subnet_ids,
            security_groups=[network.task_security_group.id],
            assign_public_ip=network.assign_public_ip,
        ),
        load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
            target_group_arn=balancer.target_group.arn,
            container_name=container_name,
            container_port=container_port,
            advanced_configuration=balancer.advanced,
        )],
        health_check_grace_period_seconds=args.health_check_grace_seconds,
        deployment_controller=aws.ecs.ServiceDeploymentControllerArgs(type="ECS"),
        deployment_minimum_healthy_percent=100,
        deployment_maximum_percent=200,
        deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
            enable=True, rollback=True),
        # For every strategy: the circuit breaker sees tasks that never get healthy,
        # the alarms a release that serves errors or slowly.
        alarms=aws.ecs.ServiceAlarmsArgs(
            alarm_names=[a.name for a in alarms], enable=True, rollback=True),
        deployment_configuration=_deployment_configuration(r.deployment),
        # ECS applies some changes only with a new deployment (a capacity provider
        # strategy, i.e. `spot`, is refused without one); every update of the service
        # starts one, and a secret's new version is such an update.
        force_new_deployment=True,
        triggers={"secretVersions": secret_versions} if secret_versions is not None
        else None,
        availability_zone_rebalancing="ENABLED",
        enable_ecs_managed_tags=True,
        propagate_tags="SERVICE",
        enable_execute_command=False,
        wait_for_steady_state=True,
        # Autoscaling owns the running count after creation.
        opts=scope.opts(depends_on=[*balancer.ready, capacity],
                        ignore_changes=["desiredCount"]),
    )
    _autoscaling(scope, args, cluster, service, balancer)
    return EcsService(cluster=cluster, service=service, alarms=alarms)


def _deployment_configuration(
        d: ecs_release.Deployment) -> aws.ecs.ServiceDeploymentConfigurationArgs:
    if not d.shifts_traffic:
        return aws.ecs.ServiceDeploymentConfigurationArgs(strategy=d.strategy)
    bake = str(d.bake_minutes)
    return aws.ecs.ServiceDeploymentConfigurationArgs(
        strategy=d.strategy, bake_time_in_minutes=bake,
        canary_configuration=aws.ecs.ServiceDeploymentConfigurationCanaryConfigurationArgs(
            canary_percent=d.percent, canary_bake_time_in_minutes=bake)
        if d.strategy == "CANARY" else None,
        linear_configuration=aws.ecs.ServiceDeploymentConfigurationLinearConfigurationArgs(
            step_percent=d.percent, step_bake_time_in_minutes=bake)
        if d.strategy == "LINEAR" else None)


def _autoscaling(scope: Scope, args: EcsServiceArgs, cluster: aws.ecs.Cluster,
                 service: aws.ecs.Service, balancer: EcsLoadBalancer) -> None:
    """Target tracking on CPU and (rolling only) on load balancer requests per task."""
    scaling = aws.appautoscaling.Target(
        f"{scope.name}-scaling",
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
        min_capacity=args.min_count,
        max_capacity=args.max_count,
        opts=scope.opts(),
    )
    _policy(scope, "scale-cpu", scaling, "ECSServiceAverageCPUUtilization", args.cpu_target)
    if balancer.green_target_group is None:
        # With blue/green the serving target group alternates, so a metric
        # bound to one of them would read zero half of the time.
        _policy(scope, "scale-requests", scaling, "ALBRequestCountPerTarget",
                args.requests_per_target,
                resource_label=pulumi.Output.concat(balancer.load_balancer.arn_suffix, "/",
                                                    balancer.target_group.arn_suffix))


def _policy(scope: Scope, role: str, scaling: aws.appautoscaling.Target, metric: str,
            target_value: int, resource_label: pulumi.Input[str] | None = None) -> None:
    aws.appautoscaling.Policy(
        f"{scope.name}-{role}",
        policy_type="TargetTrackingScaling",
        service_namespace=scaling.service_namespace,
        scalable_dimension=scaling.scalable_dimension,
        resource_id=scaling.resource_id,
        target_tracking_scaling_policy_configuration=(
            aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=float(target_value),
                scale_out_cooldown=SCALE_OUT_COOLDOWN_S,
                scale_in_cooldown=SCALE_IN_COOLDOWN_S,
                predefined_metric_specification=aws.appautoscaling.
                PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type=metric, resource_label=resource_label),
            )),
        opts=scope.opts(),
    )
