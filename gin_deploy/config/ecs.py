"""`kind: ecs`: the service on AWS ECS Fargate behind an Application Load Balancer."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Self

from gin_deploy.config.checks import cidrs, dns_name, is_dns_name
from gin_deploy.config.schema import NAMESPACE, ParseContext, Problems, fill, spec_field
from gin_deploy.config.target import TargetBase

if TYPE_CHECKING:
    from gin_deploy.config.edge import EdgeConfig
    from gin_deploy.config.stack import StackConfig

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
# Fargate stops a task at most 120 s after SIGTERM; the container's stop timeout
# must exceed the drain by a margin, so the drain must fit below it.
FARGATE_MAX_DRAIN_S = 115
SSM_MAX_SECRET_BYTES = 8192  # an Advanced-tier SSM parameter


def parent_zone(domain: str) -> str:
    """The zone a name most likely sits in: its parent, unless that is a TLD."""
    return domain.split(".", 1)[1] if domain.count(".") >= 2 else domain


@dataclass(frozen=True)
class EcsTargetConfig(TargetBase):
    cpu: int = spec_field("cpu", "Fargate CPU units.", 256, choices=tuple(FARGATE_SIZES))
    memory: int = spec_field("memory", "Fargate memory, MiB (must fit the CPU size).", 512)
    desired_count: int = spec_field("desiredCount", "Tasks to run.", 2, min=1, max=1000)
    # minCount and maxCount are resolved at construction, hostedZone by the stack parse.
    min_count: int = spec_field("minCount", "Autoscaling minimum (default "
                                "desiredCount).", None, min=1, max=1000)
    max_count: int = spec_field("maxCount", "Autoscaling maximum (default "
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
                               "10.0.0.0/16", check=lambda v: cidrs((v,)))
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
        check=cidrs)
    # TLS and DNS.
    certificate_arn: str | None = spec_field(
        "certificateArn", "Existing ACM certificate (same region) instead of a new one.", None,
        check=lambda v: None if re.match(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/", v)
        else f"must be an ACM certificate ARN, got {v!r}")
    sans: tuple[str, ...] = spec_field(
        "sans", "Extra names on the new certificate (`*.` wildcards allowed).", (),
        check=lambda v: next((f"must be DNS names, got {s!r}" for s in v
                              if not is_dns_name(s.removeprefix("*."))), None))
    hosted_zone: str = spec_field(
        "hostedZone", "Route 53 public zone for certificate validation and the alias record "
        "(default: edge.zone, else the domain's parent).", None, check=dns_name)
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

    def __post_init__(self) -> None:
        fill(self, min_count=self.desired_count, max_count=2 * self.desired_count)

    def resolve(self, cfg: StackConfig) -> Self:
        if self.hosted_zone is not None:
            return self
        edge = cfg.edge
        zone = edge.zone if edge is not None and edge.zone else parent_zone(cfg.domain)
        return replace(self, hosted_zone=zone)

    @property
    def scale(self) -> int:
        return self.desired_count

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        if self.region is None:
            problems.add(f"{path}.region", "is required for ecs targets (an AWS region)")
        if self.memory not in FARGATE_SIZES.get(self.cpu, ()):
            allowed = ", ".join(str(m) for m in FARGATE_SIZES[self.cpu])
            problems.add(f"{path}.memory", f"{self.memory} MiB is not a Fargate size for cpu "
                         f"{self.cpu}; allowed: {allowed}")
        lo, hi = self.min_count, self.max_count
        if lo > hi:
            problems.add(f"{path}.minCount", f"minCount {lo} exceeds maxCount {hi}")
        elif not lo <= self.desired_count <= hi:
            problems.add(f"{path}.desiredCount", f"{self.desired_count} is outside minCount.."
                         f"maxCount ({lo}..{hi})")
        self._check_network(path, problems)
        if self.certificate_arn:
            if self.sans:
                problems.add(f"{path}.sans", "only applies to a new certificate, not with "
                             "certificateArn")
            arn_region = self.certificate_arn.split(":")[3]
            if self.region and arn_region != self.region:
                problems.add(f"{path}.certificateArn", f"is in {arn_region}; a load balancer "
                             f"in {self.region} needs a certificate from {self.region}")

    def _check_network(self, path: str, problems: Problems) -> None:
        if self.vpc_id is None:
            for key, value in (("publicSubnetIds", self.public_subnet_ids),
                               ("privateSubnetIds", self.private_subnet_ids)):
                if value:
                    problems.add(f"{path}.{key}", "only applies with vpcId (your own VPC)")
            net = ipaddress.ip_network(self.vpc_cidr, strict=False)
            if net.version != 4 or not 16 <= net.prefixlen <= 20:
                problems.add(f"{path}.vpcCidr", f"must be an IPv4 CIDR from /16 to /20, got "
                             f"{self.vpc_cidr!r}")
            return
        if len(set(self.public_subnet_ids)) < 2:
            problems.add(f"{path}.publicSubnetIds", "with vpcId, at least two public "
                         "subnets (in different AZs) are required for the load balancer")
        if self.nat == "none" and self.private_subnet_ids:
            problems.add(f"{path}.privateSubnetIds", "unused with nat: none (tasks run in "
                         "the public subnets); remove it or set nat: single")
        if self.nat != "none" and not self.private_subnet_ids:
            problems.add(f"{path}.privateSubnetIds", "with vpcId, the tasks' subnets (with "
                         "NAT egress) are required, or set nat: none for public-IP tasks")

    @classmethod
    def check_kind(cls, cfg: StackConfig, members: Sequence[tuple[int, TargetBase]],
                   problems: Problems) -> None:
        p = f"{NAMESPACE}:"
        app, domain = cfg.app, cfg.domain
        where = ", ".join(f"targets[{i}]" for i, _t in members)
        if app.shutdown_timeout > FARGATE_MAX_DRAIN_S:
            problems.add(f"{p}app.shutdownTimeout", f"{app.shutdown_timeout}s does not fit "
                         f"Fargate's 120 s stop timeout; ecs targets ({where}) need <= "
                         f"{FARGATE_MAX_DRAIN_S}")
        if "." not in domain:
            problems.add(f"{p}domain", f"ecs targets ({where}) need a public DNS name (a Route "
                         f"53 record and an ACM certificate), got {domain!r}")
        for name, value in cfg.secret_env.items():
            if len(value.encode()) > SSM_MAX_SECRET_BYTES:
                problems.add(f"{p}{name}", f"secret is larger than the {SSM_MAX_SECRET_BYTES} "
                             "bytes an SSM parameter holds (ecs targets)")
        for i, target in members:
            assert isinstance(target, EcsTargetConfig)
            zone = target.hosted_zone
            for name in (domain, *(s.removeprefix("*.") for s in target.sans)):
                if name != zone and not name.endswith("." + zone):
                    problems.add(f"{p}targets[{i}].hostedZone", f"{name!r} is not inside the "
                                 f"Route 53 zone {zone!r} (set hostedZone)")
        if cfg.edge is None and len(members) > 1:
            problems.add(f"{p}targets", f"{len(members)} ecs targets would each point "
                         f"{domain!r} at their load balancer; add gin-deploy:edge to route "
                         "across them")

    def check_edge(self, edge: EdgeConfig, domain: str, path: str, problems: Problems) -> None:
        super().check_edge(edge, domain, path, problems)
        if self.blue_green and edge.cdn:
            problems.add(f"{path}.blueGreen", "cannot be combined with edge.cdn: the origin "
                         "lock needs a second listener rule (for health checks) that ECS's "
                         "blue/green traffic shifting would not move along; use rolling "
                         "deployments behind the CDN")
