"""The alarms an EcsTarget's deployments roll back on: 5xx rate and unhealthy tasks.

Both watch every target group the service uses (two with blue/green: a new release
serves from the other one), summed with metric math, so one pair of alarms covers
both strategies. The service lists them in its deployment `alarms` with rollback:
ECS fails and rolls back a deployment while either is in ALARM, on top of the
circuit breaker (which only sees tasks that fail to start or to become healthy).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.ecs.common import Scope

NAMESPACE = "AWS/ApplicationELB"
PERIOD_S = 60
# An alarm fires on 2 bad minutes out of 3: one odd minute is not a bad release.
EVALUATION_PERIODS = 3
DATAPOINTS_TO_ALARM = 2
# Minutes with fewer requests than this count as healthy: 1 error in 2 requests
# is not a 50 % error rate worth a rollback.
MIN_REQUESTS = 10


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


def build_alarms(scope: Scope, *, load_balancer: pulumi.Input[str],
                 target_groups: Sequence[pulumi.Input[str]],
                 error_percent: int) -> list[aws.cloudwatch.MetricAlarm]:
    """`load_balancer` and `target_groups` are ARN suffixes (the metrics' dimensions)."""
    count = len(target_groups)
    errors = [q for i, tg in enumerate(target_groups) for q in (
        _metric(f"e{i}", "HTTPCode_Target_5XX_Count", "Sum", load_balancer, tg),
        _metric(f"r{i}", "RequestCount", "Sum", load_balancer, tg))]
    error_rate = aws.cloudwatch.MetricAlarm(
        f"{scope.name}-alarm-5xx",
        alarm_description=f"{scope.label}: more than {error_percent} % of requests answered "
                          "5xx by the tasks; deployments roll back on it",
        metric_queries=[
            *errors,
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="errors", expression=_sum("e", count), return_data=False),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="requests", expression=_sum("r", count), return_data=False),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="rate", label="5xx percent of requests", return_data=True,
                expression=f"IF(requests >= {MIN_REQUESTS}, 100 * errors / requests, 0)"),
        ],
        comparison_operator="GreaterThanThreshold",
        threshold=float(error_percent),
        evaluation_periods=EVALUATION_PERIODS,
        datapoints_to_alarm=DATAPOINTS_TO_ALARM,
        treat_missing_data="notBreaching",
        opts=scope.opts(),
    )
    unhealthy = aws.cloudwatch.MetricAlarm(
        f"{scope.name}-alarm-unhealthy",
        alarm_description=f"{scope.label}: tasks failing the load balancer's health check; "
                          "deployments roll back on it",
        metric_queries=[
            *(_metric(f"u{i}", "UnHealthyHostCount", "Maximum", load_balancer, tg)
              for i, tg in enumerate(target_groups)),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="unhealthy", label="unhealthy tasks", expression=_sum("u", count),
                return_data=True),
        ],
        comparison_operator="GreaterThanThreshold",
        threshold=0.0,
        evaluation_periods=EVALUATION_PERIODS,
        datapoints_to_alarm=DATAPOINTS_TO_ALARM,
        treat_missing_data="notBreaching",
        opts=scope.opts(),
    )
    return [error_rate, unhealthy]
