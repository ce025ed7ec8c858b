"""The load balancer part of an EcsTarget: certificate, ALB, target groups, listeners.

* a new ACM certificate validated through Route 53 (DnsValidatedCertificate; the
  HTTPS listener takes its ARN, so it waits for ISSUED), or an existing one;
* the ALB: TLS 1.3/1.2 policy, HTTP only redirects, HSTS and nosniff added by the
  listener, invalid header fields dropped, X-Forwarded-For appended (preserved
  behind the CDN's lock, where CloudFront is the only client);
* the target group checks readiness and drains like the app;
* behind a CDN the origin lock: the HTTPS listener answers 403 unless the request
  carries CloudFront's secret header (or asks for the health check path);
* traffic shifting (BLUE_GREEN, CANARY, LINEAR): a second target group and the
  listener rule ECS re-weights, with the role ECS does it with (allowed exactly that
  rule, its listener and the two target groups);
* access logs (on by default), deletion protection (on), a WAF web ACL (opt-in):
  see audit.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.certificate import (
    DnsValidatedCertificate,
    DnsValidatedCertificateArgs,
    ZoneValidationRecords,
)
from components.ecs.audit import (
    AccessLogs,
    access_logs_prefix,
    build_access_log_bucket,
    build_web_acl,
)
from components.ecs.common import Account, Scope, to_json
from components.ecs.network import EcsNetwork
from components.endpoint import EdgeOrigin
from gin_deploy.render import ecs as render
from gin_deploy.render.ecs_release import load_balancer_role_policy
from gin_deploy.render.headers import HstsPolicy

# A TLS 1.3 + 1.2 policy restricted to AEAD (GCM) suites with forward secrecy.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
# Target group health check on the ready path: two passes in, three failures out.
HEALTH_INTERVAL_S = 10
HEALTH_TIMEOUT_S = 5
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 3
# Origin lock rules: the health check path first, then the secret header.
OPEN_PATH_RULE_PRIORITY = 10
ORIGIN_VERIFY_RULE_PRIORITY = 20


@dataclass(frozen=True)
class EcsLoadBalancerArgs:
    # An existing ACM certificate in the target's region; None: a new DNS-validated one.
    certificate_arn: str | None = None
    # More names on a new certificate (`*.` wildcards allowed).
    sans: tuple[str, ...] = ()
    # Below the app's IDLE_TIMEOUT, above its WRITE_TIMEOUT (docs/ecs.md#timeouts).
    idle_timeout: int = 55
    # Access logs: to `access_logs_bucket` (an existing bucket with the ELB log delivery
    # policy), else to a bucket made for them.
    access_logs: bool = True
    access_logs_bucket: str | None = None
    # The ALB cannot be deleted (nor replaced) until this is turned off.
    deletion_protection: bool = True
    # A WAF web ACL: per-IP rate limit (requests per 5 minutes) and AWS's common rules.
    waf: bool = False
    waf_rate_limit: int = 2000
    hsts: HstsPolicy = field(default_factory=HstsPolicy)
    # The stack's ACM validation records in the zone (one writer per record).
    validation_records: ZoneValidationRecords | None = None

    def __post_init__(self) -> None:
        if self.access_logs_bucket is not None and not self.access_logs:
            raise ValueError("access_logs_bucket: only applies with access_logs")


@dataclass(frozen=True)
class EcsLoadBalancer:
    certificate_arn: pulumi.Output[str]
    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    # Traffic shifting: the other target group (each release starts in the idle one).
    green_target_group: aws.lb.TargetGroup | None
    https_listener: aws.lb.Listener
    http_listener: aws.lb.Listener
    # Behind a CDN: the rules that forward locked traffic (health check path, secret header).
    origin_rules: list[aws.lb.ListenerRule]
    # What the service waits for: listeners, rules, the shifting role's policy.
    ready: list[pulumi.Resource]
    # Traffic shifting: the service's settings for it.
    advanced: aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs | None


@dataclass(frozen=True)
class Backend:
    """What the load balancer sends requests to: the app's tasks."""

    port: int
    ready_path: str
    # How long a deregistered task keeps its in-flight requests: the longest request
    # (the app's write timeout) plus its drain.
    deregistration_delay_s: int


