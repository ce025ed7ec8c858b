"""The whole stack config: every section parsed, cross-section defaults and rules.

`parse_stack_config` turns the raw top-level keys into a `StackConfig` whose
values are all concrete: each section resolves its own defaults while it parses,
and the defaults that need another section (a target's namespace from the app
name, an ecs target's zone from the domain or edge, the health check path from
the app) are resolved here, where every section is in view. Every problem is
reported at once with its key path; on any, `ConfigError` before a resource exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gin_deploy.config.app import AppConfig
from gin_deploy.config.checks import dns_name
from gin_deploy.config.ecs import EcsTargetConfig
from gin_deploy.config.edge import EdgeConfig
from gin_deploy.config.host import HostTargetConfig
from gin_deploy.config.kubernetes import KubernetesTargetConfig
from gin_deploy.config.release import ReleaseConfig
from gin_deploy.config.schema import NAMESPACE, ConfigError, ParseContext, Problems, parse_value
from gin_deploy.config.target import TARGET_KINDS
from gin_deploy.config.tls import TlsConfig

TOP_LEVEL_KEYS = ("app", "domain", "tls", "targets", "edge", "release")

TargetConfig = HostTargetConfig | EcsTargetConfig | KubernetesTargetConfig
TARGET_CLASSES: Mapping[str, type[TargetConfig]] = {
    "host": HostTargetConfig,
    "ecs": EcsTargetConfig,
    "kubernetes": KubernetesTargetConfig,
}


@dataclass(frozen=True)
class RawValue:
    """One top-level config value as the engine holds it, decoded."""

    value: Any
    secret: bool


@dataclass(frozen=True)
class StackConfig:
    project: str
    stack: str
    project_dir: Path
    app: AppConfig
    domain: str
    tls: TlsConfig
    targets: tuple[TargetConfig, ...]
    edge: EdgeConfig | None
    # As written (None where silent); each target holds its resolved `release`.
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    # Values of app.secretEnv, by env var name; only ever passed on as Pulumi secrets.
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)


def parse_stack_config(
    raw: Mapping[str, RawValue], *, project: str, stack: str, project_dir: Path
) -> StackConfig:
    problems = Problems()
    p = f"{NAMESPACE}:"

    def ctx(key: str) -> ParseContext:
        return ParseContext(project_dir, secret=key in raw and raw[key].secret)

    def parse(cls: type[Any], key: str) -> Any:
        value = raw[key].value if key in raw else {}
        return parse_value(cls, value, f"{p}{key}", problems, ctx(key))

    app = parse(AppConfig, "app") or AppConfig()
    secret_env = _secret_env(app, raw, problems)
    allowed_keys = set(TOP_LEVEL_KEYS) | set(app.secret_env)
    for key in sorted(raw):
        if key not in allowed_keys:
            problems.add(f"{p}{key}", "unknown key (allowed: " + ", ".join(TOP_LEVEL_KEYS) +
                         ", and the secret keys named in app.secretEnv)")

    domain = "localhost"
    if "domain" in raw:
        domain = parse_value(str, raw["domain"].value, f"{p}domain", problems,
                             ctx("domain")) or domain
        if msg := dns_name(domain):
            problems.add(f"{p}domain", msg)

    tls = parse(TlsConfig, "tls") or TlsConfig()
    indexed = _targets(raw.get("targets"), ctx("targets"), problems)
    edge = None
    # An empty edge object (the project default) means no edge routing.
    if "edge" in raw and raw["edge"].value not in (None, {}, ""):
        edge = parse(EdgeConfig, "edge")
    if edge is not None:
        edge = edge.resolve(app)
    release = parse(ReleaseConfig, "release") or ReleaseConfig()
    # Every section but the targets, for the targets' defaults that depend on them.
    cfg = StackConfig(project, stack, project_dir, app, domain, tls, (), edge, release,
                      secret_env)
    indexed = [(i, _resolve_target(t, cfg)) for i, t in indexed]
    cfg = replace(cfg, targets=tuple(t for _i, t in indexed))
    # The ACME challenge depends on the targets and the edge.
    cfg = replace(cfg, tls=cfg.tls.resolve(cfg))
    _check_stack(cfg, indexed, problems)
    if problems:
        raise ConfigError(problems.items)
    return cfg


def _resolve_target(target: TargetConfig, cfg: StackConfig) -> TargetConfig:
    """The target with every default filled in, its release policy included."""
    target = target.resolve(cfg)
    own = target.release_config or ReleaseConfig()
    return replace(target, release=own.resolve(
        cfg.release, target.scale, target.release_steps,
        target.release_strategy_default(cfg.edge)))


def _secret_env(app: AppConfig, raw: Mapping[str, RawValue], problems: Problems) -> dict[str, str]:
    """The values of app.secretEnv, each from its own top-level key stored encrypted."""
    values: dict[str, str] = {}
    for i, name in enumerate(app.secret_env):
        path = f"{NAMESPACE}:app.secretEnv[{i}]"
        item = raw.get(name)
        if item is None:
            problems.add(path, f"secret config key '{NAMESPACE}:{name}' is not set; set it with "
                         f"`pulumi config set --secret {name}`")
        elif not item.secret:
            problems.add(path, f"config key '{NAMESPACE}:{name}' is stored in plain text; "
                         f"set it with `pulumi config set --secret {name}`")
        else:
            values[name] = item.value if isinstance(item.value, str) else json.dumps(item.value)
    return values


def _targets(item: RawValue | None, ctx: ParseContext,
             problems: Problems) -> list[tuple[int, TargetConfig]]:
    """The targets whose fields parsed, with their index in the config list."""
    path = f"{NAMESPACE}:targets"
    if item is None or item.value in (None, [], ""):
        problems.add(path, "at least one target is required (kind: host | ecs | kubernetes)")
        return []
    if not isinstance(item.value, list):
        problems.add(path, "must be a list of targets")
        return []
    targets: list[tuple[int, TargetConfig]] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(item.value):
        tpath = f"{path}[{i}]"
        if not isinstance(entry, dict):
            problems.add(tpath, "must be an object with name and kind")
            continue
        kind = entry.get("kind")
        if not isinstance(kind, str) or kind not in TARGET_CLASSES:
            problems.add(f"{tpath}.kind", f"must be one of {' | '.join(TARGET_KINDS)}, "
                         f"got {kind!r}")
            continue
        # Parsing runs the kind's own rules (its `check`) once its fields parse.
        target = parse_value(TARGET_CLASSES[kind], entry, tpath, problems, ctx)
        if target is None or tpath in problems.incomplete:
            continue
        if target.name in seen:
            problems.add(f"{tpath}.name", f"duplicate target name {target.name!r} "
                         f"(also targets[{seen[target.name]}])")
        seen.setdefault(target.name, i)
        targets.append((i, target))
    return targets


def _check_stack(cfg: StackConfig, indexed: Sequence[tuple[int, TargetConfig]],
                 problems: Problems) -> None:
    """Rules across sections; each kind and the edge own theirs, this only calls them.

    `indexed` pairs each of `cfg.targets` with its index in the config list (they differ
    when an earlier target was rejected), so every problem names the right target."""
    if cfg.targets and all(t.weight == 0 for t in cfg.targets):
        problems.add(f"{NAMESPACE}:targets", "all weights are 0: at least one target must take "
                     "traffic")
    if cfg.app.image is not None and all(t.kind == "host" for t in cfg.targets):
        problems.add(f"{NAMESPACE}:app.image", "no target runs an image: host targets run "
                     "the binary built from app.source (image is for ecs and kubernetes)")
    cfg.tls.check_stack(cfg, indexed, problems)
    for kind, cls in TARGET_CLASSES.items():
        members = [(i, t) for i, t in indexed if t.kind == kind]
        if members:
            cls.check_kind(cfg, members, problems)
    if cfg.edge is not None:
        cfg.app.check_edge(f"{NAMESPACE}:app", cfg.edge.cdn, problems)
        cfg.edge.check_stack(cfg, indexed, problems)
