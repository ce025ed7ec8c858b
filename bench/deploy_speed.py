"""Deploy speed with the real engine: `pulumi up` of the dev stack through
gin_deploy.automation, on a private copy of the project (its own file backend,
passphrase, state dir and ports; the checkout and its stacks are never touched).

Measured, in order: a first up (build + agent + nginx + supervisord + TLS), a
no-change up, a rolling update of 3 instances (a new app.version: rebuild + one
instance at a time, readiness-gated), and the destroy that cleans up. For each, the
engine's events give every resource step's duration, so the report can say which
part dominates (the build, the host deploy, or the engine and program around them).

Needs the project's Pulumi CLI (`.tools/bin/pulumi`, installed by scripts/setup.sh);
without it the result is "not measured (no CLI)".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, free_port_block, free_ports
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.processes import target_processes

TOOLS = ROOT / ".tools"
STACK = "bench"
INSTANCES = 3
_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "build", ".pulumi-state", ".pulumi-passphrase", "__pycache__",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", "bench", "tests", "docs", "Pulumi.*.yaml",
)


def cli_available() -> bool:
    return (TOOLS / "bin" / "pulumi").exists()


class _StepTimer:
    """Durations of resource steps from engine events (ResourcePre -> ResOutputs/Failed).

    Only custom resources count: a component's or the stack's "step" spans its
    children, and provider steps are bookkeeping.
    """

    def __init__(self) -> None:
        self.started: dict[tuple[str, str], float] = {}
        self.steps: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, event: Any) -> None:
        now = time.monotonic()
        pre = getattr(event, "resource_pre_event", None)
        done = getattr(event, "res_outputs_event", None) or \
            getattr(event, "res_op_failed_event", None)
        for ev in (pre, done):
            meta = getattr(ev, "metadata", None)
            if meta is None or str(meta.type).startswith(("gin-deploy:", "pulumi:")):
                continue
            key = (meta.urn, str(getattr(meta.op, "value", meta.op)))
            if ev is pre:
                self.started[key] = now
            elif key in self.started:
                self.steps[key] = {"resource": meta.urn.rsplit("::", 1)[-1], "op": key[1],
                                   "type": meta.type, "seconds": now - self.started[key]}

    def top(self, n: int = 5) -> list[dict[str, Any]]:
        return sorted(self.steps.values(), key=lambda r: -r["seconds"])[:n]


def _dev_config(state_dir: Path, base: int, http_port: int, https_port: int,
                **app: Any) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config["gin-deploy:targets"] = [{
        **config["gin-deploy:targets"][0], "stateDir": str(state_dir),
        "instances": INSTANCES, "basePort": base, "httpPort": http_port,
        "httpsPort": https_port}]
    if app:
        config["gin-deploy:app"] = {**config["gin-deploy:app"], **app}
    return config


def measure(log: Callable[[str], None] = print) -> dict[str, Any]:
    """Timings of first up, no-change up, rolling update and destroy; never raises."""
    if not cli_available():
        return {"status": "not measured (no CLI)"}
    from gin_deploy import automation

    tmp = Path(tempfile.mkdtemp(prefix="gin-bench-deploy-"))
    tmp.chmod(0o755)
    root = tmp / "project"
    state_dir = tmp / "state"
    result: dict[str, Any] = {"status": "measured", "instances": INSTANCES, "operations": {}}
    try:
        shutil.copytree(ROOT, root, ignore=_COPY_IGNORE, symlinks=True)
        (root / ".venv").symlink_to(ROOT / ".venv")
        backend = tmp / "backend"
        backend.mkdir()
        settings = automation.Settings(
            work_dir=root, tools_dir=TOOLS, backend_url=f"file://{backend}",
            passphrase_file=tmp / "passphrase",
            extra_env={"PULUMI_HOME": str(tmp / "pulumi-home")})
        base = free_port_block(INSTANCES)
        http_port, https_port = free_ports(2)

        def stack_file(**app: Any) -> None:
            config = _dev_config(state_dir, base, http_port, https_port, **app)
            (root / f"Pulumi.{STACK}.yaml").write_text(
                yaml.safe_dump({"config": config}, sort_keys=False))

        def timed(name: str, op: Callable[..., Any]) -> None:
            timer = _StepTimer()
            start = time.monotonic()
            res = op(STACK, settings=settings, on_event=timer)
            seconds = time.monotonic() - start
            steps = sum(s["seconds"] for s in timer.steps.values())
            result["operations"][name] = {
                "seconds": seconds, "summary": res.summary, "slowest_steps": timer.top(),
                "resource_steps_seconds": steps,
            }
            log(f"  {name}: {seconds:.1f} s {res.summary}")

        stack_file()
        timed("first up", automation.up)
        timed("no-change up", automation.up)
        stack_file(version="0.0.0-bench.2")
        timed(f"rolling update ({INSTANCES} instances)", automation.up)
        timed("destroy", automation.destroy)
    except Exception as err:  # reported; the other benchmarks go on
        result["status"] = f"failed: {type(err).__name__}: {str(err).strip()[:400]}"
        log(f"  deploy speed failed: {result['status']}")
    finally:
        if state_dir.exists():
            for pid in target_processes(Layout(str(state_dir))):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    return result
