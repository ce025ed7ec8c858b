"""Proxy efficiency: the reference service (2 instances) measured four ways in one run.

  a  direct   HTTP to one instance (no proxy, no TLS): the ceiling
  b  gin-deploy  HTTPS through the nginx config gin-deploy generates, deployed by the
                 host agent exactly as `pulumi up` on the dev stack does (user mode,
                 supervisord, self-signed TLS), with client keep-alive
  c  naive    HTTPS through bench/naive_nginx.conf.j2 (tutorial style: no upstream
              keepalive, HTTP/1.0 to the instances, default buffers), same TLS, same
              certificate, same instances, same nginx.conf around it
  d  minimal  HTTPS through bench/minimal_nginx.conf.j2: only proxy_pass with upstream
              keepalive, no log, no headers (the ceiling of any generated config on the
              box), same TLS, certificate, instances and nginx.conf

Rounds are interleaved (a b c d, b c d a, ...) so drift in the machine hits all four
alike; each run is wrk with a Lua done() hook (bench/latency.lua) for p99.9.
Reported: medians over rounds of requests/s and of each latency percentile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    ROOT,
    Binary,
    CpuPlan,
    children,
    children_cpu_seconds,
    free_port_block,
    free_ports,
    median,
    pin,
    process_cpu_seconds,
    run,
    system_busy_seconds,
    tool,
)
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.payload import serialise
from gin_deploy.agent.processes import target_processes
from gin_deploy.config import RawValue, parse_stack_config
from gin_deploy.render import _jinja, nginx

LUA = ROOT / "bench" / "latency.lua"
TEMPLATES = {"c": ROOT / "bench" / "naive_nginx.conf.j2",
             "d": ROOT / "bench" / "minimal_nginx.conf.j2"}
PATH = "/healthz"
VARIANTS = ("a", "b", "c", "d")
LABELS = {
    "a": "direct (HTTP, one instance)",
    "b": "gin-deploy nginx (HTTPS)",
    "c": "naive nginx (HTTPS)",
    "d": "minimal nginx (HTTPS)",
}
# The nginx beside gin-deploy's: variant -> its directory under the work dir.
EXTRA = {"c": "naive", "d": "minimal"}


@dataclass
class Deployed:
    """A user-mode host target deployed by the agent, plus the naive and minimal nginx
    beside it."""

    work: Path
    state_dir: Path
    instance_ports: list[int]
    https_port: int
    extra_ports: dict[str, int]  # variant -> HTTPS port of its nginx
    agent: str  # the agent's zip archive
    destroy_payload: str
    site_conf: str = ""
    extra_confs: dict[str, str] = field(default_factory=dict)

    def pid_file(self, variant: str) -> Path:
        return self.work / EXTRA[variant] / "nginx.pid"

    @property
    def ca(self) -> Path:
        return self.state_dir / "tls" / "ca.crt"

    def url(self, variant: str) -> str:
        if variant == "a":
            return f"http://127.0.0.1:{self.instance_ports[0]}{PATH}"
        port = self.https_port if variant == "b" else self.extra_ports[variant]
        return f"https://127.0.0.1:{port}{PATH}"

    def server_pids(self) -> list[int]:
        pids = set(target_processes(Layout(str(self.state_dir))))
        for v in EXTRA:
            with contextlib.suppress(OSError, ValueError):
                master = int(self.pid_file(v).read_text().strip())
                pids |= {master, *children(master)}
        return sorted(pids)


def _dev_target_config(state_dir: Path, base_port: int, http_port: int,
                       https_port: int, instances: int) -> dict[str, RawValue]:
    """The dev stack's config with this run's ports, state dir and instance count."""
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("gin-deploy:")}
    [target] = raw["targets"]
    raw["targets"] = [{**target, "instances": instances, "basePort": base_port,
                       "httpPort": http_port, "httpsPort": https_port,
                       "stateDir": str(state_dir)}]
    return {k: RawValue(v, False) for k, v in raw.items()}


def deploy(work: Path, binary: Binary, instances: int = 2) -> Deployed:
    """Map the config and build the payload with the program's own code
    (gin_deploy/program/host.py, components/host.py), then deploy it with the agent."""
    from components.host import deploy_payload, target_payload
    from gin_deploy.config import HostTargetConfig
    from gin_deploy.program.host import build_agent, host_target_args

    state_dir = work / "state"
    base = free_port_block(instances)
    http_port, https_port, naive_port, minimal_port = free_ports(4)
    cfg = parse_stack_config(
        _dev_target_config(state_dir, base, http_port, https_port, instances),
        project="gin-deploy", stack="bench", project_dir=ROOT)
    [target] = cfg.targets
    assert isinstance(target, HostTargetConfig)
    agent, agent_sha256 = build_agent(ROOT)
    args = host_target_args(target, cfg, version=binary.version, binary_path=str(binary.path),
                            binary_sha256=binary.sha256, agent_path=agent,
                            agent_sha256=agent_sha256)
    payload = deploy_payload(args, str(binary.path), binary.sha256)
    deployed = Deployed(work, state_dir, list(target.instance_ports), https_port,
                        {"c": naive_port, "d": minimal_port}, agent,
                        serialise(target_payload(args)))
    deployed.site_conf = payload.nginx.site
    done = run([sys.executable, agent, "deploy"], input=serialise(payload), timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the agent failed to deploy the benchmark stack:\n{done.stderr}")
    for variant in EXTRA:
        _start_extra(deployed, variant)
    return deployed


def _start_extra(d: Deployed, variant: str) -> None:
    here = d.work / EXTRA[variant]
    (here / "temp").mkdir(parents=True, exist_ok=True)
    env = _jinja.make_environment({})
    site = env.from_string(TEMPLATES[variant].read_text()).render(
        upstream_ports=d.instance_ports, https_port=d.extra_ports[variant],
        access_log=str(here / "access.log"), error_log=str(here / "error.log"),
        certificate=str(d.state_dir / "tls" / "server.crt"),
        certificate_key=str(d.state_dir / "tls" / "server.key"),
        tls12_ciphers=nginx.TLS12_CIPHERS, tls_curves=nginx.TLS_CURVES)
    d.extra_confs[variant] = site
    (here / "site.conf").write_text(site)
    # The same nginx.conf gin-deploy renders around its site, so only the site differs.
    (here / "nginx.conf").write_text(nginx.render_main_config(
        site_include=str(here / "site.conf"), pid_file=str(d.pid_file(variant)),
        error_log=str(here / "error.log"), temp_dir=str(here / "temp")))
    exe = tool("nginx")
    if exe is None:
        raise RuntimeError("nginx is not installed")
    done = run([exe, "-c", str(here / "nginx.conf"), "-e", str(here / "error.log")],
               timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"the {EXTRA[variant]} nginx did not start:\n{done.stderr}")
    deadline = time.monotonic() + 10
    while not d.pid_file(variant).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def teardown(d: Deployed) -> None:
    for v in EXTRA:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(d.pid_file(v).read_text().strip()), signal.SIGQUIT)
    run([sys.executable, d.agent, "destroy"], input=d.destroy_payload, timeout=120)
    for pid in target_processes(Layout(str(d.state_dir))):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def stack(binary: Binary, instances: int = 2) -> Iterator[Deployed]:
    work = Path(tempfile.mkdtemp(prefix="gin-bench-"))
    work.chmod(0o755)
    deployed: Deployed | None = None
    try:
        deployed = deploy(work, binary, instances)
        yield deployed
    finally:
        if deployed is not None:
            teardown(deployed)
        else:
            for pid in target_processes(Layout(str(work / "state"))):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


# --- load -------------------------------------------------------------------------------------


def check_endpoint(d: Deployed, variant: str) -> dict[str, str]:
    """One request with verification against the stack's CA; returns a few headers."""
    ctx = ssl.create_default_context(cafile=str(d.ca))
    with urllib.request.urlopen(d.url(variant), context=ctx, timeout=5) as resp:  # noqa: S310
        if resp.status != 200:
            raise RuntimeError(f"{variant}: {d.url(variant)} answered {resp.status}")
        return {k: resp.headers.get(k, "") for k in ("Strict-Transport-Security", "Server")}


