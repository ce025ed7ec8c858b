"""EcsTarget: the service on AWS ECS Fargate behind an Application Load Balancer.

One component per target, in the target's own region: every child is created
with the target's explicit `aws.Provider` (never the ambient default), so one
stack can hold several ECS targets in several regions without collisions.

The component puts together its parts, each a module of this package that
creates its resources as the component's children (see docs/ecs.md):

* registry.py - the ECR repository GinBuild pushes the image to (unless the
  target runs an existing image);
* network.py - the VPC (or yours) and the security groups;
* load_balancer.py - the certificate, the ALB, target groups, listeners, the
  origin lock behind a CDN, the traffic-shifting rule;
* task.py - logs, secrets, IAM roles, the task definition;
* service.py - the cluster, the Fargate service and its autoscaling;
* alarms.py - the alarms the service's deployments roll back on (5xx, p95, health);
* audit.py - access logs, flow logs, the optional WAF (for network and load balancer);

and, unless edge routing owns the domain, the alias record pointing it at the ALB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws_provider import regional_provider
from components.ecs.common import Account, Scope
from components.ecs.load_balancer import Backend, EcsLoadBalancerArgs, build_load_balancer
from components.ecs.network import DEFAULT_INGRESS, EcsNetworkArgs, build_network
from components.ecs.registry import ImagePusher, build_registry
from components.ecs.service import EcsServiceArgs, build_service
from components.ecs.task import EcsContainerArgs, TaskSettings, build_task
from components.endpoint import EdgeOrigin


@dataclass(frozen=True)
class EcsTargetArgs:
    region: str
    domain: str
    # The public Route 53 zone that holds `domain` (certificate validation, alias record).
    zone_name: str
    container: EcsContainerArgs
    stack: str
    # Builds and pushes the image into the target's ECR repository (GinBuild.push) ...
    push_image: ImagePusher | None = None
    # ... or an existing image the tasks run instead: `registry/repository@sha256:...`
    # (a `:tag` only with `image_allow_tag`, the user's explicit opt-in).
    image: str | None = None
    image_allow_tag: bool = False
    network: EcsNetworkArgs = field(default_factory=EcsNetworkArgs)
    load_balancer: EcsLoadBalancerArgs = field(default_factory=EcsLoadBalancerArgs)
    service: EcsServiceArgs = field(default_factory=EcsServiceArgs)
    # False when edge routing owns the domain's records.
    manage_dns: bool = True
    # An existing provider for the region (e.g. with assume_role); default: a new one.
    provider: aws.Provider | None = None
    # Set by edge routing: extra names, and behind a CDN the origin lock.
    edge: EdgeOrigin | None = None

    def __post_init__(self) -> None:
        if not self.region:
            raise ValueError("region is required for an ECS target")
        if (self.push_image is None) == (self.image is None):
            raise ValueError("exactly one of push_image (build and push) or image (an "
                             "existing image) is required")
        locked = self.edge is not None and self.edge.locked
        if locked and self.network.ingress_cidrs != DEFAULT_INGRESS:
            raise ValueError("network.ingress_cidrs cannot be combined with a locked edge "
                             "origin: only CloudFront (and Route 53's health checkers) may "
                             "reach the load balancer")
        if locked and self.load_balancer.waf:
            raise ValueError("load_balancer.waf cannot be combined with a locked edge origin: "
                             "the ALB sees only CloudFront's addresses, so a per-IP rate "
                             "limit would throttle whole edge locations")
        if locked and self.service.release.deployment.shifts_traffic:
            raise ValueError(f"service.release.strategy {self.service.release.strategy} "
                             "cannot be combined with a locked edge origin: ECS's traffic "
                             "shifting re-weights one listener rule and would not move the "
                             "lock's health check rule along")


class EcsTarget(pulumi.ComponentResource):
    """The service on ECS Fargate in one region, behind an HTTPS-only ALB."""

    provider: aws.Provider
    repository: aws.ecr.Repository
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    task_subnet_ids: list[pulumi.Output[str]]
    alb_security_group: aws.ec2.SecurityGroup
    # Behind a CDN: the load balancer's second group, for Route 53's health checkers.
    health_check_security_group: aws.ec2.SecurityGroup | None
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
    # The 5xx-share, p95 and unhealthy-task alarms deployments roll back on.
    alarms: list[aws.cloudwatch.MetricAlarm]
    alias_record: aws.route53.Record | None
    image: pulumi.Output[str]
    url: pulumi.Output[str]
    alb_dns_name: pulumi.Output[str]
    alb_zone_id: pulumi.Output[str]
    service_arn: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: EcsTargetArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gin-deploy:ecs:EcsTarget", name, None, opts)
        c, s = args.container, args.service
        self.provider = args.provider or regional_provider(
            f"{name}-aws", args.region,
            {"app": c.name, "stack": args.stack, "target": name}, parent=self)
        scope = Scope(name=name, app=c.name, stack=args.stack, parent=self,
                      provider=self.provider)
        identity = aws.get_caller_identity_output(opts=scope.invoke)
        partition_info = aws.get_partition_output(opts=scope.invoke)
        partition = partition_info.partition
        account = Account(id=identity.account_id, partition=partition, region=args.region,
                          service_prefix=partition_info.reverse_dns_prefix)
        zone_id = None
        if args.manage_dns or args.load_balancer.certificate_arn is None:
            zone_id = aws.route53.get_zone_output(name=args.zone_name, private_zone=False,
                                                  opts=scope.invoke).zone_id

        registry = build_registry(scope, keep_images=s.keep_images, arch=s.arch,
                                  push_image=args.push_image, image=args.image)
        network = build_network(scope, args.network, account, c.port,
                                cdn_only=args.edge is not None and args.edge.locked,
                                log_retention_days=s.log_retention_days)
        balancer = build_load_balancer(
            scope, args.load_balancer, domain=args.domain, zone_id=zone_id, network=network,
            backend=Backend(port=c.port, ready_path=c.ready_path,
                            deregistration_delay_s=c.write_timeout + c.shutdown_timeout),
            traffic_shifting=s.release.deployment.shifts_traffic, edge=args.edge,
            account=account,
            log_retention_days=s.log_retention_days)
        task = build_task(
            scope, c, TaskSettings(cpu=s.cpu, memory=s.memory, arch=s.arch,
                                   log_retention_days=s.log_retention_days,
                                   task_policy_arns=s.task_policy_arns),
            region=args.region, image=registry.image, repository=registry.repository,
            existing_image=args.image, allow_tag=args.image_allow_tag,
            alb_cidrs=network.alb_cidrs, account_id=identity.account_id, partition=partition)
        service = build_service(scope, s, container_name=c.name, container_port=c.port,
                                task_definition=task.task_definition, network=network,
                                balancer=balancer, secret_versions=task.secret_versions)

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
                    name=balancer.load_balancer.dns_name,
                    zone_id=balancer.load_balancer.zone_id,
                    evaluate_target_health=True,
                )],
                opts=scope.opts(),
            )

        self.repository, self.image = registry.repository, registry.image
        self.vpc_id = network.vpc_id
        self.public_subnet_ids = network.public_subnet_ids
        self.task_subnet_ids = network.task_subnet_ids
        self.alb_security_group = network.alb_security_group
        self.health_check_security_group = network.health_check_security_group
        self.task_security_group = network.task_security_group
        self.certificate_arn = balancer.certificate_arn
        self.load_balancer, self.target_group = balancer.load_balancer, balancer.target_group
        self.https_listener, self.http_listener = balancer.https_listener, balancer.http_listener
        self.origin_rules = balancer.origin_rules
        self.log_group, self.task_definition = task.log_group, task.task_definition
        self.execution_role, self.task_role = task.execution_role, task.task_role
        self.cluster, self.service = service.cluster, service.service
        self.alarms = service.alarms

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
