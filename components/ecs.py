"""EcsTarget: the service on AWS ECS Fargate behind an Application Load Balancer.

One component per target, in the target's own region: every child is created
with the target's explicit `aws.Provider` (never the ambient default), so one
stack can hold several ECS targets in several regions without collisions.

What it builds (see docs/ecs.md for the reasons):

* an ECR repository (immutable tags, scan on push, lifecycle keeping N images)
  that GinBuild pushes the image to; the task runs the image by digest;
* a VPC across 2-3 AZs (public subnets for the ALB, private ones for tasks,
  NAT none/single/perAz, the default security group emptied) or your own;
* security groups: the ALB takes 80/443 from the given CIDRs and may talk only
  to the tasks' port; the tasks take that port only from the ALB;
* an ACM certificate validated through Route 53 (CertificateValidation gates
  the HTTPS listener) or an existing certificate;
* the ALB: TLS 1.3/1.2 policy, HTTP only redirects, HSTS and nosniff added by
  the listener, invalid header fields dropped, X-Forwarded-For appended;
* a Fargate service (rolling 100/200 with the circuit breaker rolling back,
  or native ECS blue/green with a bake time) that waits for steady state;
  container definitions from `gin_deploy.render.ecs` (non-root, read-only,
  init, health check, awslogs, secrets only by reference);
* target tracking autoscaling on CPU and on ALB requests per target;
* the alias record for the domain unless edge routing owns the name;
* behind edge routing, its own name on the certificate, and behind a CDN the
  origin lock: the HTTPS listener answers 403 unless the request carries
  CloudFront's secret header (or asks for the health check path).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.endpoint import EdgeOrigin
from gin_deploy.config import (
    AppConfig,
    EcsTargetConfig,
    HstsConfig,
)
from gin_deploy.render import ecs as render
from gin_deploy.render.headers import hsts_value

# A TLS 1.3 + 1.2 policy restricted to AEAD (GCM) suites with forward secrecy.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
# Target tracking: add capacity quickly, remove it slowly.
SCALE_OUT_COOLDOWN_S = 60
SCALE_IN_COOLDOWN_S = 300
# Target group health check on readyPath: two passes in, three failures out.
HEALTH_INTERVAL_S = 10
HEALTH_TIMEOUT_S = 5
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 3
# Origin lock rules: the health check path first, then the secret header.
OPEN_PATH_RULE_PRIORITY = 10
ORIGIN_VERIFY_RULE_PRIORITY = 20
# SSM Standard parameters hold up to 4 KB; Advanced up to 8 KB.
SSM_STANDARD_MAX_BYTES = 4096
ECS_LB_ROLE_POLICY = "AmazonECSInfrastructureRolePolicyForLoadBalancers"

# Builds the image for `platform`, pushes it to `repository` with the given
# credentials and returns its repo digest (GinBuild.push, bound to a key).
ImagePusher = Callable[[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str], str],
                       pulumi.Output[str]]


@dataclass(frozen=True)
class EcsTargetArgs:
    target: EcsTargetConfig
    app: AppConfig
    domain: str
    hsts: HstsConfig
    project: str
    stack: str
    push_image: ImagePusher
    # The Route 53 zone holding `domain` (config: hostedZone, edge.zone or the parent).
    zone_name: str
    # False when edge routing owns the domain's records.
    manage_dns: bool = True
    # Values of app.secretEnv by env name; stored only as SSM SecureStrings.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    # An existing provider for the region (e.g. with assume_role); default: a new one.
    provider: aws.Provider | None = None
    # Set by edge routing: extra names, and behind a CDN the origin lock.
    edge: EdgeOrigin | None = None


def task_family(app: str, stack: str, target: str) -> str:
    """Task definition family: unique per app, stack and target within an account."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{app}-{stack}-{target}")[:255]


