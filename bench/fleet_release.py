"""Release time of a host fleet for 1, 3 and 5 hosts behind one balancer.

The fleet is simulated on this machine as the fleet tests do (tests/host/fleet_sim.py):
one sshd per machine on its own loopback address, the payload made by the program's own
mapping, the coordinator (`hostctl.py fleet-release`) over real SSH, real nginx,
supervisord and the Gin binary, 2 instances per host, `maxUnavailable: 1` (and 2 for 5
hosts). Measured per fleet size: the first release (every machine set up) and a new
version released host by host (drain, rolling restart readiness-gated, rejoin). The
engine is not involved: `pulumi up` adds its own ~3 s (docs/benchmarks.md, deploy speed).

    .venv/bin/python -m bench.fleet_release      # prints a markdown table
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import build_binary, machine_info
from tests.host.conftest import kill_target
from tests.host.fleet_sim import simulated

SIZES = ((1, 1), (3, 1), (5, 1), (5, 2))  # (hosts, maxUnavailable)


def measure(binaries: dict[str, Any], hosts: int, max_unavailable: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="gd-fleet-bench-"))
    root.chmod(0o755)
    names = [f"app{i + 1}" for i in range(hosts)]
    out: dict[str, float] = {}
    try:
        with simulated(root, binaries) as sim:
            for step, version in (("first", "v1"), ("release", "v2")):
                payload = sim.payload(names, version, maxUnavailable=max_unavailable)
                start = time.monotonic()
                proc = sim.release(payload)
                out[step] = time.monotonic() - start
                if proc.returncode != 0:
                    raise RuntimeError(f"release failed:\n{proc.stderr}")
                out[f"{step}_coordinator"] = float(json.loads(proc.stdout)["seconds"])
    finally:
        for d in root.glob("state-*"):
            kill_target(d)
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    build = Path(tempfile.mkdtemp(prefix="gd-fleet-bin-"))
    try:
        binaries = {v: build_binary(build / v, v) for v in ("v1", "v2")}
        rows = []
        for hosts, mu in SIZES:
            m = measure(binaries, hosts, mu)
            rows.append(f"| {hosts} | {mu} | {m['first']:.1f} s | {m['release']:.1f} s | "
                        f"{m['release'] / hosts:.1f} s |")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    info = machine_info()
    print(f"machine: {info.get('cpu')}, load before/after in docs; run "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| hosts | maxUnavailable | first release | new version | per host |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
