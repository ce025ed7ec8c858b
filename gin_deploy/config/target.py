"""`gin-deploy:targets[]`: what every kind has, and the hooks each kind fills in.

A kind's class owns its rules: `check` (its own fields, run by the schema once they
parse), `resolve` (defaults that need another section, run by the stack parse),
`check_kind` (rules over all targets of the kind and the rest of the stack) and
`check_edge` (what edge routing needs of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from gin_deploy.config.checks import is_dns_name, region_name, resource_name
from gin_deploy.config.edge import target_origin_name
from gin_deploy.config.release import ReleaseConfig, ReleasePolicy
from gin_deploy.config.schema import ParseContext, Problems, spec_field

if TYPE_CHECKING:
    from gin_deploy.config.edge import EdgeConfig
    from gin_deploy.config.stack import StackConfig

TARGET_KINDS = ("host", "ecs", "kubernetes")


def cast_none() -> Any:
    """The placeholder of a field the stack parse resolves (never None after it)."""
    return None


@dataclass(frozen=True)
class TargetBase:
    # The kind gets its certificate for the domain from tls.acme (with tls.mode acme).
    acme_certificates: ClassVar[bool] = False
    # The kind's default `release.steps` when the config sets none (None: DEFAULTS').
    release_steps: ClassVar[tuple[int, ...] | None] = None

    name: str = spec_field("name", "Unique target name; prefixes its resources.",
                           check=resource_name)
    kind: str = spec_field("kind", "Target kind.", choices=TARGET_KINDS)
    weight: int = spec_field("weight", "Share of traffic at the edge (0 = deployed, out of "
                             "rotation).", 1, min=0, max=255)
    region: str | None = spec_field("region", "Region (required by latency routing; ecs: the "
                                    "AWS region).", None, check=region_name)
    release_config: ReleaseConfig | None = spec_field(
        "release", "This target's overrides of `gin-deploy:release` (same keys; what it "
        "leaves out comes from there).", None)
    # Resolved by the stack parse from release_config, gin-deploy:release and `scale`.
    release: ReleasePolicy = field(default=cast_none(), compare=True)

    @property
    def scale(self) -> int:
        """Instances/tasks/replicas: a target of 2 or more defaults to a canary release."""
        return 1

    @property
    def tls_terminators(self) -> int:
        """How many machines (or load balancers) of the target answer the domain with their
        own certificate: more than one in the stack and HTTP-01 cannot prove it."""
        return 1

    @property
    def dns01_credentials(self) -> bool:
        """The target brings credentials for DNS-01 (then the stack's default challenge)."""
        return False

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        """Rules across this target's own fields (run once they all parsed)."""

    def resolve(self, cfg: StackConfig) -> Self:
        """This target with the defaults that depend on other sections filled in
        (`cfg` has every section but the targets)."""
        return self

    @classmethod
    def check_kind(cls, cfg: StackConfig, members: Sequence[tuple[int, TargetBase]],
                   problems: Problems) -> None:
        """Rules over the targets of this kind: (index in the config list, target)."""

    def release_strategy_default(self, edge: EdgeConfig | None) -> str | None:
        """The strategy this target gets when no config sets one; None: canary from
        2 instances/tasks/replicas, else rolling."""
        return None

    def check_edge(self, edge: EdgeConfig, domain: str, path: str, problems: Problems) -> None:
        """What edge routing needs of this target."""
        if not is_dns_name(target_origin_name(self.name, domain)):
            problems.add(f"{path}.name", f"{target_origin_name(self.name, domain)!r} (the "
                         "target's own name at the edge) is not a valid DNS name; shorten it")
        if edge.routing == "latency" and self.region is None:
            problems.add(f"{path}.region", "is required with edge.routing latency (the AWS "
                         "region nearest the target: Route 53 measures latency to it)")
