"""Host releases (canary, gin_deploy/agent/canary.py) timed and watched from a client.

For 1, 3 and 6 instances: a user-mode stack runs v1 (nginx, supervisord, self-signed TLS),
then the agent releases v2 beside it with the default steps, once with `bakeSeconds: 0`
(readiness only) and once with the default bake, while hey sends a steady, rate-limited
load through nginx; the time is the agent's deploy call, the failures what hey saw.
Then the same with the fault-injection build failing ~20% of its requests, which the agent
must roll back: how many failed requests reached the client.

Payloads come from components.host.deploy_payload, exactly what `pulumi up` sends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Binary, free_port_block, free_ports, run, tool
from components.host import HostRelease, HostTargetArgs, deploy_payload
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.payload import SelfSignedTls, serialise
from gin_deploy.agent.processes import target_processes
from gin_deploy.config.release import DEFAULTS
from gin_deploy.render.host import HostService

APP = "hello-gin"
# The client: hey workers x queries/s each. Light enough not to slow the release it
# watches on a 2-CPU box, enough that each default step sees minRequests at 10%.
WORKERS, RATE = 4, 10
ENV = {"GIN_MODE": "release", "SHUTDOWN_TIMEOUT": "10s"}
FAULT_ERROR_RATE = "0.2"


@dataclass
class HostStack:
    root: Path
    ports: list[int]
    candidate_ports: list[int]
    http_port: int
    https_port: int
    agent: str

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def payload(self, binary: Binary, *, bake_seconds: int, strategy: str = "canary",
                env: dict[str, str] | None = None, **release: Any) -> str:
        service = HostService(
            app=APP, stack="bench", target="local", state_dir=str(self.state_dir),
            mode="user", supervisor="supervisord", instance_ports=tuple(self.ports),
            http_port=self.http_port, https_port=self.https_port,
            server_names=("localhost",), candidate_ports=tuple(self.candidate_ports))
        args = HostTargetArgs(
            service=service, tls=SelfSignedTls(domains=("localhost",)), domain="localhost",
            env={**ENV, **(env or {})}, ready_path="/readyz", ready_timeout=30,
            keep_releases=5, install=False, version=binary.version,
            binary_path=str(binary.path), binary_sha256=binary.sha256,
            agent_path=self.agent, agent_sha256="", staging_dir="",
            release=HostRelease(strategy=strategy, bake_seconds=bake_seconds,
                                steps=DEFAULTS.steps, max_error_rate=DEFAULTS.max_error_rate,
                                max_p95_ms=DEFAULTS.max_p95_ms,
                                min_requests=min_requests(bake_seconds), **release))
        return serialise(deploy_payload(args, str(binary.path), binary.sha256))

    def deploy(self, payload: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, self.agent, "deploy"], input=payload, timeout=timeout)


@contextlib.contextmanager
def host_stack(n: int, agent: str, first: Binary) -> Iterator[HostStack]:
    root = Path(tempfile.mkdtemp(prefix="gin-bench-rel-"))
    root.chmod(0o755)
    base = free_port_block(2 * n)
    http_port, https_port = free_ports(2)
    st = HostStack(root, list(range(base, base + n)), list(range(base + n, base + 2 * n)),
                   http_port, https_port, agent)
    try:
        done = st.deploy(st.payload(first, bake_seconds=0))
        if done.returncode != 0:
            raise RuntimeError(f"the first deploy failed:\n{done.stderr}")
        yield st
    finally:
        payload = st.payload(first, bake_seconds=0)
        run([sys.executable, agent, "destroy"], input=payload, timeout=120)
        for pid in target_processes(Layout(str(st.state_dir))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def min_requests(bake_seconds: int) -> int:
    """The default minRequests, scaled down for a bake shorter than the default (a quick
    run) so the same steady load can still satisfy it."""
    scaled = DEFAULTS.min_requests * bake_seconds // DEFAULTS.bake_seconds
    return min(DEFAULTS.min_requests, max(scaled, 10))


class Hey:
    """hey at a fixed rate until stopped; its report counts statuses and errors."""

    def __init__(self, url: str) -> None:
        exe = tool("hey")
        if exe is None:
            raise RuntimeError("hey is not installed")
        # -z long: stopped by SIGINT, after which hey prints its report. hey does not
        # verify the self-signed certificate.
        self.proc = subprocess.Popen(
            [exe, "-z", "30m", "-c", str(WORKERS), "-q", str(RATE), "-t", "10", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        return parse_hey(out + err)


def parse_hey(text: str) -> dict[str, Any]:
    statuses = {int(code): int(count)
                for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors = 0
    if "Error distribution:" in text:
        tail = text.split("Error distribution:", 1)[1]
        errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", tail, re.M))
    ok = statuses.get(200, 0)
    failed = sum(c for code, c in statuses.items() if code != 200) + errors
    return {"requests": ok + failed, "ok": ok, "failed": failed,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "connection_errors": errors}


def release_once(st: HostStack, payload: str) -> dict[str, Any]:
    hey = Hey(f"https://127.0.0.1:{st.https_port}/whoami")
    try:
        time.sleep(1)  # the load is steady before the release starts
        started = time.monotonic()
        done = st.deploy(payload)
        seconds = time.monotonic() - started
        time.sleep(1)
    finally:
        load = hey.stop()
    out: dict[str, Any] = {"seconds": seconds, "exit": done.returncode, "load": load}
    if done.returncode == 0:
        result = json.loads(done.stdout)
        out["steps"] = [{k: s.get(k) for k in ("percent", "requests", "errors", "oldRequests")}
                        for s in result.get("steps", [])]
    else:
        lines = [ln for ln in done.stderr.splitlines() if "failed at step" in ln
                 or "was not released" in ln]
        out["message"] = (lines or done.stderr.strip().splitlines()[-1:] or [""])[0][:400]
    return out


def measure(binaries: dict[str, Binary], *, sizes: tuple[int, ...] = (1, 3, 6),
            bakes: tuple[int, ...] = (0, DEFAULTS.bake_seconds), bad_instances: int = 3,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """binaries: v1, v2 and the fault-injection build ("faults"). Every size is released
    with the canary strategy and the default steps and thresholds (by default a single
    instance would be released rolling), so the sizes compare like with like."""
    from gin_deploy.program.host import build_agent

    agent, _ = build_agent(Path(__file__).resolve().parents[1])
    runs: list[dict[str, Any]] = []
    for bake in bakes:
        for n in sizes:
            with host_stack(n, agent, binaries["v1"]) as st:
                r = release_once(st, st.payload(binaries["v2"], bake_seconds=bake))
            r.update(kind="good", instances=n, bake_seconds=bake)
            runs.append(r)
            log(f"  good release, {n} instance(s), bake {bake} s: {r['seconds']:.1f} s, "
                f"{r['load']['failed']} of {r['load']['requests']} requests failed"
                + (f" (agent exit {r['exit']}: {r.get('message')})" if r["exit"] else ""))
    bake = max(bakes)
    with host_stack(bad_instances, agent, binaries["v1"]) as st:
        r = release_once(st, st.payload(binaries["faults"], bake_seconds=bake,
                                        env={"FAULT_ERROR_RATE": FAULT_ERROR_RATE}))
        # After the rollback: every request served by the old release again.
        after = Hey(f"https://127.0.0.1:{st.https_port}/whoami")
        time.sleep(5)
        r["after"] = after.stop()
    r.update(kind="bad", instances=bad_instances, bake_seconds=bake,
             fault_error_rate=float(FAULT_ERROR_RATE))
    runs.append(r)
    log(f"  bad release (fails {FAULT_ERROR_RATE} of requests), {bad_instances} instances: "
        f"{'rolled back' if r['exit'] else 'NOT rolled back'} after {r['seconds']:.1f} s, "
        f"{r['load']['failed']} of {r['load']['requests']} requests failed, then "
        f"{r['after']['failed']} of {r['after']['requests']}")
    return {"status": "measured", "steps": list(DEFAULTS.steps),
            "min_requests": {str(b): min_requests(b) for b in bakes},
            "max_error_rate": DEFAULTS.max_error_rate, "max_p95_ms": DEFAULTS.max_p95_ms,
            "client": f"hey, {WORKERS} workers x {RATE} req/s, HTTPS keep-alive, /whoami",
            "runs": runs, "load_average": os.getloadavg()}


def time_by_size(data: dict[str, Any], bake: int) -> dict[int, float]:
    return {r["instances"]: r["seconds"] for r in data["runs"]
            if r["kind"] == "good" and r["bake_seconds"] == bake}


def growth(data: dict[str, Any], bake: int) -> float | None:
    """Time of the largest release over the smallest one's (1.0 = does not grow)."""
    t = time_by_size(data, bake)
    return t[max(t)] / t[min(t)] if len(t) >= 2 and t[min(t)] else None