def wrk(url: str, *, seconds: float, connections: int, threads: int,
        cpus: str | None) -> dict[str, Any]:
    exe = tool("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed")
    cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "5s", "-s", str(LUA), url]
    taskset = tool("taskset")
    if cpus is not None and taskset:
        cmd = [taskset, "-c", cpus, *cmd]
    done = run(cmd, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["error_count"] = sum(data["errors"].values())
    return data


@dataclass(frozen=True)
class ProxySettings:
    rounds: int = 5
    seconds: float = 10
    warmup_seconds: float = 3
    connections: int = 64
    threads: int = 1
    instances: int = 2


def measure(binary: Binary, settings: ProxySettings, cpus: CpuPlan,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Deploy, warm up, run interleaved rounds, tear down; raw runs plus medians."""
    with stack(binary, settings.instances) as d:
        headers = {v: check_endpoint(d, v) for v in VARIANTS}
        if cpus.server is not None:
            for pid in d.server_pids():
                pin(pid, cpus.server)
        for v in VARIANTS:
            log(f"  warm-up {v}: {LABELS[v]}")
            wrk(d.url(v), seconds=settings.warmup_seconds, connections=settings.connections,
                threads=settings.threads, cpus=cpus.client)
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for r in range(settings.rounds):
            k = r % len(VARIANTS)
            order = VARIANTS[k:] + VARIANTS[:k]
            for v in order:
                pids = d.server_pids()
                busy0, ours0 = system_busy_seconds(), process_cpu_seconds(pids)
                kids0, wall0 = children_cpu_seconds(), time.monotonic()
                result = wrk(d.url(v), seconds=settings.seconds,
                             connections=settings.connections, threads=settings.threads,
                             cpus=cpus.client)
                wall = time.monotonic() - wall0
                ours = process_cpu_seconds(pids) - ours0 + children_cpu_seconds() - kids0
                busy = system_busy_seconds() - busy0
                # CPU other processes on the machine used meanwhile, as a share of all CPUs.
                result["foreign_cpu_share"] = max(0.0, busy - ours) / (
                    wall * (os.cpu_count() or 1))
                result["round"] = r + 1
                runs[v].append(result)
                log(f"  round {r + 1}/{settings.rounds} {v}: {result['rps']:,.0f} req/s, "
                    f"p99 {result['latency_us']['p99'] / 1000:.2f} ms, "
                    f"errors {result['error_count']}, "
                    f"others' CPU {result['foreign_cpu_share']:.0%}")
        configs = {"b": d.site_conf, **d.extra_confs}
    summary = {v: _summarize(runs[v]) for v in VARIANTS}
    a, b, c, m = (summary[v]["rps"] for v in VARIANTS)
    return {
        "settings": settings.__dict__,
        "cpus": cpus.describe(),
        "path": PATH,
        "labels": LABELS,
        "runs": runs,
        "summary": summary,
        "ratios": {"b/a": b / a if a else None, "b/c": b / c if c else None,
                   "b/d": b / m if m else None},
        "headers": headers,
        "config_sha256": {k: hashlib.sha256(v.encode()).hexdigest()[:12]
                          for k, v in configs.items()},
        "configs": configs,
    }


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": median([r["rps"] for r in runs]),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        **{f"{p}_ms": median([r["latency_us"][p] for r in runs]) / 1000
           for p in ("p50", "p90", "p99", "p999")},
        "errors": sum(r["error_count"] for r in runs),
        "foreign_cpu_share": median([r.get("foreign_cpu_share", 0.0) for r in runs]),
        "requests": sum(r["requests"] for r in runs),
    }
