"""The network part of an EcsTarget: a VPC (or yours) and the two security groups.

A new VPC spans 2-3 AZs: public subnets for the load balancer, private ones for
the tasks with NAT egress (one gateway per AZ by default; single; none) and a free
S3 gateway endpoint (ECR keeps image layers in S3: pulls skip the NAT's per-GB
charge); its default security group is emptied. The load balancer takes 80/443
from the given CIDRs and may talk only to the tasks' port; the tasks take that
port only from the load balancer.

Behind a CDN (a locked edge origin) the load balancer takes only 443, and only
from CloudFront's origin-facing servers and Route 53's health checkers, by their
AWS-managed prefix lists. A prefix list counts as its maximum size against the
security group rule quota (60 inbound rules per group by default): CloudFront's
weighs 55, Route 53's 25, so they go in two groups, both on the load balancer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.ecs.audit import build_flow_logs
from components.ecs.common import Account, Scope
from gin_deploy.render import ecs as render

NAT_MODES = ("none", "single", "perAz")
DEFAULT_INGRESS = ("0.0.0.0/0",)
# AWS-managed prefix lists (the Route 53 one is per region; CloudFront's has one name).
CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"
ROUTE53_HEALTH_CHECKS = "com.amazonaws.{region}.route53-healthchecks"


@dataclass(frozen=True)
class EcsNetworkArgs:
    """A new VPC (default), or your own: `vpc_id` with its subnets."""

    # A new VPC: its IPv4 CIDR (/16 to /20) and the AZs it spans.
    vpc_cidr: str = "10.0.0.0/16"
    az_count: int = 3
    # Task egress: `perAz` one NAT gateway per AZ (an AZ outage takes only its own
    # tasks' egress), `single` one (cheaper; its AZ's outage cuts every task's egress),
    # `none` runs tasks in the public subnets with public IPs.
    nat: str = "perAz"
    # Your VPC: subnets (2+ AZs) for the load balancer, and unless nat is `none`,
    # the tasks' subnets with NAT egress.
    vpc_id: str | None = None
    public_subnet_ids: tuple[str, ...] = ()
    private_subnet_ids: tuple[str, ...] = ()
    # Who may reach the load balancer on 80/443 (behind a CDN: CloudFront only).
    ingress_cidrs: tuple[str, ...] = DEFAULT_INGRESS
    # The VPC's flow logs (all traffic) into a CloudWatch log group.
    flow_logs: bool = True

    def __post_init__(self) -> None:
        if self.nat not in NAT_MODES:
            raise ValueError(f"nat must be one of {' | '.join(NAT_MODES)}, got {self.nat!r}")
        if self.vpc_id is not None and len(self.public_subnet_ids) < 2:
            raise ValueError("public_subnet_ids: with vpc_id, at least two subnets are "
                             "required for the load balancer")
        if self.vpc_id is not None and self.nat != "none" and not self.private_subnet_ids:
            raise ValueError("private_subnet_ids: with vpc_id, the tasks' subnets are "
                             "required unless nat is 'none'")



@dataclass(frozen=True)
class EcsNetwork:
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    task_subnet_ids: list[pulumi.Output[str]]
    # Without NAT the tasks need public IPs to pull images and send logs.
    assign_public_ip: bool
    # The load balancer's subnets: the app trusts X-Forwarded-For from them.
    alb_cidrs: pulumi.Output[list[str]]
    alb_security_group: aws.ec2.SecurityGroup
    task_security_group: aws.ec2.SecurityGroup
    # Behind a CDN: the load balancer's second group (Route 53's health checkers).
    health_check_security_group: aws.ec2.SecurityGroup | None = None

    @property
    def alb_security_group_ids(self) -> list[pulumi.Output[str]]:
        groups = [self.alb_security_group, self.health_check_security_group]
        return [g.id for g in groups if g is not None]


def build_network(scope: Scope, args: EcsNetworkArgs, account: Account, port: int, *,
                  cdn_only: bool = False, log_retention_days: int = 30) -> EcsNetwork:
    """The VPC part, then the security groups for the load balancer and the tasks.

    `cdn_only`: the load balancer is an origin locked to CloudFront;
    `log_retention_days`: of the flow logs."""
    region = account.region
    if args.vpc_id is not None:
        vpc_id = pulumi.Output.from_input(args.vpc_id)
        public = [pulumi.Output.from_input(s) for s in args.public_subnet_ids]
        private = [pulumi.Output.from_input(s) for s in args.private_subnet_ids]
        tasks = public if args.nat == "none" else private
        alb_cidrs = pulumi.Output.all(*(
            aws.ec2.get_subnet_output(id=s, opts=scope.invoke).cidr_block
            for s in args.public_subnet_ids))
    else:
        vpc_id, public, tasks = _new_vpc(scope, args, region, account.service_prefix)
        alb_cidrs = pulumi.Output.from_input(
            list(render.subnet_plan(args.vpc_cidr, args.az_count).public))
    if args.flow_logs:
        build_flow_logs(scope, account, vpc_id, log_retention_days)
    alb_sg, task_sg = _security_groups(scope, vpc_id, port)
    health_check_sg = None
    if cdn_only:
        health_check_sg = _cdn_ingress(scope, vpc_id, alb_sg, region)
    else:
        _cidr_ingress(scope, alb_sg, args.ingress_cidrs)
    return EcsNetwork(vpc_id=vpc_id, public_subnet_ids=public, task_subnet_ids=tasks,
                      assign_public_ip=args.nat == "none", alb_cidrs=alb_cidrs,
                      alb_security_group=alb_sg, task_security_group=task_sg,
                      health_check_security_group=health_check_sg)


def _new_vpc(scope: Scope, args: EcsNetworkArgs, region: str,
             service_prefix: pulumi.Input[str],
             ) -> tuple[pulumi.Output[str], list[pulumi.Output[str]], list[pulumi.Output[str]]]:
    """(vpc id, public subnet ids, task subnet ids) of a new VPC."""
    name, count = scope.name, args.az_count
    plan = render.subnet_plan(args.vpc_cidr, count)
    zones = aws.get_availability_zones_output(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status",
                                                   values=["opt-in-not-required"])],
        opts=scope.invoke,
    ).names

    def zone(i: int) -> pulumi.Output[str]:
        def pick(names: list[str]) -> str:
            if len(names) < count:
                raise ValueError(f"{region} has {len(names)} availability "
                                 f"zones; set az_count (azCount) to at most {len(names)}")
            return sorted(names)[i]
        return zones.apply(pick)

    vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.vpc_cidr, enable_dns_support=True,
                      enable_dns_hostnames=True, opts=scope.opts())
    # Nothing may use the VPC's default security group: strip its rules.
    aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=scope.opts())
    igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=scope.opts())
    public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, opts=scope.opts())
    aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id,
                  destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=scope.opts())
    public = []
    for i, cidr in enumerate(plan.public):
        subnet = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=vpc.id, cidr_block=cidr,
                                availability_zone=zone(i), map_public_ip_on_launch=False,
                                opts=scope.opts())
        aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=subnet.id,
                                      route_table_id=public_rt.id, opts=scope.opts())
        public.append(subnet)
    public_ids = [s.id for s in public]
    if args.nat == "none":
        return vpc.id, public_ids, public_ids

    nats = []
    for i in range(count if args.nat == "perAz" else 1):
        eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", opts=scope.opts())
        nats.append(aws.ec2.NatGateway(
            f"{name}-nat-{i}", allocation_id=eip.id, subnet_id=public[i].id,
            connectivity_type="public", opts=scope.opts(depends_on=[igw])))
    tasks, private_route_tables = [], []
    for i, cidr in enumerate(plan.private):
        subnet = aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=vpc.id, cidr_block=cidr,
                                availability_zone=zone(i), map_public_ip_on_launch=False,
                                opts=scope.opts())
        rt = aws.ec2.RouteTable(f"{name}-private-rt-{i}", vpc_id=vpc.id, opts=scope.opts())
        aws.ec2.Route(f"{name}-private-default-{i}", route_table_id=rt.id,
                      destination_cidr_block="0.0.0.0/0",
                      nat_gateway_id=nats[i % len(nats)].id, opts=scope.opts())
        aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=subnet.id,
                                      route_table_id=rt.id, opts=scope.opts())
        tasks.append(subnet.id)
        private_route_tables.append(rt.id)
    # Free, and image layers (ECR stores them in S3) then bypass the NAT's per-GB fee.
    aws.ec2.VpcEndpoint(
        f"{name}-s3-endpoint", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
        service_name=pulumi.Output.concat(service_prefix, f".{region}.s3"),
        route_table_ids=private_route_tables, opts=scope.opts())
    return vpc.id, public_ids, tasks


def _cidr_ingress(scope: Scope, alb: aws.ec2.SecurityGroup,
                  ingress_cidrs: tuple[str, ...]) -> None:
    for listen in (80, 443):
        for i, cidr in enumerate(ingress_cidrs):
            v6 = ":" in cidr
            aws.vpc.SecurityGroupIngressRule(
                f"{scope.name}-alb-in-{listen}-{i}",
                security_group_id=alb.id,
                ip_protocol="tcp", from_port=listen, to_port=listen,
                cidr_ipv4=None if v6 else cidr, cidr_ipv6=cidr if v6 else None,
                description=f"{'HTTPS' if listen == 443 else 'HTTP (redirect only)'} "
                            f"from {cidr}",
                opts=scope.opts())


def _cdn_ingress(scope: Scope, vpc_id: pulumi.Output[str], alb: aws.ec2.SecurityGroup,
                 region: str) -> aws.ec2.SecurityGroup:
    """443 from CloudFront on the load balancer's group, and from Route 53's health
    checkers on a second group (both lists in one group would exceed its rule quota).
    No port 80: CloudFront reaches origins over HTTPS only."""
    name = scope.name
    health_checks = aws.ec2.SecurityGroup(
        f"{name}-alb-hc-sg", vpc_id=vpc_id,
        description=f"{scope.app} load balancer: 443 from Route 53 health checkers",
        opts=scope.opts())
    for role, group, prefix_list, source in (
            ("alb-in-443-cloudfront", alb, CLOUDFRONT_ORIGIN_FACING, "CloudFront"),
            ("alb-hc-in-443", health_checks, ROUTE53_HEALTH_CHECKS.format(region=region),
             "Route 53 health checkers")):
        listed = aws.ec2.get_managed_prefix_list_output(name=prefix_list, opts=scope.invoke)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-{role}",
            security_group_id=group.id,
            ip_protocol="tcp", from_port=443, to_port=443,
            prefix_list_id=listed.id,
            description=f"HTTPS from {source} ({prefix_list})",
            opts=scope.opts())
    return health_checks


def _security_groups(scope: Scope, vpc_id: pulumi.Output[str],
                     port: int) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
    name = scope.name
    alb = aws.ec2.SecurityGroup(
        f"{name}-alb-sg", vpc_id=vpc_id,
        description=f"{scope.app} load balancer: 80/443 in, app port to tasks out",
        opts=scope.opts())
    tasks = aws.ec2.SecurityGroup(
        f"{name}-task-sg", vpc_id=vpc_id,
        description=f"{scope.app} tasks: app port from the load balancer only",
        opts=scope.opts())
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-alb-out-tasks",
        security_group_id=alb.id,
        referenced_security_group_id=tasks.id,
        ip_protocol="tcp", from_port=port, to_port=port,
        description="Requests and health checks to the tasks", opts=scope.opts())
    aws.vpc.SecurityGroupIngressRule(
        f"{name}-task-in-alb",
        security_group_id=tasks.id,
        referenced_security_group_id=alb.id,
        ip_protocol="tcp", from_port=port, to_port=port,
        description="From the load balancer only", opts=scope.opts())
    # Tasks call out to ECR, CloudWatch Logs, SSM and whatever the app uses.
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-task-out",
        security_group_id=tasks.id,
        cidr_ipv4="0.0.0.0/0", ip_protocol="-1",
        description="Outbound (image pull, logs, secrets, app dependencies)",
        opts=scope.opts())
    return alb, tasks
