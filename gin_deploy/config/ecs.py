"""`kind: ecs`: the service on AWS ECS Fargate behind an Application Load Balancer."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Self

from gin_deploy.agent.names import is_env_name
from gin_deploy.config.app import RESERVED_ENV
from gin_deploy.config.checks import cidrs, dns_name, is_dns_name
from gin_deploy.config.image import ImageConfig, image_doc
from gin_deploy.config.schema import NAMESPACE, ParseContext, Problems, fill, spec_field
from gin_deploy.config.target import TargetBase
from gin_deploy.render.ecs_release import ECSShapeError, deployment

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
# covers the longest request (app.writeTimeout) and the drain plus a margin, so
# those two must fit below it.
FARGATE_MAX_DRAIN_S = 115
# The load balancer's idle timeout defaults to this much below the app's, so the
# load balancer, not the app, closes idle connections.
ALB_IDLE_MARGIN_S = 5
SSM_MAX_SECRET_BYTES = 8192  # an Advanced-tier SSM parameter


# What secretArns may name: a Secrets Manager secret by its full ARN (with the 6-character
# suffix AWS adds), optionally with `:json-key:version-stage:version-id`, or an SSM parameter.
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:"
                         r"[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}(:[^:]*:[^:]*:[^:]*)?$")
_PARAMETER_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9_.\-/]+$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
# Env vars the ECS target sets itself (app_environment): a secret may not shadow them.
ECS_SET_ENV = frozenset({"GIN_MODE", "PORT", "READY_PATH", "SHUTDOWN_TIMEOUT", "IDLE_TIMEOUT",
                         "WRITE_TIMEOUT", "TRUSTED_PROXIES"})


def _secret_arns(value: dict[str, str]) -> str | None:
    bad_names = sorted(k for k in value if not is_env_name(k))
    if bad_names:
        return f"keys must be env var names, got {bad_names}"
    bad = sorted(v for v in value.values()
                 if not (_SECRET_ARN.match(v) or _PARAMETER_ARN.match(v)))
    if bad:
        return ("values must be full Secrets Manager secret ARNs (…:secret:<name>-AbCdEf, "
                f"optionally :<json-key>::) or SSM parameter ARNs, got {bad}")
    return None


def _kms_key_arns(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not _KMS_KEY_ARN.match(v)]
    if bad:
        return f"must be KMS key ARNs (…:key/<id>; aliases do not authorize Decrypt), got {bad}"
    return None


def parent_zone(domain: str) -> str:
    """The zone a name most likely sits in: its parent, unless that is a TLD."""
    return domain.split(".", 1)[1] if domain.count(".") >= 2 else domain


@dataclass(frozen=True)
class EcsTargetConfig(TargetBase):
    # ECS has one intermediate canary step (CANARY), so the kind's default canary is
    # 10 % then all (render.ecs_release); gin-deploy:release.steps still overrides it.
    release_steps: ClassVar[tuple[int, ...] | None] = (10, 100)

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
    nat: str = spec_field("nat", "Egress for tasks: `perAz` one NAT gateway per AZ (an AZ "
                          "outage cuts only that AZ's egress), `single` one (cheaper; if its "
                          "AZ fails, no task can pull images, send logs or read secrets), "
                          "`none` tasks in public subnets with public IPs (cheap dev). With "
                          "vpcId: `none` uses publicSubnetIds, else privateSubnetIds.", "perAz",
                          choices=("none", "single", "perAz"))
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
    flow_logs: bool = spec_field(
        "flowLogs", "VPC flow logs (all traffic) to CloudWatch Logs, kept logRetentionDays "
        "(default: true for a new VPC, false with vpcId).", None)
    ingress_cidrs: tuple[str, ...] = spec_field(
        "ingressCidrs", "Who may reach the load balancer on 80/443 (with edge.cdn: only "
        "CloudFront and Route 53's health checkers, on 443).", ("0.0.0.0/0",), check=cidrs)
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
    idle_timeout: int = spec_field(
        "idleTimeout", "Load balancer idle timeout, seconds (default app.idleTimeout - 5); "
        "between app.writeTimeout and app.idleTimeout.", None, min=1, max=4000)
    access_logs: bool = spec_field(
        "accessLogs", "Load balancer access logs to S3: to accessLogsBucket, else to a bucket "
        "made for them (private, SSE-S3, TLS only, kept logRetentionDays).", True)
    access_logs_bucket: str | None = spec_field(
        "accessLogsBucket", "Existing S3 bucket in the target's region (with the ELB log "
        "delivery policy) for access logs, instead of a new one.", None,
        check=lambda v: None if re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", v)
        else f"must be an S3 bucket name, got {v!r}")
    deletion_protection: bool = spec_field(
        "deletionProtection", "The load balancer cannot be deleted or replaced until this is "
        "set to false (and applied) first.", True)
    waf: bool = spec_field(
        "waf", "A WAF web ACL on the load balancer: a per-IP rate limit and AWS's managed "
        "common rule set (not with edge.cdn: put it on CloudFront).", False)
    waf_rate_limit: int = spec_field(
        "wafRateLimit", "WAF: requests per client IP per 5 minutes before it is blocked.",
        2000, min=10, max=2000000000)
    # Deployments and scaling.
    health_check_grace_seconds: int = spec_field(
        "healthCheckGraceSeconds", "Seconds new tasks may fail load balancer health checks.",
        30, min=0, max=3600)
    cpu_target: int = spec_field("cpuTarget", "Autoscaling: target average CPU percent.", 60,
                                 min=10, max=95)
    requests_per_target: int = spec_field("requestsPerTarget", "Autoscaling: target load "
                                          "balancer requests per task per minute.", 1000,
                                          min=1, max=1000000)
    # Images, logs, IAM.
    image: ImageConfig | None = spec_field("image", image_doc(
        "default: app.image; the tasks pull it with the execution role, so an ECR image "
        "needs a repository this account may read, another registry a public image"), None)
    keep_images: int = spec_field("keepImages", "Images the ECR repository keeps.", 20,
                                  min=1, max=10000)
    log_retention_days: int = spec_field(
        "logRetentionDays", "CloudWatch Logs retention.", 30,
        choices=(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                 2192, 2557, 2922, 3288, 3653))
    secret_arns: dict[str, str] = spec_field(
        "secretArns", "Env vars from secrets that already exist, by name: a Secrets Manager "
        "secret's full ARN (`:json-key::` appended picks one key) or an SSM parameter's ARN. "
        "The execution role may read exactly these.", default_factory=dict,
        check=_secret_arns)
    kms_key_arns: tuple[str, ...] = spec_field(
        "kmsKeyArns", "Customer-managed KMS keys the secretArns are encrypted with; the "
        "execution role may decrypt with them only through SSM or Secrets Manager.", (),
        check=_kms_key_arns)
    task_policy_arns: tuple[str, ...] = spec_field(
        "taskPolicyArns", "IAM policies for a task role (default: no task role, so the app "
        "gets no AWS credentials).", (),
        check=lambda v: next((f"must be IAM policy ARNs, got {a!r}" for a in v
                              if not re.match(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/", a)),
                             None))

    def __post_init__(self) -> None:
        fill(self, min_count=self.desired_count, max_count=2 * self.desired_count,
             flow_logs=self.vpc_id is None)

    def resolve(self, cfg: StackConfig) -> Self:
        edge, resolved = cfg.edge, self
        if resolved.image is None and cfg.app.image is not None:
            resolved = replace(resolved, image=cfg.app.image)
        if resolved.hosted_zone is None:
            zone = edge.zone if edge is not None and edge.zone else parent_zone(cfg.domain)
            resolved = replace(resolved, hosted_zone=zone)
        if resolved.idle_timeout is None:
            resolved = replace(resolved,
                               idle_timeout=max(1, cfg.app.idle_timeout - ALB_IDLE_MARGIN_S))
        return resolved

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
        if self.access_logs_bucket is not None and not self.access_logs:
            problems.add(f"{path}.accessLogsBucket", "only applies with accessLogs: true")
        if self.kms_key_arns and not self.secret_arns:
            problems.add(f"{path}.kmsKeyArns", "only applies with secretArns (the keys those "
                         "secrets are encrypted with)")
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
        if app.shutdown_timeout + app.write_timeout > FARGATE_MAX_DRAIN_S:
            problems.add(f"{p}app.shutdownTimeout", f"{app.shutdown_timeout}s does not fit "
                         f"Fargate's 120 s stop timeout together with app.writeTimeout "
                         f"({app.write_timeout}s, the longest request); ecs targets ({where}) "
                         f"need shutdownTimeout + writeTimeout <= {FARGATE_MAX_DRAIN_S}")
        if "." not in domain:
            problems.add(f"{p}domain", f"ecs targets ({where}) need a public DNS name (a Route "
                         f"53 record and an ACM certificate), got {domain!r}")
        for name, value in cfg.secret_env.items():
            if len(value.encode()) > SSM_MAX_SECRET_BYTES:
                problems.add(f"{p}{name}", f"secret is larger than the {SSM_MAX_SECRET_BYTES} "
                             "bytes an SSM parameter holds (ecs targets)")
        for i, target in members:
            assert isinstance(target, EcsTargetConfig)
            target._check_timeouts(f"{p}targets[{i}]", cfg, problems)
            target._check_release(f"{p}targets[{i}]", cfg, problems)
            for name in sorted(target.secret_arns):
                if name in app.env or name in app.secret_env:
                    problems.add(f"{p}targets[{i}].secretArns.{name}", "is also set by "
                                 f"app.{'env' if name in app.env else 'secretEnv'}; keep it "
                                 "in one place")
                elif name in ECS_SET_ENV or name in RESERVED_ENV:
                    problems.add(f"{p}targets[{i}].secretArns.{name}", "is set by gin-deploy "
                                 "and cannot come from a secret")
            zone = target.hosted_zone
            for name in (domain, *(s.removeprefix("*.") for s in target.sans)):
                if name != zone and not name.endswith("." + zone):
                    problems.add(f"{p}targets[{i}].hostedZone", f"{name!r} is not inside the "
                                 f"Route 53 zone {zone!r} (set hostedZone)")
        if cfg.edge is None and len(members) > 1:
            problems.add(f"{p}targets", f"{len(members)} ecs targets would each point "
                         f"{domain!r} at their load balancer; add gin-deploy:edge to route "
                         "across them")

    def _check_release(self, path: str, cfg: StackConfig, problems: Problems) -> None:
        """The release's steps must be a shape ECS shifts traffic in (render.ecs_release)."""
        r = self.release
        try:
            deployment(r.strategy, r.steps, r.bake_seconds)
        except ECSShapeError as e:
            # Name the steps where they were written (this target's, else the stack's).
            own = self.release_config is not None and self.release_config.steps is not None
            key = f"{path}.release.steps" if own else f"{NAMESPACE}:release.steps"
            fix = "" if own else f" (set {path}.release.steps for this ecs target)"
            problems.add(key, f"{e}{fix}")

    def _check_timeouts(self, path: str, cfg: StackConfig, problems: Problems) -> None:
        """write timeout < load balancer idle timeout < app idle timeout (docs/ecs.md)."""
        app, idle = cfg.app, self.idle_timeout
        if idle >= app.idle_timeout:
            problems.add(f"{path}.idleTimeout", f"{idle}s must be below app.idleTimeout "
                         f"({app.idle_timeout}s): the load balancer, not the app, must close "
                         "idle connections, or it sends requests on connections the app is "
                         "closing (502)")
        elif idle <= app.write_timeout:
            problems.add(f"{path}.idleTimeout", f"{idle}s (default app.idleTimeout - "
                         f"{ALB_IDLE_MARGIN_S}) must exceed app.writeTimeout "
                         f"({app.write_timeout}s): the load balancer would close a connection "
                         "still waiting for a response (504)")

    def release_strategy_default(self, edge: EdgeConfig | None) -> str | None:
        # ECS's traffic-shifting strategies cannot run behind the CDN (check_edge says
        # why), so there a target deploys rolling, guarded by its rollback alarms.
        return "rolling" if edge is not None and edge.cdn else None

    def check_edge(self, edge: EdgeConfig, domain: str, path: str, problems: Problems) -> None:
        super().check_edge(edge, domain, path, problems)
        if edge.cdn and self.ingress_cidrs != ("0.0.0.0/0",):
            problems.add(f"{path}.ingressCidrs", "does not apply with edge.cdn: the load "
                         "balancer then takes 443 only from CloudFront's origin-facing "
                         "servers and Route 53's health checkers (their prefix lists)")
        if edge.cdn and self.waf:
            problems.add(f"{path}.waf", "does not apply with edge.cdn: behind CloudFront the "
                         "load balancer sees only CloudFront's addresses, so a per-IP rate "
                         "limit would throttle whole edge locations; put the web ACL on "
                         "CloudFront")
        strategy = self.release.strategy
        if edge.cdn and strategy != "rolling":
            # Only an explicit choice gets here: behind the CDN the default is rolling.
            problems.add(f"{path}.release.strategy", f"{strategy} cannot be combined "
                         "with edge.cdn on an ecs target: ECS shifts traffic by re-weighting "
                         "one production listener rule, and the origin lock needs a second "
                         "one (the health check path, which Route 53 checks without the "
                         "secret header) that ECS would not move: after a release it would "
                         "forward the health checks to the emptied target group; set "
                         f"{path}.release.strategy: rolling (the default behind edge.cdn)")