def build_load_balancer(scope: Scope, args: EcsLoadBalancerArgs, *, domain: str,
                        zone_id: pulumi.Output[str] | None, network: EcsNetwork,
                        backend: Backend, traffic_shifting: bool, edge: EdgeOrigin | None,
                        account: Account, log_retention_days: int = 30) -> EcsLoadBalancer:
    name = scope.name
    locked = edge is not None and edge.locked
    certificate_arn = _certificate(scope, args, domain, zone_id, edge)
    logs = None
    if args.access_logs_bucket is not None:
        logs = AccessLogs(bucket=pulumi.Output.from_input(args.access_logs_bucket),
                          prefix=access_logs_prefix(scope), ready=[])
    elif args.access_logs:
        logs = build_access_log_bucket(scope, account, log_retention_days)
    alb = aws.lb.LoadBalancer(
        f"{name}-alb",
        load_balancer_type="application",
        internal=False,
        ip_address_type="ipv4",
        security_groups=network.alb_security_group_ids,
        subnets=network.public_subnet_ids,
        idle_timeout=args.idle_timeout,
        enable_http2=True,
        drop_invalid_header_fields=True,
        desync_mitigation_mode="defensive",
        # Behind the CDN's lock only CloudFront gets through, and its X-Forwarded-For
        # ends with the viewer's address: pass it on unchanged (docs/edge.md).
        xff_header_processing_mode="preserve" if locked else "append",
        enable_xff_client_port=False,
        preserve_host_header=False,
        access_logs=aws.lb.LoadBalancerAccessLogsArgs(
            bucket=logs.bucket, enabled=True, prefix=logs.prefix,
        ) if logs is not None else None,
        enable_deletion_protection=args.deletion_protection,
        # ELB checks that it may write to the bucket when logs are turned on.
        opts=scope.opts(depends_on=logs.ready if logs is not None else None),
    )
    if args.waf:
        build_web_acl(scope, alb.arn, args.waf_rate_limit)
    target_group = _target_group(scope, "tg", network, backend)
    green = _target_group(scope, "tg-green", network, backend) if traffic_shifting else None
    https = aws.lb.Listener(
        f"{name}-https",
        load_balancer_arn=alb.arn,
        port=443,
        protocol="HTTPS",
        ssl_policy=SSL_POLICY,
        certificate_arn=certificate_arn,
        default_actions=[
            _fixed_response("404", "not found") if green is not None
            else _fixed_response("403", "forbidden") if locked
            else aws.lb.ListenerDefaultActionArgs(type="forward",
                                                  target_group_arn=target_group.arn),
        ],
        routing_http_response_strict_transport_security_header_value=args.hsts.value,
        routing_http_response_x_content_type_options_header_value="nosniff",
        routing_http_response_server_enabled=False,
        opts=scope.opts(),
    )
    http = aws.lb.Listener(
        f"{name}-http",
        load_balancer_arn=alb.arn,
        port=80,
        protocol="HTTP",
        default_actions=[aws.lb.ListenerDefaultActionArgs(
            type="redirect",
            redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                protocol="HTTPS", port="443", status_code="HTTP_301"),
        )],
        opts=scope.opts(),
    )
    origin_rules = _origin_lock(scope, edge, https, target_group) \
        if edge is not None and locked else []
    ready: list[pulumi.Resource] = [https, http, *origin_rules]
    advanced = None
    if green is not None:
        rule, policy, advanced = _traffic_shifting(scope, https, target_group, green)
        ready += [rule, policy]
    return EcsLoadBalancer(
        certificate_arn=certificate_arn, load_balancer=alb, target_group=target_group,
        green_target_group=green, https_listener=https, http_listener=http,
        origin_rules=origin_rules, ready=ready, advanced=advanced)


def _certificate(scope: Scope, args: EcsLoadBalancerArgs, domain: str,
                 zone_id: pulumi.Output[str] | None,
                 edge: EdgeOrigin | None) -> pulumi.Output[str]:
    if args.certificate_arn is not None:
        return pulumi.Output.from_input(args.certificate_arn)
    if zone_id is None:
        raise ValueError(f"{scope.name}: a new certificate needs the Route 53 zone of {domain}")
    # Behind edge routing the target also answers (and health checks reach it by)
    # its own name at the edge.
    sans = (*args.sans, *(edge.names if edge is not None else ()))
    cert = DnsValidatedCertificate(
        f"{scope.name}-cert",
        DnsValidatedCertificateArgs(domain=domain, zone_id=zone_id, sans=sans,
                                    shared_records=args.validation_records),
        opts=scope.opts(),
        # Its resources were the target's own children before the component existed.
        moved_from=scope.parent,
    )
    return cert.certificate_arn


