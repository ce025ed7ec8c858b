"""The alarms an EcsTarget's deployments roll back on: the release's 5xx share, its p95
response time, and unhealthy tasks.

ECS judges a deployment by alarm state only: the service lists these in its deployment
`alarms` with rollback, and ECS rolls back while any is in ALARM during the deployment
(each traffic step's bake and the bake after the last one; the circuit breaker covers
tasks that never get healthy). ECS does not tell an alarm which target group holds the
new release - with traffic shifting the two groups swap roles every release - so the
5xx and p95 alarms judge each target group on its own requests and take the worst
(`MAX`): the new release's group, which only its requests reach, is always judged on
its own numbers, not diluted by the old one's traffic (the old one's are judged too, so
a failing old release also stops a deployment). A minute with fewer than the step's
share of `minRequests` in a group is not judged for that group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.ecs.common import Scope
from gin_deploy.render import ecs_release

NAMESPACE = "AWS/ApplicationELB"
PERIOD_S = 60
# Unhealthy tasks: 2 bad minutes out of 3 (one flapping check is not a bad release).
UNHEALTHY_PERIODS = 3
UNHEALTHY_DATAPOINTS = 2


@dataclass(frozen=True)
class Thresholds:
    """What a release must hold (the target's `release`)."""

    max_error_rate: float      # 5xx share of requests, 0..1
    max_p95_ms: int
    # Requests a minute must see in a target group before it is judged.
    min_requests_per_minute: int
    # (evaluation periods, datapoints to alarm), one minute each.
    window: tuple[int, int]


def _metric(query_id: str, metric: str, stat: str, load_balancer: pulumi.Input[str],
            target_group: pulumi.Input[str]) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        return_data=False,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=NAMESPACE, metric_name=metric, period=PERIOD_S, stat=stat,
            dimensions={"LoadBalancer": load_balancer, "TargetGroup": target_group}),
    )


def _sum(prefix: str, count: int) -> str:
    """`FILL(p0, 0) + FILL(p1, 0)`: a target group without traffic reports nothing."""
    return " + ".join(f"FILL({prefix}{i}, 0)" for i in range(count))


def _worst(value: str, count: int, floor: int) -> str:
    """The worst group's `value` (with `{i}` its index) among those with `floor`+ requests."""
    judged = [f"IF(FILL(r{i}, 0) >= {floor}, {value.format(i=i)}, 0)" for i in range(count)]
    return judged[0] if count == 1 else f"MAX([{', '.join(judged)}])"


def error_rate_expression(count: int, floor: int) -> str:
    return _worst("FILL(e{i}, 0) / FILL(r{i}, 0)", count, floor)


def p95_expression(count: int, floor: int) -> str:
    return _worst("FILL(t{i}, 0)", count, floor)


def _alarm(scope: Scope, role: str, description: str,
           queries: list[aws.cloudwatch.MetricAlarmMetricQueryArgs], threshold: float,
           window: tuple[int, int]) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        f"{scope.name}-alarm-{role}",
        alarm_description=f"{scope.label}: {description}; deployments roll back on it",
        metric_queries=queries,
        comparison_operator="GreaterThanThreshold",
        threshold=threshold,
        evaluation_periods=window[0],
        datapoints_to_alarm=window[1],
        treat_missing_data="notBreaching",
        opts=scope.opts(),
    )


def build_alarms(scope: Scope, *, load_balancer: pulumi.Input[str],
                 target_groups: Sequence[pulumi.Input[str]],
                 thresholds: Thresholds) -> list[aws.cloudwatch.MetricAlarm]:
    """`load_balancer` and `target_groups` are ARN suffixes (the metrics' dimensions)."""
    count, t = len(target_groups), thresholds
    requests = [_metric(f"r{i}", "RequestCount", "Sum", load_balancer, tg)
                for i, tg in enumerate(target_groups)]
    error_rate = _alarm(
        scope, "5xx", f"a target group's share of 5xx answers from the tasks above "
        f"{t.max_error_rate:g}", [
            *requests,
            *(_metric(f"e{i}", "HTTPCode_Target_5XX_Count", "Sum", load_balancer, tg)
              for i, tg in enumerate(target_groups)),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="rate", label="5xx share of the worst target group", return_data=True,
                expression=error_rate_expression(count, t.min_requests_per_minute)),
        ], float(t.max_error_rate), t.window)
    p95 = _alarm(
        scope, "p95", f"a target group's p95 response time above {t.max_p95_ms} ms", [
            *requests,
            *(_metric(f"t{i}", "TargetResponseTime", "p95", load_balancer, tg)
              for i, tg in enumerate(target_groups)),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="p95", label="p95 response time (s) of the worst target group",
                return_data=True, expression=p95_expression(count, t.min_requests_per_minute)),
        ], t.max_p95_ms / 1000, t.window)
    unhealthy = _alarm(
        scope, "unhealthy", "tasks failing the load balancer's health check", [
            *(_metric(f"u{i}", "UnHealthyHostCount", "Maximum", load_balancer, tg)
              for i, tg in enumerate(target_groups)),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="unhealthy", label="unhealthy tasks", expression=_sum("u", count),
                return_data=True),
        ], 0.0, (UNHEALTHY_PERIODS, UNHEALTHY_DATAPOINTS))
    return [error_rate, p95, unhealthy]


def thresholds(*, max_error_rate: float, max_p95_ms: int, min_requests: int,
               bake_seconds: int) -> Thresholds:
    return Thresholds(
        max_error_rate=max_error_rate, max_p95_ms=max_p95_ms,
        min_requests_per_minute=ecs_release.min_requests_per_minute(min_requests,
                                                                    bake_seconds),
        window=ecs_release.alarm_window(bake_seconds))