class EcsTarget(pulumi.ComponentResource):
    """The service on ECS Fargate in one region, behind an HTTPS-only ALB."""

    provider: aws.Provider
    repository: aws.ecr.Repository
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    task_subnet_ids: list[pulumi.Output[str]]
    alb_security_group: aws.ec2.SecurityGroup
    task_security_group: aws.ec2.SecurityGroup
    certificate_arn: pulumi.Output[str]
    log_group: aws.cloudwatch.LogGroup
    execution_role: aws.iam.Role
    task_role: aws.iam.Role | None
    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    https_listener: aws.lb.Listener
    http_listener: aws.lb.Listener
    # Behind a CDN: the rules that forward locked traffic (health check path, secret header).
    origin_rules: list[aws.lb.ListenerRule]
    cluster: aws.ecs.Cluster
    task_definition: aws.ecs.TaskDefinition
    service: aws.ecs.Service
    alias_record: aws.route53.Record | None
    image: pulumi.Output[str]
    url: pulumi.Output[str]
    alb_dns_name: pulumi.Output[str]
    alb_zone_id: pulumi.Output[str]
    service_arn: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    _alb_cidrs: pulumi.Output[list[str]]

    def __init__(self, name: str, args: EcsTargetArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        # Plain inputs were validated with the stack config (gin_deploy/config.py).
        super().__init__("gin-deploy:ecs:EcsTarget", name, None, opts)
        t, app = args.target, args.app
        region = t.region
        assert region is not None, "config parsing requires a region for ecs targets"
        self._name = name
        edge = args.edge
        locked = edge is not None and edge.locked
        assert not (locked and t.blue_green), "config rejects blueGreen behind a CDN"

        # 2. The region's provider; every child below uses it explicitly.
        self.provider = args.provider or aws.Provider(
            f"{name}-aws",
            region=region,
            default_tags=aws.ProviderDefaultTagsArgs(tags={
                "app": app.name, "stack": args.stack, "target": t.name,
                "managed-by": "gin-deploy",
            }),
            opts=pulumi.ResourceOptions(parent=self),
        )
        invoke = pulumi.InvokeOutputOptions(parent=self, provider=self.provider)
        identity = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke).partition

        self._registry(args, invoke)
        self._network(args, invoke)
        self._security_groups(args)
        self.certificate_arn, zone_id = self._certificate(args, invoke)

        # Logs, secrets and the roles that read them.
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=t.log_retention_days, opts=self._child())
        parameters = {
            env: aws.ssm.Parameter(
                f"{name}-secret-{env}",
                type="SecureString",
                value=pulumi.Output.secret(value),
                tier="Standard" if len(value.encode()) <= SSM_STANDARD_MAX_BYTES else "Advanced",
                description=f"{app.name} {env} ({args.stack}/{t.name}, gin-deploy)",
                opts=self._child(),
            )
            for env, value in sorted(args.secret_env.items())
        }
        tasks_trust = pulumi.Output.all(partition, identity.account_id).apply(
            lambda v: _json(render.ecs_tasks_trust_policy(
                partition=v[0], account_id=v[1], region=region)))
        self.execution_role = aws.iam.Role(
            f"{name}-execution-role", assume_role_policy=tasks_trust,
            description=f"ECS agent for {app.name} ({args.stack}/{t.name}): pull, logs, secrets",
            opts=self._child())
        execution_policy = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=self.execution_role.id,
            policy=pulumi.Output.all(self.repository.arn, self.log_group.arn,
                                     *(p.arn for p in parameters.values())).apply(
                lambda v: _json(render.execution_role_policy(
                    repository_arn=v[0], log_group_arn=v[1], parameter_arns=v[2:]))),
            opts=self._child())
        self.task_role = None
        if t.task_policy_arns:
            self.task_role = aws.iam.Role(
                f"{name}-task-role", assume_role_policy=tasks_trust,
                description=f"{app.name} ({args.stack}/{t.name}) application role",
                opts=self._child())
            for i, arn in enumerate(t.task_policy_arns):
                aws.iam.RolePolicyAttachment(f"{name}-task-policy-{i}", role=self.task_role.name,
                                             policy_arn=arn, opts=self._child())

        # Load balancer, target group(s), listeners.
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            ip_address_type="ipv4",
            security_groups=[self.alb_security_group.id],
            subnets=self.public_subnet_ids,
            idle_timeout=t.idle_timeout,
            enable_http2=True,
            drop_invalid_header_fields=True,
            desync_mitigation_mode="defensive",
            # Behind the CDN's lock only CloudFront gets through, and its X-Forwarded-For
            # ends with the viewer's address: pass it on unchanged (docs/edge.md).
            xff_header_processing_mode="preserve" if locked else "append",
            enable_xff_client_port=False,
            preserve_host_header=False,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(
                bucket=t.access_logs_bucket, enabled=True,
                prefix=f"{app.name}/{args.stack}/{t.name}",
            ) if t.access_logs_bucket else None,
            opts=self._child(),
        )
        self.target_group = self._target_group(args, "tg")
        green = self._target_group(args, "tg-green") if t.blue_green else None
        hsts = hsts_value(args.hsts.max_age, args.hsts.include_subdomains,
                                 args.hsts.preload)
        self.https_listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=self.load_balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=SSL_POLICY,
            certificate_arn=self.certificate_arn,
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="fixed-response",
                    fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                        content_type="text/plain", message_body="not found",
                        status_code="404"),
                ) if green is not None else aws.lb.ListenerDefaultActionArgs(
                    type="fixed-response",
                    fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                        content_type="text/plain", message_body="forbidden",
                        status_code="403"),
                ) if locked else aws.lb.ListenerDefaultActionArgs(
                    type="forward", target_group_arn=self.target_group.arn),
            ],
            routing_http_response_strict_transport_security_header_value=hsts,
            routing_http_response_x_content_type_options_header_value="nosniff",
            routing_http_response_server_enabled=False,
            opts=self._child(),
        )
        self.http_listener = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.load_balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(
                type="redirect",
                redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                    protocol="HTTPS", port="443", status_code="HTTP_301"),
            )],
            opts=self._child(),
        )
        advanced = None
        listeners: list[pulumi.Resource] = [self.https_listener, self.http_listener]
        self.origin_rules = self._origin_lock(edge) if edge is not None and locked else []
        listeners += self.origin_rules
        if green is not None:
            # ECS shifts traffic by rewriting this rule's weights: do not fight it.
            rule = aws.lb.ListenerRule(
                f"{name}-https-rule",
                listener_arn=self.https_listener.arn,
                priority=1,
                conditions=[aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=["/*"]))],
                actions=[aws.lb.ListenerRuleActionArgs(
                    type="forward",
                    forward=aws.lb.ListenerRuleActionForwardArgs(target_groups=[
                        aws.lb.ListenerRuleActionForwardTargetGroupArgs(
                            arn=self.target_group.arn, weight=100),
                        aws.lb.ListenerRuleActionForwardTargetGroupArgs(
                            arn=green.arn, weight=0),
                    ]),
                )],
                opts=self._child(ignore_changes=["actions"]),
            )
            listeners.append(rule)
            lb_role = aws.iam.Role(
                f"{name}-ecs-lb-role",
                assume_role_policy=_json(render.ecs_service_trust_policy()),
                description=f"ECS blue/green traffic shifting for {app.name} "
                            f"({args.stack}/{t.name})",
                opts=self._child())
            attachment = aws.iam.RolePolicyAttachment(
                f"{name}-ecs-lb-policy", role=lb_role.name,
                policy_arn=partition.apply(
                    lambda p: f"arn:{p}:iam::aws:policy/{ECS_LB_ROLE_POLICY}"),
                opts=self._child())
            listeners.append(attachment)
            advanced = aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs(
                alternate_target_group_arn=green.arn,
                production_listener_rule=rule.arn,
                role_arn=lb_role.arn,
            )

        # Cluster, task definition, service.
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=self._child())
        capacity = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=[
                aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(
                    capacity_provider="FARGATE", base=0, weight=1)],
            opts=self._child())

        container_name = app.name

        def container_json(v: dict[str, Any]) -> str:
            spec = render.ContainerSpec(
                name=container_name,
                image=v["image"],
                port=app.port,
                log_group=v["logGroup"],
                log_region=region,
                drain_s=app.shutdown_timeout,
                environment=render.app_environment(
                    port=app.port, ready_path=app.ready_path, drain_s=app.shutdown_timeout,
                    trusted_proxies=[*v["albCidrs"], *app.trusted_proxies], extra=app.env),
                secrets=v["secrets"],
                log_stream_prefix=t.name,
            )
            return _json(render.container_definitions(spec))

        container_definitions = pulumi.Output.from_input({
            "image": self.image,
            "logGroup": self.log_group.name,
            "albCidrs": self._alb_cidrs,
            "secrets": {env: p.arn for env, p in parameters.items()},
        }).apply(container_json)
        platform = render.runtime_platform(t.arch)
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=task_family(app.name, args.stack, t.name),
            container_definitions=container_definitions,
            cpu=str(t.cpu),
            memory=str(t.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family=platform["operatingSystemFamily"],
                cpu_architecture=platform["cpuArchitecture"]),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn if self.task_role is not None else None,
            # The agent needs its permissions before the first task starts.
            opts=self._child(depends_on=[execution_policy]),
        )
        lo, hi = t.min_count, t.max_count
        self.service = aws.ecs.Service(
            f"{name}-service",
            cluster=self.cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=t.desired_count,
            capacity_provider_strategies=[
                aws.ecs.ServiceCapacityProviderStrategyArgs(**s)
                for s in render.capacity_provider_strategy(t.spot)],
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=self.task_subnet_ids,
                security_groups=[self.task_security_group.id],
                assign_public_ip=t.nat == "none",
            ),
            load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=self.target_group.arn,
                container_name=container_name,
                container_port=app.port,
                advanced_configuration=advanced,
            )],
            health_check_grace_period_seconds=t.health_check_grace_seconds,
            deployment_controller=aws.ecs.ServiceDeploymentControllerArgs(type="ECS"),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True),
            deployment_configuration=aws.ecs.ServiceDeploymentConfigurationArgs(
                strategy="BLUE_GREEN", bake_time_in_minutes=str(t.bake_minutes),
            ) if t.blue_green else aws.ecs.ServiceDeploymentConfigurationArgs(
                strategy="ROLLING"),
            availability_zone_rebalancing="ENABLED",
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            enable_execute_command=False,
            wait_for_steady_state=True,
            # Autoscaling owns the running count after creation.
            opts=self._child(depends_on=[*listeners, capacity], ignore_changes=["desiredCount"]),
        )

        # Autoscaling: CPU and (rolling only) ALB requests per target.
        scaling = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", self.cluster.name, "/",
                                             self.service.name),
            min_capacity=lo,
            max_capacity=hi,
            opts=self._child(),
        )
        self._scaling_policy("scale-cpu", scaling, "ECSServiceAverageCPUUtilization",
                             t.cpu_target)
        if green is None:
            # With blue/green the serving target group alternates, so a metric
            # bound to one of them would read zero half of the time.
            self._scaling_policy(
                "scale-requests", scaling, "ALBRequestCountPerTarget", t.requests_per_target,
                resource_label=pulumi.Output.concat(self.load_balancer.arn_suffix, "/",
                                                    self.target_group.arn_suffix))

        # DNS: the domain points at the ALB unless edge routing owns it.
        self.alias_record = None
        if args.manage_dns:
            assert zone_id is not None
            self.alias_record = aws.route53.Record(
                f"{name}-alias",
                zone_id=zone_id,
                name=args.domain,
                type="A",
                aliases=[aws.route53.RecordAliasArgs(
                    name=self.load_balancer.dns_name,
                    zone_id=self.load_balancer.zone_id,
                    evaluate_target_health=True,
                )],
                opts=self._child(),
            )

        url = f"https://{args.domain}"
        ready: list[pulumi.Input[Any]] = [self.service.id]
        if self.alias_record is not None:
            ready.append(self.alias_record.fqdn)
        # Resolves once the service is steady (and the name points at it).
        self.url = pulumi.Output.all(*ready).apply(lambda _: url)
        self.alb_dns_name = self.load_balancer.dns_name
        self.alb_zone_id = self.load_balancer.zone_id
        self.service_arn = self.service.arn
        self.cluster_arn = self.cluster.arn
        self.log_group_name = self.log_group.name
        self.register_outputs({
            "url": self.url,
            "albDnsName": self.alb_dns_name,
            "albZoneId": self.alb_zone_id,
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "image": self.image,
            "logGroup": self.log_group_name,
        })

    # --- pieces ------------------------------------------------------------------

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider, **kwargs)

    def _registry(self, args: EcsTargetArgs, invoke: pulumi.InvokeOutputOptions) -> None:
        name, t = self._name, args.target
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(
                encryption_type="AES256")],
            force_delete=False,
            opts=self._child(),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repo-lifecycle",
            repository=self.repository.name,
            policy=_json(render.ecr_lifecycle_policy(t.keep_images)),
            opts=self._child(),
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=self.repository.registry_id, opts=invoke)
        self.image = args.push_image(
            self.repository.repository_url, token.user_name,
            pulumi.Output.secret(token.password), f"linux/{t.arch}")

    def _network(self, args: EcsTargetArgs, invoke: pulumi.InvokeOutputOptions) -> None:
        name, t = self._name, args.target
        if t.vpc_id is not None:
            self.vpc_id = pulumi.Output.from_input(t.vpc_id)
            self.public_subnet_ids = [pulumi.Output.from_input(s) for s in t.public_subnet_ids]
            private = [pulumi.Output.from_input(s) for s in t.private_subnet_ids]
            self.task_subnet_ids = self.public_subnet_ids if t.nat == "none" else private
            self._alb_cidrs = pulumi.Output.all(*(
                aws.ec2.get_subnet_output(id=s, opts=invoke).cidr_block
                for s in t.public_subnet_ids))
            return

        plan = render.subnet_plan(t.vpc_cidr, t.az_count)
        count = t.az_count
        zones = aws.get_availability_zones_output(
            state="available",
            filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status",
                                                       values=["opt-in-not-required"])],
            opts=invoke,
        ).names

        def zone(i: int) -> pulumi.Output[str]:
            def pick(names: list[str]) -> str:
                if len(names) < count:
                    raise ValueError(f"{args.target.region} has {len(names)} availability "
                                     f"zones; set azCount to at most {len(names)}")
                return sorted(names)[i]
            return zones.apply(pick)

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=t.vpc_cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, opts=self._child())
        self.vpc_id = vpc.id
        # Nothing may use the VPC's default security group: strip its rules.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=self._child())
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=self._child())
        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, opts=self._child())
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id,
                      destination_cidr_block="0.0.0.0/0", gateway_id=igw.id,
                      opts=self._child())
        public = []
        for i, cidr in enumerate(plan.public):
            subnet = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=vpc.id, cidr_block=cidr,
                                    availability_zone=zone(i), map_public_ip_on_launch=False,
                                    opts=self._child())
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=subnet.id,
                                          route_table_id=public_rt.id, opts=self._child())
            public.append(subnet)
        self.public_subnet_ids = [s.id for s in public]
        self._alb_cidrs = pulumi.Output.from_input(list(plan.public))
        if t.nat == "none":
            self.task_subnet_ids = self.public_subnet_ids
            return

        nats = []
        for i in range(count if t.nat == "perAz" else 1):
            eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", opts=self._child())
            nats.append(aws.ec2.NatGateway(
                f"{name}-nat-{i}", allocation_id=eip.id, subnet_id=public[i].id,
                connectivity_type="public", opts=self._child(depends_on=[igw])))
        self.task_subnet_ids = []
        for i, cidr in enumerate(plan.private):
            subnet = aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=vpc.id, cidr_block=cidr,
                                    availability_zone=zone(i), map_public_ip_on_launch=False,
                                    opts=self._child())
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{i}", vpc_id=vpc.id,
                                    opts=self._child())
            aws.ec2.Route(f"{name}-private-default-{i}", route_table_id=rt.id,
                          destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=nats[i % len(nats)].id, opts=self._child())
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=subnet.id,
                                          route_table_id=rt.id, opts=self._child())
            self.task_subnet_ids.append(subnet.id)

    def _security_groups(self, args: EcsTargetArgs) -> None:
        name, t, port = self._name, args.target, args.app.port
        self.alb_security_group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg", vpc_id=self.vpc_id,
            description=f"{args.app.name} load balancer: 80/443 in, app port to tasks out",
            opts=self._child())
        self.task_security_group = aws.ec2.SecurityGroup(
            f"{name}-task-sg", vpc_id=self.vpc_id,
            description=f"{args.app.name} tasks: app port from the load balancer only",
            opts=self._child())
        for listen in (80, 443):
            for i, cidr in enumerate(t.ingress_cidrs):
                v6 = ":" in cidr
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-in-{listen}-{i}",
                    security_group_id=self.alb_security_group.id,
                    ip_protocol="tcp", from_port=listen, to_port=listen,
                    cidr_ipv4=None if v6 else cidr, cidr_ipv6=cidr if v6 else None,
                    description=f"{'HTTPS' if listen == 443 else 'HTTP (redirect only)'} "
                                f"from {cidr}",
                    opts=self._child())
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-out-tasks",
            security_group_id=self.alb_security_group.id,
            referenced_security_group_id=self.task_security_group.id,
            ip_protocol="tcp", from_port=port, to_port=port,
            description="Requests and health checks to the tasks", opts=self._child())
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-task-in-alb",
            security_group_id=self.task_security_group.id,
            referenced_security_group_id=self.alb_security_group.id,
            ip_protocol="tcp", from_port=port, to_port=port,
            description="From the load balancer only", opts=self._child())
        # Tasks call out to ECR, CloudWatch Logs, SSM and whatever the app uses.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-task-out",
            security_group_id=self.task_security_group.id,
            cidr_ipv4="0.0.0.0/0", ip_protocol="-1",
            description="Outbound (image pull, logs, secrets, app dependencies)",
            opts=self._child())

    def _certificate(self, args: EcsTargetArgs, invoke: pulumi.InvokeOutputOptions,
                     ) -> tuple[pulumi.Output[str], pulumi.Output[str] | None]:
        name, t = self._name, args.target
        zone_id = None
        if args.manage_dns or t.certificate_arn is None:
            zone_id = aws.route53.get_zone_output(name=args.zone_name, private_zone=False,
                                                  opts=invoke).zone_id
        if t.certificate_arn is not None:
            return pulumi.Output.from_input(t.certificate_arn), zone_id
        assert zone_id is not None
        sans = list(dict.fromkeys([*t.sans, *(args.edge.names if args.edge else ())]))
        cert = aws.acm.Certificate(
            f"{name}-cert",
            domain_name=args.domain,
            subject_alternative_names=sans or None,
            validation_method="DNS",
            key_algorithm="RSA_2048",
            opts=self._child(),
        )
        # `*.x` and `x` share one validation record: one Record per distinct name.
        distinct: dict[str, str] = {}
        for n in (args.domain, *sans):
            distinct.setdefault(n.removeprefix("*."), n)
        fqdns = []
        for i, domain_name in enumerate(distinct.values()):
            option = cert.domain_validation_options.apply(_validation_option(domain_name))
            record = aws.route53.Record(
                f"{name}-cert-validation-{i}",
                zone_id=zone_id,
                name=option.apply(lambda o: _record_field(o, "resource_record_name")),
                type=option.apply(lambda o: _record_field(o, "resource_record_type")),
                records=[option.apply(lambda o: _record_field(o, "resource_record_value"))],
                ttl=300,
                # ACM uses the same record for a name in every region of an account.
                allow_overwrite=True,
                opts=self._child(),
            )
            fqdns.append(record.fqdn)
        validation = aws.acm.CertificateValidation(
            f"{name}-cert-validation",
            certificate_arn=cert.arn,
            validation_record_fqdns=fqdns,
            opts=self._child(),
        )
        # The listener takes the ARN from the validation: it waits for ISSUED.
        return validation.certificate_arn, zone_id

    def _origin_lock(self, edge: EdgeOrigin) -> list[aws.lb.ListenerRule]:
        """Forward only the health check path and requests with the secret header;
        the listener's default action answers everything else with 403."""
        assert edge.verify_header is not None and edge.verify_value is not None
        forward = [aws.lb.ListenerRuleActionArgs(
            type="forward", target_group_arn=self.target_group.arn)]
        rules = []
        if edge.open_path is not None:
            rules.append(aws.lb.ListenerRule(
                f"{self._name}-open-path",
                listener_arn=self.https_listener.arn,
                priority=OPEN_PATH_RULE_PRIORITY,
                conditions=[aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(
                        values=[edge.open_path]))],
                actions=forward,
                opts=self._child()))
        rules.append(aws.lb.ListenerRule(
            f"{self._name}-origin-verify",
            listener_arn=self.https_listener.arn,
            priority=ORIGIN_VERIFY_RULE_PRIORITY,
            conditions=[aws.lb.ListenerRuleConditionArgs(
                http_header=aws.lb.ListenerRuleConditionHttpHeaderArgs(
                    http_header_name=edge.verify_header,
                    values=[pulumi.Output.secret(edge.verify_value)]))],
            actions=forward,
            opts=self._child()))
        return rules

    def _target_group(self, args: EcsTargetArgs, role: str) -> aws.lb.TargetGroup:
        return aws.lb.TargetGroup(
            f"{self._name}-{role}",
            target_type="ip",
            protocol="HTTP",
            protocol_version="HTTP1",
            port=args.app.port,
            vpc_id=self.vpc_id,
            load_balancing_algorithm_type="least_outstanding_requests",
            # In-flight requests get the app's own drain budget.
            deregistration_delay=args.app.shutdown_timeout,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                protocol="HTTP",
                port="traffic-port",
                path=args.app.ready_path,
                matcher="200",
                interval=HEALTH_INTERVAL_S,
                timeout=HEALTH_TIMEOUT_S,
                healthy_threshold=HEALTHY_THRESHOLD,
                unhealthy_threshold=UNHEALTHY_THRESHOLD,
            ),
            opts=self._child(),
        )

    def _scaling_policy(self, role: str, scaling: aws.appautoscaling.Target, metric: str,
                        target_value: int,
                        resource_label: pulumi.Input[str] | None = None) -> None:
        aws.appautoscaling.Policy(
            f"{self._name}-{role}",
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
            opts=self._child(),
        )


ValidationOption = aws.acm.outputs.CertificateDomainValidationOption


def _validation_option(domain_name: str) -> Callable[[Sequence[ValidationOption]],
                                                     ValidationOption]:
    """Picks the validation record ACM asks for `domain_name` (the list is unordered)."""
    def pick(options: Sequence[ValidationOption]) -> ValidationOption:
        return next(o for o in options if o.domain_name == domain_name)
    return pick


def _record_field(option: ValidationOption, key: str) -> str:
    value = getattr(option, key)
    if not value:
        raise ValueError(f"ACM returned no {key} for {option.domain_name}")
    return str(value)


def _json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))
