"""The Pulumi program: load config -> build -> targets -> edge -> exports.

`__main__.py` only calls `main()`; tests call it too, under mocks.
"""

from __future__ import annotations

import pulumi

from components.build import GinBuild, GinBuildArgs
from gin_deploy.config import (
    IMPLEMENTED_KINDS,
    NAMESPACE,
    ConfigError,
    StackConfig,
    load_stack_config,
)


def check_implemented(cfg: StackConfig) -> None:
    """Refuse target kinds whose component does not exist yet, before any resource."""
    problems = [
        f"{NAMESPACE}:targets[{i}].kind: {t.kind!r} targets are not implemented yet "
        f"(implemented: {', '.join(IMPLEMENTED_KINDS)})"
        for i, t in enumerate(cfg.targets)
        if t.kind not in IMPLEMENTED_KINDS
    ]
    if cfg.edge is not None:
        problems.append(f"{NAMESPACE}:edge: edge routing is not implemented yet")
    if problems:
        raise ConfigError(problems)


def main() -> None:
    cfg = load_stack_config()
    check_implemented(cfg)
    build = GinBuild(
        cfg.app.name,
        GinBuildArgs(
            app_name=cfg.app.name,
            source_dir=cfg.project_dir / cfg.app.source,
            output_dir=cfg.project_dir / "build",
            version=cfg.app.version,
            build_binary=any(t.kind == "host" for t in cfg.targets),
        ),
    )
    pulumi.export("version", build.version)
