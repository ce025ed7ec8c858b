"""`gin-deploy:release` and `targets[].release`: how a new version goes out.

The same words on every kind (the config reference says how each implements them):
`strategy` rolling | canary | blueGreen, `steps` (percent of traffic per canary step),
`bakeSeconds` (observation time per step), and the thresholds the new release's own
requests are judged by (`maxErrorRate`, `maxP95Ms`, `minRequests`).

Both keys parse into `ReleaseConfig`, whose fields stay None where the config is silent:
a target's `release` only overrides what it sets. The stack parse resolves each target's
concrete `ReleasePolicy` (target value, else stack value, else the default here; the
strategy's default depends on the target's size), so nothing downstream sees a None.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from gin_deploy.config.schema import ParseContext, Problems, spec_field

STRATEGIES = ("rolling", "canary", "blueGreen")
# A target with fewer instances/tasks/replicas than this defaults to rolling.
CANARY_MIN_SCALE = 2


def _steps(value: tuple[int, ...]) -> str | None:
    if not value:
        return "must list at least one step (percent of traffic), e.g. [10, 50, 100]"
    if any(not 1 <= v <= 100 for v in value):
        return f"every step must be a percent in 1..100, got {list(value)}"
    if any(b <= a for a, b in pairwise(value)):
        return f"must increase step by step, got {list(value)}"
    if value[-1] != 100:
        return (f"must end at 100 (the last step is baked with all traffic on the new "
                f"release before it is promoted), got {list(value)}")
    return None


def _rate(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be a share in 0..1 (0.01 = 1%), got {value!r}"


@dataclass(frozen=True)
class ReleasePolicy:
    """One target's release, resolved: concrete values only."""

    strategy: str
    steps: tuple[int, ...]
    bake_seconds: int
    max_error_rate: float
    max_p95_ms: int
    min_requests: int


# The documented defaults, in one place (the reference shows them in each key's text).
DEFAULTS = ReleasePolicy(strategy="canary", steps=(10, 50, 100), bake_seconds=60,
                         max_error_rate=0.01, max_p95_ms=500, min_requests=100)


@dataclass(frozen=True)
class ReleaseConfig:
    strategy: str | None = spec_field(
        "strategy", "How a new version replaces the old one: `rolling` (instances restart "
        "in place, gated on readiness), `canary` (the new release runs beside the old one "
        "and takes `steps` of the traffic, each judged after `bakeSeconds`), `blueGreen` "
        "(beside the old one, all traffic at once, judged, old one kept until it passes). "
        "Default: canary for targets with 2 or more instances/tasks/replicas, else rolling.",
        None, choices=STRATEGIES)
    steps: tuple[int, ...] | None = spec_field(
        "steps", "canary: percent of traffic on the new release per step, increasing, "
        "ending at 100 (default [10, 50, 100]).", None, check=_steps)
    bake_seconds: int | None = spec_field(
        "bakeSeconds", "Observation time per step before it is judged (default 60; 0: no "
        "traffic analysis, readiness only).", None, min=0, max=3600)
    max_error_rate: float | None = spec_field(
        "maxErrorRate", "Highest share of 5xx responses of the new release (default 0.01).",
        None, check=_rate)
    max_p95_ms: int | None = spec_field(
        "maxP95Ms", "Highest p95 response time of the new release, ms (default 500).", None,
        min=1, max=600000)
    min_requests: int | None = spec_field(
        "minRequests", "Requests of the new release a step must see before it is judged; "
        "fewer extend the bake once, then the release fails as inconclusive (default 100; "
        "0 judges whatever arrived).", None, min=0, max=10000000)

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        if self.steps is not None and self.strategy in ("rolling", "blueGreen"):
            problems.add(f"{path}.steps", f"only applies to strategy canary ({self.strategy} "
                         "moves all traffic at once)")

    def resolve(self, stack: ReleaseConfig, scale: int,
                default_steps: tuple[int, ...] | None = None,
                default_strategy: str | None = None) -> ReleasePolicy:
        """This target's release: its own values, else the stack's, else the defaults
        (`default_steps`: the kind's own default steps, where it has one;
        `default_strategy`: the kind's default where the size-based one cannot apply)."""
        def pick(name: str) -> Any:
            own = getattr(self, name)
            if own is not None:
                return own
            shared = getattr(stack, name)
            return shared if shared is not None else getattr(DEFAULTS, name)

        strategy = self.strategy or stack.strategy or default_strategy or (
            "canary" if scale >= CANARY_MIN_SCALE else "rolling")
        if strategy != "canary":
            steps: tuple[int, ...] = (100,)
        elif self.steps is None and stack.steps is None and default_steps is not None:
            steps = default_steps
        else:
            steps = pick("steps")
        return ReleasePolicy(strategy=strategy, steps=tuple(steps),
                             bake_seconds=pick("bake_seconds"),
                             max_error_rate=float(pick("max_error_rate")),
                             max_p95_ms=pick("max_p95_ms"), min_requests=pick("min_requests"))
