"""An ECS target's release (issue 14), as ECS and CloudWatch take it: pure functions.

* `deployment`: a release's strategy and steps -> ECS's native deployment strategy.
  ECS shifts production traffic in one of four fixed shapes: `ROLLING` (no shift),
  `BLUE_GREEN` (all at once), `CANARY` (one share, then the rest) and `LINEAR` (equal
  shares). A canary of `[p, 100]` is `CANARY` p %, equal steps `[s, 2s, ..., 100]`
  are `LINEAR` s %; any other list has no ECS shape and is refused (ECSShapeError).
* `alarm_window`, `min_requests_per_minute`: how the rollback alarms judge a step.
* `load_balancer_role_policy`: what ECS may do to the load balancer while it shifts.

The ranges are ECS's (its API reference; botocore's model carries them only as text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from gin_deploy.render.ecs import IAM_VERSION

STRATEGIES = ("ROLLING", "BLUE_GREEN", "CANARY", "LINEAR")
MAX_BAKE_MINUTES = 1440       # every ECS bake time: 0..1440 minutes
CANARY_PERCENT = (0.1, 100.0)  # multiples of 0.1
LINEAR_STEP_PERCENT = (3.0, 100.0)
# The rollback alarms look back at most this many one-minute periods.
MAX_ALARM_MINUTES = 5


class ECSShapeError(ValueError):
    """The release's steps have no ECS deployment strategy."""


@dataclass(frozen=True)
class Deployment:
    """ECS's deployment configuration for one release."""

    strategy: str                 # one of STRATEGIES
    # CANARY: the canary's share; LINEAR: each step's share; else None.
    percent: float | None = None
    # Per step (CANARY, LINEAR), and after all traffic moved (BLUE_GREEN, CANARY, LINEAR).
    bake_minutes: int = 0

    @property
    def shifts_traffic(self) -> bool:
        """Two target groups and a listener rule ECS re-weights (all but ROLLING)."""
        return self.strategy != "ROLLING"

    def api(self) -> dict[str, Any]:
        """The `strategy` part of CreateService's deploymentConfiguration."""
        config: dict[str, Any] = {"strategy": self.strategy}
        if self.shifts_traffic:
            config["bakeTimeInMinutes"] = self.bake_minutes
        if self.strategy == "CANARY":
            config["canaryConfiguration"] = {"canaryPercent": self.percent,
                                             "canaryBakeTimeInMinutes": self.bake_minutes}
        if self.strategy == "LINEAR":
            config["linearConfiguration"] = {"stepPercent": self.percent,
                                             "stepBakeTimeInMinutes": self.bake_minutes}
        return config


def bake_minutes(bake_seconds: int) -> int:
    """ECS bakes in whole minutes: a bake is rounded up, never cut short."""
    return min(MAX_BAKE_MINUTES, math.ceil(bake_seconds / 60))


def deployment(strategy: str, steps: tuple[int, ...], bake_seconds: int) -> Deployment:
    """A resolved release (strategy rolling | canary | blueGreen) as ECS deploys it."""
    bake = bake_minutes(bake_seconds)
    if strategy == "rolling":
        return Deployment("ROLLING")
    if strategy == "blueGreen" or tuple(steps) == (100,):
        return Deployment("BLUE_GREEN", bake_minutes=bake)
    if strategy != "canary":
        raise ValueError(f"unknown release strategy {strategy!r}")
    if len(steps) == 2 and steps[1] == 100:
        return Deployment("CANARY", percent=float(steps[0]), bake_minutes=bake)
    first = steps[0]
    even = steps[-1] == 100 and all(b - a == first for a, b in pairwise((0, *steps)))
    if even and first >= LINEAR_STEP_PERCENT[0]:
        return Deployment("LINEAR", percent=float(first), bake_minutes=bake)
    raise ECSShapeError(
        f"{list(steps)} has no ECS deployment strategy: ECS shifts traffic either in one "
        "canary step and then the rest (CANARY: [p, 100], e.g. [10, 100]) or in equal steps "
        "of at least 3 percent (LINEAR: [s, 2s, ..., 100], e.g. [25, 50, 75, 100])")


def alarm_window(bake_seconds: int) -> tuple[int, int]:
    """(evaluation periods, datapoints to alarm) of one minute each: the majority of
    the step's minutes (at most MAX_ALARM_MINUTES), so a bad step alarms within its bake."""
    minutes = max(1, min(MAX_ALARM_MINUTES, bake_minutes(bake_seconds)))
    return minutes, minutes // 2 + 1


def min_requests_per_minute(min_requests: int, bake_seconds: int) -> int:
    """A step must see `min_requests` over its bake: a minute is judged only with its
    share of them (at least one request, so a share is never 0/0)."""
    return max(1, math.ceil(min_requests / max(1, bake_minutes(bake_seconds))))


def load_balancer_role_policy(*, listener_arn: str, rule_arn: str,
                              target_group_arns: list[str]) -> dict[str, Any]:
    """The infrastructure role's permissions: re-weight this one rule (and read the
    listener it sits on), move tasks between these two target groups. Describe calls
    have no resource-level permissions in ELB, so they stay on `*`."""
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {"Sid": "ReadLoadBalancer", "Effect": "Allow", "Resource": "*",
             "Action": ["elasticloadbalancing:DescribeListeners",
                        "elasticloadbalancing:DescribeRules",
                        "elasticloadbalancing:DescribeTargetGroups",
                        "elasticloadbalancing:DescribeTargetHealth"]},
            {"Sid": "ShiftProductionRule", "Effect": "Allow", "Resource": [rule_arn],
             "Action": ["elasticloadbalancing:ModifyRule"]},
            {"Sid": "ProductionListener", "Effect": "Allow", "Resource": [listener_arn],
             "Action": ["elasticloadbalancing:ModifyListener"]},
            {"Sid": "MoveTasks", "Effect": "Allow", "Resource": sorted(target_group_arns),
             "Action": ["elasticloadbalancing:DeregisterTargets",
                        "elasticloadbalancing:RegisterTargets"]},
        ],
    }
