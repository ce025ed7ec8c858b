"""Shared by the benchmarks: paths, the service binary built as GinBuild builds it,
free ports, CPU sets and a description of the machine (no paths, no host names)."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gin_deploy.agent.network import port_free
from gin_deploy.agent.processes import which

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "app"
RESULTS = ROOT / "bench" / "results"


def run(cmd: list[str], *, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          **kw)


def tool(name: str) -> str | None:
    return which(name)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# --- the binary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binary:
    path: Path
    sha256: str
    version: str
    build_seconds: float


def build_binary(out_dir: Path, version: str = "0.0.0-bench", tags: str = "") -> Binary:
    """`go build` exactly as components/build.py's GinBuild runs it (flags and env);
    `tags` builds a variant (e.g. "faults", the fault-injection build)."""
    import time

    from components.build import git_stamp

    go = tool("go")
    if go is None:
        raise RuntimeError("go is not installed")
    commit, build_time = git_stamp(APP_DIR)
    ldflags = " ".join(["-s", "-w", f"-X main.version={version}", f"-X main.commit={commit}",
                        f"-X main.buildTime={build_time}"])
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / ("hello-gin" + (f"-{tags}" if tags else ""))
    env = {**os.environ, "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "amd64",
           "GOFLAGS": "-mod=readonly"}
    start = time.monotonic()
    done = run([go, "build", *(["-tags", tags] if tags else []), "-trimpath", "-ldflags",
                ldflags, "-o", str(out), "."],
               cwd=APP_DIR, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"go build failed:\n{done.stderr}")
    return Binary(out, hashlib.sha256(out.read_bytes()).hexdigest(), version,
                  time.monotonic() - start)


# --- ports and CPUs ---------------------------------------------------------------------------


def free_port_block(n: int, low: int = 20000, high: int = 30000) -> int:
    """The first of `n` consecutive ports that are free now (instances need a block)."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(low, high - n)
        if all(port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no block of {n} free ports in {low}..{high}")


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port_block(1, 30000, 40000)
        if port not in ports:
            ports.append(port)
    return ports


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the servers (nginx, instances) and the load generator may use."""

    server: str | None   # taskset list, e.g. "0" or "0-2"; None = not pinned
    client: str | None

    @property
    def pinned(self) -> bool:
        return self.server is not None

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned"
        return f"servers on CPU {self.server}, load generator on CPU {self.client}"


def cpu_plan(pin: bool) -> CpuPlan:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2 or tool("taskset") is None:
        return CpuPlan(None, None)
    client = cpus[-1]
    server = cpus[:-1]
    return CpuPlan(",".join(map(str, server)), str(client))


def pin(pid: int, cpus: str) -> None:
    """Pin a process and all its threads (taskset -a)."""
    taskset = tool("taskset")
    if taskset:
        run([taskset, "-a", "-p", "-c", cpus, str(pid)], timeout=10)


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


# --- the machine ------------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    exe = tool(cmd[0])
    if exe is None:
        return "not installed"
    done = run([exe, *cmd[1:]], timeout=30)
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match[1].strip() if match else platform.processor() or "unknown"
    except OSError:
        pass
    mem_gib = 0.0
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem_gib = int(match[1]) / 1024 / 1024 if match else 0.0
    except OSError:
        pass
    virt = run(["systemd-detect-virt"], timeout=10).stdout.strip() \
        if shutil.which("systemd-detect-virt") else ""
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "virtualization": virt or "unknown",
        "os": _os_name(),
        "python": platform.python_version(),
        "go": _first_line(["go", "version"]),
        "nginx": _first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "openssl": _first_line(["openssl", "version"]),
    }


def _os_name() -> str:
    try:
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', Path("/etc/os-release").read_text(),
                          re.M)
        return match[1] if match else platform.platform()
    except OSError:
        return platform.platform()


# --- contention: CPU used by processes that are not part of the measurement ----------------

_TICK = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds spent busy (all CPUs) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK


def process_cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])   # utime, stime
    return total / _TICK


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def foreign_cpu_share(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over `seconds` while this process waits (others' load)."""
    import time

    before = system_busy_seconds()
    time.sleep(seconds)
    return (system_busy_seconds() - before) / (seconds * (os.cpu_count() or 1))


def wait_for_quiet(max_seconds: float, threshold: float = 0.15,
                   log: Any = print) -> dict[str, Any]:
    """Wait (bounded) until other processes use less than `threshold` of the CPUs."""
    import time

    deadline = time.monotonic() + max_seconds
    samples: list[float] = []
    while True:
        share = foreign_cpu_share()
        samples.append(share)
        quiet = len(samples) >= 2 and max(samples[-2:]) < threshold
        if quiet or time.monotonic() >= deadline:
            break
        if len(samples) == 1:
            log(f"  waiting up to {max_seconds:.0f} s for a quieter machine "
                f"(others use {share:.0%} of the CPUs)")
    return {"quiet": quiet, "waited_seconds": round(2.0 * len(samples)),
            "last_share": samples[-1], "threshold": threshold}
