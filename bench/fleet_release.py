"""Release time of a host fleet for 1, 3 and 5 hosts behind one balancer.

The fleet is simulated on this machine as the fleet tests do (tests/host/fleet_sim.py):
one sshd per machine on its own loopback address, the payload made by the program's own
mapping, the coordinator (`hostctl.py fleet-release`) over real SSH, real nginx,
supervisord and the Gin binary, 2 instances per host, `maxUnavailable: 1` (and 2 for 5
hosts). Measured per fleet size: the first release (every machine set up) and a new
version released host by host (drain, rolling restart readiness-gated, rejoin). The
engine is not involved: `pulumi up` adds its own ~3 s (docs/benchmarks.md, deploy speed).

    .venv/bin/python -m bench.fleet_release          # prints the section
    .venv/bin/python -m bench.fleet_release --write  # and puts it in docs/benchmarks.md

The section sits between markers in docs/benchmarks.md; bench/run.py keeps it when it
rewrites the rest of that file.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, build_binary, machine_info

SIZES = ((1, 1), (3, 1), (5, 1), (5, 2))  # (hosts, maxUnavailable)
START = "<!-- fleet-release:start (python -m bench.fleet_release --write) -->"
END = "<!-- fleet-release:end -->"
DOCS = ROOT / "docs" / "benchmarks.md"


def block_of(text: str) -> str:
    """The fleet section of a benchmarks.md text ('' if it has none)."""
    _head, start, rest = text.partition(START)
    body, end, _tail = rest.partition(END)
    return start + body + end if start and end else ""


def splice(text: str, block: str) -> str:
    """`text` with its fleet section replaced by `block` (appended if it had none)."""
    old = block_of(text)
    return text.replace(old, block) if old else text.rstrip("\n") + "\n\n" + block + "\n"


def keep_block(path: Path, new_text: str) -> str:
    """For bench/run.py: the new report with the fleet section `path` already had."""
    old = block_of(path.read_text()) if path.exists() else ""
    return splice(new_text, old) if old else new_text


def measure(binaries: dict[str, Any], hosts: int, max_unavailable: int) -> dict[str, float]:
    # The fleet tests' simulation (imported here: bench/run.py only needs keep_block).
    from tests.host.conftest import kill_target
    from tests.host.fleet_sim import simulated

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
    import sys

    build = Path(tempfile.mkdtemp(prefix="gd-fleet-bin-"))
    loads = [_load()]
    try:
        binaries = {v: build_binary(build / v, v) for v in ("v1", "v2")}
        rows = []
        for hosts, mu in SIZES:
            m = measure(binaries, hosts, mu)
            rows.append(f"| {hosts} | {mu} | {m['first']:.1f} | {m['release']:.1f} | "
                        f"{m['release'] / hosts:.1f} |")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    loads.append(_load())
    info = machine_info()
    lines = [
        START, "## 5. Fleet release time", "",
        "A balancer and 1, 3 or 5 hosts simulated on this machine (an sshd per machine on "
        "its own loopback address), 2 instances per host, released by the coordinator over "
        "real SSH (`bench/fleet_release.py`; the engine adds its own few seconds). \"New "
        "version\" drains each batch at the balancer, restarts its instances one at a time "
        "(readiness-gated, paced by nginx's 5 s passive-check window) and rejoins it.", "",
        "| hosts | maxUnavailable | first release (s) | new version (s) | per host (s) |",
        "|---|---|---|---|---|", *rows, "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {info.get('cpu')}, "
        f"load average {loads[0]} before, {loads[1]} after: every machine of the fleet and "
        "the load of other work share the same 2 CPUs, so these are upper bounds; on real "
        "hosts a host's release is its own instances' restarts (about 2 x 5.5 s here) plus "
        "two SSH round trips.", END]
    section = "\n".join(lines)
    print(section)
    if "--write" in sys.argv[1:]:
        DOCS.write_text(splice(DOCS.read_text(), section))


def _load() -> str:
    import os

    return f"{os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main()