def _fixed_response(status: str, body: str) -> aws.lb.ListenerDefaultActionArgs:
    return aws.lb.ListenerDefaultActionArgs(
        type="fixed-response",
        fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
            content_type="text/plain", message_body=body, status_code=status))


def _target_group(scope: Scope, role: str, network: EcsNetwork,
                  backend: Backend) -> aws.lb.TargetGroup:
    return aws.lb.TargetGroup(
        f"{scope.name}-{role}",
        target_type="ip",
        protocol="HTTP",
        protocol_version="HTTP1",
        port=backend.port,
        vpc_id=network.vpc_id,
        load_balancing_algorithm_type="least_outstanding_requests",
        deregistration_delay=backend.deregistration_delay_s,
        health_check=aws.lb.TargetGroupHealthCheckArgs(
            enabled=True,
            protocol="HTTP",
            port="traffic-port",
            path=backend.ready_path,
            matcher="200",
            interval=HEALTH_INTERVAL_S,
            timeout=HEALTH_TIMEOUT_S,
            healthy_threshold=HEALTHY_THRESHOLD,
            unhealthy_threshold=UNHEALTHY_THRESHOLD,
        ),
        opts=scope.opts(),
    )


def _origin_lock(scope: Scope, edge: EdgeOrigin, https: aws.lb.Listener,
                 target_group: aws.lb.TargetGroup) -> list[aws.lb.ListenerRule]:
    """Forward only the health check path and requests with the secret header;
    the listener's default action answers everything else with 403."""
    if edge.verify_header is None or edge.verify_value is None:
        raise ValueError(f"{scope.name}: a locked edge origin needs verify_header and "
                         "verify_value")
    forward = [aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)]
    rules = []
    if edge.open_path is not None:
        rules.append(aws.lb.ListenerRule(
            f"{scope.name}-open-path",
            listener_arn=https.arn,
            priority=OPEN_PATH_RULE_PRIORITY,
            conditions=[aws.lb.ListenerRuleConditionArgs(
                path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(
                    values=[edge.open_path]))],
            actions=forward,
            opts=scope.opts()))
    rules.append(aws.lb.ListenerRule(
        f"{scope.name}-origin-verify",
        listener_arn=https.arn,
        priority=ORIGIN_VERIFY_RULE_PRIORITY,
        conditions=[aws.lb.ListenerRuleConditionArgs(
            http_header=aws.lb.ListenerRuleConditionHttpHeaderArgs(
                http_header_name=edge.verify_header,
                values=[pulumi.Output.secret(edge.verify_value)]))],
        actions=forward,
        opts=scope.opts()))
    return rules


def _traffic_shifting(scope: Scope, https: aws.lb.Listener, blue: aws.lb.TargetGroup,
                      green: aws.lb.TargetGroup,
                      ) -> tuple[aws.lb.ListenerRule, aws.iam.RolePolicy,
                                 aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs]:
    """The production rule ECS shifts between the two target groups, and its role."""
    name = scope.name
    # ECS shifts traffic by rewriting this rule's weights: do not fight it.
    rule = aws.lb.ListenerRule(
        f"{name}-https-rule",
        listener_arn=https.arn,
        priority=1,
        conditions=[aws.lb.ListenerRuleConditionArgs(
            path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=["/*"]))],
        actions=[aws.lb.ListenerRuleActionArgs(
            type="forward",
            forward=aws.lb.ListenerRuleActionForwardArgs(target_groups=[
                aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=blue.arn, weight=100),
                aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=green.arn, weight=0),
            ]),
        )],
        opts=scope.opts(ignore_changes=["actions"]),
    )
    role = aws.iam.Role(
        f"{name}-ecs-lb-role",
        assume_role_policy=to_json(render.ecs_service_trust_policy()),
        description=f"ECS traffic shifting for {scope.label}",
        opts=scope.opts())
    # Instead of AmazonECSInfrastructureRolePolicyForLoadBalancers (every listener,
    # rule and target group of the account): this rule, listener and pair only.
    policy = aws.iam.RolePolicy(
        f"{name}-ecs-lb-policy", role=role.name,
        policy=pulumi.Output.all(https.arn, rule.arn, blue.arn, green.arn).apply(
            lambda a: to_json(load_balancer_role_policy(
                listener_arn=a[0], rule_arn=a[1], target_group_arns=[a[2], a[3]]))),
        opts=scope.opts())
    advanced = aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs(
        alternate_target_group_arn=green.arn,
        production_listener_rule=rule.arn,
        role_arn=role.arn,
    )
    return rule, policy, advanced
