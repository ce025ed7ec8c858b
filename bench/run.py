#!/usr/bin/env python3
"""Run every gin-deploy benchmark and report them as tables.

    .venv/bin/python bench/run.py          # full run (~10 min), writes docs/benchmarks.md
    .venv/bin/python bench/run.py --quick  # a minute, smoke numbers, docs untouched

1. proxy efficiency  direct vs gin-deploy's nginx vs a naive nginx (bench/proxy.py)
2. artifact size     static binary vs the image of app/Dockerfile (bench/sizes.py)
3. deploy speed      `pulumi up` timings with the real engine (bench/deploy_speed.py)
4. program scale     resources and evaluation time as targets grow (bench/scale.py)
5. host release      canary release time for 1/3/6 instances, failed requests seen by a
                     client in a good and in a rolled-back bad release (bench/release.py)

Raw results go to bench/results/<UTC time>.json (git-ignored) and
bench/results/latest.json. All load goes to 127.0.0.1 and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, deploy_speed, proxy, release, report, sizes
from bench.fleet_release import keep_block
from gin_deploy.config.release import DEFAULTS as RELEASE_DEFAULTS

SECTIONS = ("proxy", "size", "deploy", "scale", "release")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short runs (2 rounds x 3 s, 1 repeat); does not write the docs")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--rounds", type=int, help="proxy: interleaved rounds (default 5, quick 2)")
    p.add_argument("--seconds", type=float, help="proxy: seconds per wrk run (default 10)")
    p.add_argument("--connections", type=int, default=64, help="proxy: wrk connections")
    p.add_argument("--threads", type=int, default=1, help="proxy: wrk threads")
    p.add_argument("--no-pin", action="store_true", help="proxy: do not pin CPUs (taskset)")
    p.add_argument("--quiet-wait", type=float,
                   help="proxy: wait up to this many seconds for other processes to use "
                        "< 15%% of the CPUs before starting (default 300, quick 0)")
    p.add_argument("--skip-deploy-speed", action="store_true",
                   help="do not run `pulumi up` even when the CLI is installed")
    p.add_argument("--deploy-rounds", type=int, help="deploy speed: passes (default 3, quick 1)")
    p.add_argument("--scale-sizes", default="1,5,20", help="program scale: target counts")
    p.add_argument("--release-sizes", default="1,3,6", help="host release: instance counts")
    p.add_argument("--release-bake", type=int,
                   help=f"host release: the bake besides 0, seconds per step (default "
                        f"{RELEASE_DEFAULTS.bake_seconds}, the config default; quick 3)")
    p.add_argument("--from-results", type=Path, metavar="JSON",
                   help="measure nothing: re-render the table and --docs from saved results")
    p.add_argument("--docs", type=Path,
                   help="write the report here (default docs/benchmarks.md unless --quick)")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_scale(sizes_arg: str, repeats: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--sizes", sizes_arg, "--repeats", str(repeats)],
        cwd=common.ROOT, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        return {"status": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
    data: dict[str, Any] = json.loads(done.stdout)
    data["status"] = "measured"
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        log(f"unknown section(s): {', '.join(sorted(unknown))}")
        return 2
    os.chdir(common.ROOT)
    if args.from_results is not None:
        saved: dict[str, Any] = json.loads(args.from_results.read_text())
        print(report.summary_table(saved))
        if args.docs is not None:
            args.docs.write_text(keep_block(args.docs, report.markdown(saved)))
        return 0
    started = time.time()
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "commit": report.git_describe(),
        "machine": common.machine_info(),
        "load_before": os.getloadavg(),
    }
    log(f"machine: {results['machine']['cpu']}, {results['machine']['cpus']} CPUs, "
        f"load {results['load_before'][0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="gin-bench-bin-") as tmp:
        binary = common.build_binary(Path(tmp))
        log(f"binary built as GinBuild builds it: {binary.path.stat().st_size:,} bytes")
        if "proxy" in only:
            log("1. proxy efficiency")
            settings = proxy.ProxySettings(
                rounds=args.rounds or (2 if args.quick else 5),
                seconds=args.seconds or (3 if args.quick else 10),
                warmup_seconds=1 if args.quick else 3,
                connections=args.connections, threads=args.threads)
            wait = args.quiet_wait if args.quiet_wait is not None else (0 if args.quick else 300)
            quiet = common.wait_for_quiet(wait, log=log) if wait > 0 else None
            results["proxy"] = proxy.measure(binary, settings, common.cpu_plan(not args.no_pin),
                                             log=log)
            results["proxy"]["quiet_start"] = quiet
        if "size" in only:
            log("2. artifact size")
            results["size"] = sizes.measure(binary)
        if "release" in only:
            log("5. host release (canary)")
            bake = args.release_bake if args.release_bake is not None else (
                3 if args.quick else RELEASE_DEFAULTS.bake_seconds)
            variants = {
                "v1": common.build_binary(Path(tmp) / "v1", "v1"),
                "v2": common.build_binary(Path(tmp) / "v2", "v2"),
                "faults": common.build_binary(Path(tmp) / "faults", "v2-faults", "faults"),
            }
            results["release"] = release.measure(
                variants, sizes=tuple(int(x) for x in args.release_sizes.split(",")),
                bakes=(0, bake), log=log)
    if "deploy" in only:
        log("3. deploy speed (real engine)")
        if args.skip_deploy_speed:
            results["deploy"] = {"status": "not measured (--skip-deploy-speed)"}
        else:
            passes = args.deploy_rounds or (1 if args.quick else 3)
            runs = []
            for i in range(passes):
                log(f" pass {i + 1}/{passes}")
                runs.append(deploy_speed.measure(log=log))
                if runs[-1]["status"] != "measured":
                    break
            results["deploy"] = report.merge_deploy_runs(runs)
    if "scale" in only:
        log("4. program scale (mocks)")
        results["scale"] = run_scale(args.scale_sizes, 1 if args.quick else 3)
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.time() - started

    common.RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = json.dumps(results, indent=1, default=str)
    (common.RESULTS / f"{stamp}.json").write_text(raw)
    (common.RESULTS / "latest.json").write_text(raw)
    print(report.summary_table(results))
    docs = args.docs or (None if args.quick else common.ROOT / "docs" / "benchmarks.md")
    if docs is not None:
        docs.write_text(keep_block(docs, report.markdown(results)))
        log(f"wrote {docs.relative_to(common.ROOT) if docs.is_relative_to(common.ROOT) else docs}")
    log(f"raw results: bench/results/{stamp}.json ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
