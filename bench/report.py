"""Tables and docs/benchmarks.md from the results bench/run.py collects."""

from __future__ import annotations

import subprocess
from typing import Any

from bench import release
from bench.common import ROOT, median

MIB = 1024 * 1024
PROXY_GOAL = 1.3
# gin-deploy's nginx against the minimal TLS proxy (the ceiling of any generated config).
CEILING_GOAL = 0.9
# Release time of the largest size over the smallest: "does not grow" on a shared box.
RELEASE_GROWTH = 1.25


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
        return head.strip() + (" + uncommitted changes" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- deploy speed -----------------------------------------------------------------------------


def merge_deploy_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over passes, per operation and per resource step."""
    if not runs or runs[0]["status"] != "measured":
        return runs[0] if runs else {"status": "not measured"}
    if any(r["status"] != "measured" for r in runs):
        failed = next(r for r in runs if r["status"] != "measured")
        runs = [r for r in runs if r["status"] == "measured"]
        note = f"{len(runs)} pass(es) measured, then {failed['status']}"
    else:
        note = f"median of {len(runs)} pass(es)"
    operations: dict[str, Any] = {}
    for name in runs[0]["operations"]:
        passes = [r["operations"][name] for r in runs if name in r["operations"]]
        steps: dict[str, list[float]] = {}
        for p in passes:
            for s in p["slowest_steps"]:
                steps.setdefault(f"{s['resource']} ({s['op']})", []).append(s["seconds"])
        total = median([p["seconds"] for p in passes])
        step_medians = {k: median(v) for k, v in steps.items()}
        top_name, top_seconds = max(step_medians.items(), key=lambda kv: kv[1],
                                    default=("-", 0.0))
        in_steps = median([p["resource_steps_seconds"] for p in passes])
        operations[name] = {
            "seconds": total,
            "seconds_all": [p["seconds"] for p in passes],
            "summary": passes[-1]["summary"],
            "steps": dict(sorted(step_medians.items(), key=lambda kv: -kv[1])),
            "top_step": top_name, "top_step_seconds": top_seconds,
            "outside_steps_seconds": max(0.0, total - in_steps),
        }
    return {"status": "measured", "note": note, "instances": runs[0]["instances"],
            "operations": operations}


def _dominant(op: dict[str, Any]) -> str:
    outside = op["outside_steps_seconds"]
    if op["top_step_seconds"] >= outside:
        return f"{op['top_step']}: {op['top_step_seconds']:.1f} s"
    return f"engine + program (no resource step running): {outside:.1f} s"


# --- formatting -------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / MIB:.2f} MiB"


def _yes(ok: bool | None) -> str:
    return "-" if ok is None else ("**yes**" if ok else "**no**")


def variants(p: dict[str, Any]) -> list[str]:
    return [v for v in ("a", "b", "c", "d") if v in p["summary"]]


def per_round_ratios(p: dict[str, Any]) -> dict[str, float]:
    runs = p["runs"]
    rounds = range(len(runs["a"]))
    return {f"b/{v}": median([runs["b"][i]["rps"] / runs[v][i]["rps"] for i in rounds])
            for v in variants(p) if v != "b"}


def summary_table(r: dict[str, Any]) -> str:
    rows = ["| benchmark | measured | goal | met |", "|---|---|---|---|"]
    p = r.get("proxy")
    if p:
        s = p["summary"]
        for v in variants(p):
            rows.append(f"| proxy {v}: {p['labels'][v]} | {s[v]['rps']:,.0f} req/s, "
                        f"p50 {s[v]['p50_ms']:.2f} / p99 {s[v]['p99_ms']:.2f} / "
                        f"p99.9 {s[v]['p999_ms']:.2f} ms | | |")
        ratios = p["ratios"]
        rows.append(f"| proxy b/c (gin-deploy vs naive) | {ratios['b/c']:.2f} | "
                    f">= {PROXY_GOAL} | {_yes(ratios['b/c'] >= PROXY_GOAL)} |")
        if ratios.get("b/d") is not None:
            bd = per_round_ratios(p)["b/d"]
            rows.append(f"| proxy b/d (gin-deploy vs minimal TLS proxy) | {bd:.2f} "
                        f"(median of per-round ratios) | >= {CEILING_GOAL} | "
                        f"{_yes(bd >= CEILING_GOAL)} |")
        rows.append(f"| proxy b/a (gin-deploy vs direct) | {ratios['b/a']:.2f} | "
                    "as high as the machine allows | - |")
    z = r.get("size")
    if z:
        rows.append(f"| image vs static binary | {_mib(z['image_bytes'])} vs "
                    f"{_mib(z['binary_bytes'])} (+{_mib(z['overhead_bytes'])}) | "
                    f"<= binary + 1 MiB | {_yes(z['goal_met'])} |")
    d = r.get("deploy")
    if d:
        if d["status"] != "measured":
            rows.append(f"| deploy speed (real engine) | {d['status']} | - | - |")
        else:
            for name, op in d["operations"].items():
                rows.append(f"| {name} (dev stack) | {op['seconds']:.1f} s; dominated by "
                            f"{_dominant(op)} | - | - |")
    sc = r.get("scale")
    if sc:
        if sc["status"] != "measured":
            rows.append(f"| program scale | {sc['status']} | - | - |")
        else:
            prod = sc["prod"]
            rows.append(f"| prod preview under mocks ({prod['targets']} targets) | "
                        f"{prod['resources']} resources, {prod['seconds']:.2f} s | - | - |")
            mixed = sc["series"]["mixed"]
            rows.append("| program scale, mixed targets | " + "; ".join(
                f"{row['targets']}: {row['resources']} res. {row['seconds']:.2f} s"
                for row in mixed) + " | - | - |")
    rel = r.get("release")
    if rel and rel.get("status") == "measured":
        for bake in sorted({x["bake_seconds"] for x in rel["runs"] if x["kind"] == "good"}):
            times = "; ".join(f"{n}: {s:.1f} s" for n, s in
                              sorted(release.time_by_size(rel, bake).items()))
            g = release.growth(rel, bake)
            rows.append(f"| host release time, bake {bake} s (instances: time) | {times} | "
                        f"does not grow with instances | "
                        f"{_yes(None if g is None else g <= RELEASE_GROWTH)} |")
        good = [x for x in rel["runs"] if x["kind"] == "good"]
        rows.append(f"| failed requests, good releases | "
                    f"{sum(x['load']['failed'] for x in good)} of "
                    f"{sum(x['load']['requests'] for x in good):,} | 0 | "
                    f"{_yes(all(x['load']['failed'] == 0 for x in good))} |")
        for bad in (x for x in rel["runs"] if x["kind"] == "bad"):
            first = rel["steps"][0] / 100
            share = bad["load"]["failed"] / max(1, bad["load"]["requests"])
            met = bool(bad["exit"]) and share <= first and not bad["after"]["failed"]
            rows.append(f"| failed requests, bad release (fails {bad['fault_error_rate']:.0%}) "
                        f"{'rolled back' if bad['exit'] else '**not rolled back**'} | "
                        f"{bad['load']['failed']} of {bad['load']['requests']:,} "
                        f"({share:.1%}), then {bad['after']['failed']} of "
                        f"{bad['after']['requests']:,} | <= the first step's share "
                        f"({first:.0%}), then 0 | {_yes(met)} |")
    return "\n".join(rows)


def _release(rel: dict[str, Any]) -> list[str]:
    if rel.get("status") != "measured":
        return [f"**{rel.get('status')}**"]
    out = [
        f"A user-mode host stack (nginx, supervisord, self-signed TLS) runs v1; the agent "
        f"releases v2 beside it with the `canary` strategy and the default steps "
        f"{rel['steps']}, maxErrorRate {rel['max_error_rate']}, maxP95Ms {rel['max_p95_ms']}, "
        f"minRequests {', '.join(f'{v} (bake {b} s)' for b, v in rel['min_requests'].items())}"
        f" — every size canary, though a single instance defaults to rolling, so the sizes "
        f"compare like with like. Time = the agent's deploy call (start the new instances "
        f"side by side, readiness, the steps and their bakes, promotion, drain). "
        f"Client during each release: {rel['client']}. Load average "
        f"{rel['load_average'][0]:.1f} at the end of this part.",
        "",
        "| release | instances | bake s/step | seconds | outside the bakes | requests | "
        "failed | agent |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in rel["runs"]:
        baking = x["bake_seconds"] * (len(rel["steps"]) if x["kind"] == "good" else 0)
        outcome = "promoted" if x["exit"] == 0 else "rolled back: " + x.get("message", "")
        outcome = outcome.replace("hostctl: error: ", "").replace("|", "/")
        out.append(f"| {x['kind']} | {x['instances']} | {x['bake_seconds']} | "
                   f"{x['seconds']:.1f} | {max(0.0, x['seconds'] - baking):.1f} "
                   f"{'' if x['kind'] == 'good' else '(stops early)'} | "
                   f"{x['load']['requests']:,} | {x['load']['failed']} | {outcome} |")
    out.append("")
    for bake in sorted({x["bake_seconds"] for x in rel["runs"] if x["kind"] == "good"}):
        g = release.growth(rel, bake)
        if g is not None:
            out.append(f"- bake {bake} s: the largest release takes x{g:.2f} the time of the "
                       f"smallest (goal: does not grow with the number of instances; "
                       f"<= x{RELEASE_GROWTH} counted as met on this shared machine).")
    for bad in (x for x in rel["runs"] if x["kind"] == "bad"):
        out.append(f"- bad release: {bad['load']['failed']} failed requests of "
                   f"{bad['load']['requests']:,} reached the client before the rollback "
                   f"(the build fails {bad['fault_error_rate']:.0%} of the requests it gets; "
                   f"the first step sends it {rel['steps'][0]}% of them); in the "
                   f"{bad['after']['requests']} requests after it, "
                   f"{bad['after']['failed']} failed.")
    return out


# --- the document -----------------------------------------------------------------------------


def _machine(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    lb, la = r["load_before"], r["load_after"]
    return [
        "| | |", "|---|---|",
        f"| CPU | {m['cpu']}, {m['cpus']} CPUs ({m['virtualization']}) |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS, kernel | {m['os']}, {m['kernel']} |",
        f"| tools | {m['nginx']}, {m['wrk']}, {m['go']}, {m['openssl']}, "
        f"Python {m['python']} |",
        f"| load average (1 min) | {lb[0]:.1f} before, {la[0]:.1f} after |",
        f"| run | {r['started']}, commit {r['commit']}, {r['seconds'] / 60:.0f} min"
        f"{', quick' if r['quick'] else ''} |",
    ]


def _proxy(p: dict[str, Any], load: float, cpus: int) -> list[str]:
    s, st = p["summary"], p["settings"]
    pr = per_round_ratios(p)
    out = [
        f"Path `{p['path']}` (a tiny JSON body, so the proxy's own cost is what shows), "
        f"{st['instances']} instances, wrk with {st['threads']} thread(s) and "
        f"{st['connections']} keep-alive connections, {st['rounds']} interleaved rounds of "
        f"{st['seconds']:.0f} s after a {st['warmup_seconds']:.0f} s warm-up each; "
        f"{p['cpus']}. Medians over rounds.",
        "",
        "| | req/s (median) | range | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | "
        "others' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants(p):
        x = s[v]
        out.append(f"| {v}: {p['labels'][v]} | {x['rps']:,.0f} | {x['rps_min']:,.0f}-"
                   f"{x['rps_max']:,.0f} | {x['p50_ms']:.2f} | {x['p90_ms']:.2f} | "
                   f"{x['p99_ms']:.2f} | {x['p999_ms']:.2f} | {x['errors']} | "
                   f"{x.get('foreign_cpu_share', 0.0):.0%} |")
    ratios = p["ratios"]
    bc, ba = ratios["b/c"], ratios["b/a"]
    out += [
        "",
        f"- **b/c = {bc:.2f}** (median of per-round ratios {pr['b/c']:.2f}); goal >= "
        f"{PROXY_GOAL}: **{'met' if bc >= PROXY_GOAL else 'not met'}**.",
        *([f"- **b/d = {pr['b/d']:.2f}** (median of per-round ratios; ratio of medians "
            f"{ratios['b/d']:.2f}): what gin-deploy's config, access log and headers "
            f"included, keeps of the minimal TLS proxy; goal >= {CEILING_GOAL}: "
            f"**{'met' if pr['b/d'] >= CEILING_GOAL else 'not met'}**."
            + (" Above 1 the config does more work than the ceiling yet scored higher: "
               "the machine's noise is larger than the difference, so this run cannot "
               "tell whether the goal is met; rerun on a quiet machine."
               if pr["b/d"] > 1 else "")]
          if "b/d" in pr else []),
        f"- **b/a = {ba:.2f}** (per-round {pr['b/a']:.2f}): what HTTPS termination plus "
        "a proxy hop keeps of the direct HTTP throughput of one instance.",
        f"- Latency at p50/p99: b {s['b']['p50_ms']:.2f}/{s['b']['p99_ms']:.2f} ms, "
        f"c {s['c']['p50_ms']:.2f}/{s['c']['p99_ms']:.2f} ms, "
        f"a {s['a']['p50_ms']:.2f}/{s['a']['p99_ms']:.2f} ms.",
    ]
    foreign = median([run.get("foreign_cpu_share", 0.0)
                      for runs in p["runs"].values() for run in runs])
    out.append(f"- \"Others' CPU\" is the share of the machine's CPUs that processes outside "
               "the measurement used during the runs (from /proc/stat minus the servers' and "
               f"wrk's own CPU time); median here {foreign:.0%}"
               + (f", peak load average {load:.1f} on {cpus} CPUs. The machine was shared "
                  "(other test runs), so absolute numbers are lower and noisier than on an "
                  "idle machine; interleaved rounds keep the ratios comparable."
                  if foreign >= 0.05 or load > cpus else "."))
    quiet = p.get("quiet_start")
    if quiet and not quiet["quiet"]:
        out.append(f"- The run started after waiting {quiet['waited_seconds']} s for a quiet "
                   f"machine without getting one (others used {quiet['last_share']:.0%}).")
    return out


def _size(z: dict[str, Any]) -> list[str]:
    return [
        "| | bytes | MiB |", "|---|---|---|",
        f"| static binary (`CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w -X ...\"`) | "
        f"{z['binary_bytes']:,} | {z['binary_bytes'] / MIB:.2f} |",
        f"| CA bundle the final stage copies | {z['ca_bundle_bytes']:,} | "
        f"{z['ca_bundle_bytes'] / MIB:.2f} |",
        f"| image (uncompressed, as `podman images` counts it) | {z['image_bytes']:,} | "
        f"{z['image_bytes'] / MIB:.2f} |",
        f"| image as a registry stores it (gzip layers + config + manifest) | "
        f"{z['image_compressed_bytes']:,} | {z['image_compressed_bytes'] / MIB:.2f} |",
        f"| image - binary | {z['overhead_bytes']:,} | {z['overhead_bytes'] / MIB:.2f} |",
        "",
        f"Goal image <= binary + 1 MiB: **{'met' if z['goal_met'] else 'not met'}**. "
        f"How: {z['method']}.",
    ]


def _deploy(d: dict[str, Any]) -> list[str]:
    if d["status"] != "measured":
        return [f"**{d['status']}.** With the project's Pulumi CLI installed "
                "(`scripts/setup.sh` puts it in `.tools/bin`), `bench/run.py` measures a "
                "first `up`, a no-change `up`, a rolling update of 3 instances and the "
                "destroy on a private copy of the dev stack (bench/deploy_speed.py)."]
    out = [
        f"The dev stack ({d['instances']} instances, self-signed TLS) on a private copy of "
        f"the project with its own file backend; {d['note']}. \"In steps\" is time inside "
        "resource steps (the build command, the host agent); the rest is the engine, "
        "the language host and the program itself.",
        "",
        "| operation | seconds | changes | slowest steps (median s) | outside steps |",
        "|---|---|---|---|---|",
    ]
    for name, op in d["operations"].items():
        steps = ", ".join(f"{k} {v:.1f}" for k, v in list(op["steps"].items())[:3]) or "-"
        changes = ", ".join(f"{k} {v}" for k, v in op["summary"].items())
        out.append(f"| {name} | {op['seconds']:.1f} | {changes} | {steps} | "
                   f"{op['outside_steps_seconds']:.1f} s |")
    return out


def _scale(sc: dict[str, Any]) -> list[str]:
    if sc["status"] != "measured":
        return [f"**{sc['status']}**"]
    prod = sc["prod"]
    out = [
        f"Import of the program, once per process: {sc['import_seconds']:.2f} s; its first "
        f"evaluation, which also loads the provider modules it touches: "
        f"{sc.get('first_evaluation_seconds', float('nan')):.2f} s. "
        f"The prod stack ({prod['note']}): "
        f"{prod['targets']} targets, **{prod['resources']} resources, evaluated in "
        f"{prod['seconds']:.2f} s** (median, warm; by provider: "
        + ", ".join(f"{k} {v}" for k, v in sorted(prod["by_provider"].items())) + ").",
        "",
        "| series | targets | kinds | resources | evaluation s | s per target |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in sc["series"].items():
        for row in rows:
            out.append(f"| {name} | {row['targets']} | {', '.join(row['kinds'])} | "
                       f"{row['resources']} | {row['seconds']:.2f} | "
                       f"{row['seconds'] / row['targets']:.3f} |")
    out.append("")
    for name, rows in sc["series"].items():
        if len(rows) >= 2:
            lo, hi = rows[-2], rows[-1]
            out.append(
                f"- {name}: from {lo['targets']} to {hi['targets']} targets "
                f"(x{hi['targets'] / lo['targets']:.0f}) resources grow "
                f"x{hi['resources'] / lo['resources']:.1f} and evaluation time "
                f"x{hi['seconds'] / lo['seconds']:.1f}.")
    return out


def markdown(r: dict[str, Any]) -> str:
    load = max(r["load_before"][0], r["load_after"][0])
    cpus = int(r["machine"]["cpus"] or 1)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `.venv/bin/python bench/run.py`; rerun it instead of editing "
        "the numbers. The prose in bench/report.py. -->",
        "",
        "What it costs to run the service the way gin-deploy runs it, measured on one "
        "machine in one run. Everything is local (load goes to 127.0.0.1 only).",
        "",
        "## Rerun",
        "",
        "```sh",
        ".venv/bin/python bench/run.py           # full run, rewrites this file",
        ".venv/bin/python bench/run.py --quick   # smoke run, prints the table only",
        ".venv/bin/python bench/run.py --only proxy --rounds 9 --seconds 20",
        "```",
        "",
        "Needs nginx, supervisord, wrk, go (and taskset, podman if present); the deploy "
        "speed part needs the Pulumi CLI in `.tools/bin` (`scripts/setup.sh`). Raw "
        "results, every round included: `bench/results/*.json` (not committed).",
        "",
        "## Machine",
        "",
        *_machine(r),
        "",
        "## Summary",
        "",
        summary_table(r),
        "",
    ]
    if r.get("proxy"):
        lines += ["## 1. Proxy efficiency", "", *PROXY_SETUP, "", *_proxy(r["proxy"], load, cpus),
                  "", *PROXY_READING, ""]
    if r.get("size"):
        lines += ["## 2. Artifact size", "", *_size(r["size"]), "", *SIZE_READING, ""]
    if r.get("deploy"):
        lines += ["## 3. Deploy speed (real engine)", "", *_deploy(r["deploy"]), "",
                  *DEPLOY_READING, ""]
    if r.get("scale"):
        lines += ["## 4. Scale of the program", "", *SCALE_SETUP, "", *_scale(r["scale"]), "",
                  *SCALE_READING, ""]
    if r.get("release"):
        lines += ["## 5. Host release (canary)", "", *_release(r["release"]), "",
                  *RELEASE_READING, ""]
    lines += SECURITY
    return "\n".join(lines).rstrip() + "\n"


PROXY_SETUP = [
    "Four ways to the same two instances of the reference service, deployed by the host "
    "agent exactly as `pulumi up --stack dev` deploys them (user mode, supervisord, "
    "self-signed TLS from the stack's CA; the payload comes from `gin_deploy/program/host.py` "
    "and `components/host.py`):",
    "",
    "- **a** direct: plain HTTP to one instance, no proxy — the ceiling;",
    "- **b** gin-deploy: HTTPS through the nginx site gin-deploy generates "
    "(`gin_deploy/render/nginx.py`): upstream keepalive over HTTP/1.1, `least_conn`, "
    "bounded retries, security headers, JSON access log;",
    "- **c** naive: HTTPS through [`bench/naive_nginx.conf.j2`](../bench/naive_nginx.conf.j2), "
    "the reverse proxy most tutorials show: no upstream keepalive, HTTP/1.0 to the "
    "instances, default buffers, round robin, combined access log. Same certificate, same "
    "TLS settings, same `nginx.conf` around it, same instances — only the proxying differs;",
    "- **d** minimal: HTTPS through "
    "[`bench/minimal_nginx.conf.j2`](../bench/minimal_nginx.conf.j2): only `proxy_pass` "
    "with upstream keepalive, no access log, no headers — the ceiling any generated config "
    "can reach on this box (same certificate, TLS settings, `nginx.conf` and instances).",
]

PROXY_READING = [
    "**Reading it.** The naive proxy opens and closes a TCP connection to an instance for "
    "every request, and the instance does the same accept/close work; the generated config "
    "reuses a small pool of upstream connections. On a CPU-bound box that per-request "
    "connection work is what separates b from c. b against a shows the price of TLS "
    "termination plus one more process hop on the same CPUs; since the servers share "
    "their CPU(s) with nginx here, a dedicated-core setup would show a smaller gap.",
]

SIZE_READING = [
    "**Reading it.** The final stage is `FROM scratch` with two files, so the image is the "
    "binary plus the CA bundle plus tar headers: nothing else to patch or scan.",
]

DEPLOY_READING = [
    "**Reading it.** A no-change `up` is pure overhead (engine, Python language host, "
    "program evaluation, provider start-up): no resource step runs. A rolling update is "
    "dominated by the host agent restarting one instance at a time and waiting, per "
    "instance, for readiness and for nginx's passive health check window, which is the "
    "price of zero failed requests during the update.",
]

SCALE_SETUP = [
    "The real program (`gin_deploy.program.main`) under the unit tests' Pulumi mocks "
    "(`tests/unit/harness.py` plus the provider answers the unit tests register), "
    "in a fresh interpreter; configs generated from `Pulumi.prod.yaml` with 1, 5 and 20 "
    "targets. Evaluation = one `main()` run, median of repeats after a warm-up. This is "
    "also the \"preview of the prod stack under mocks\": program evaluation time with all "
    "components, no engine and no cloud.",
]

SCALE_READING = [
    "**Reading it.** Each target kind registers a fixed set of resources (edge routing "
    "adds a few per target on top of its own), so resources grow linearly with targets, "
    "and evaluation time grows with them: the program's cost is per resource, with no "
    "step that is quadratic in targets. Even 20 targets evaluate in seconds; in a real "
    "`preview` of such a stack the providers' reads and diffs, not the program, take the "
    "time.",
]

RELEASE_READING = [
    "**Reading it.** With bake 0 a release is readiness only: the candidates start side by "
    "side (one supervisord group, started together), nginx moves the share step by step "
    "without a reload, then the instances restart on the new release and the candidates "
    "drain. With the default bake the time is the steps' observation windows plus that "
    "same overhead; more instances add no step. A bad release is judged as soon as its "
    "first step has seen enough of its own requests, so it is stopped long before the "
    "bake is over, and only the first step's share of users could see its errors.",
]

SECURITY = [
    "## Security scans (part of the test run)",
    "",
    "Not benchmarks, but run by `./scripts/test` and failing on any new finding; every "
    "accepted finding is justified in one reviewed list, "
    "[`tests/security_exceptions.toml`](../tests/security_exceptions.toml):",
    "",
    "- TLS of a deployed stack (`tests/host/test_tls_scan.py`): sslyze's Mozilla "
    "\"intermediate\" check, testssl.sh (protocols, server defaults, headers, all "
    "vulnerabilities), TLS 1.0/1.1 refused, HSTS on every response;",
    "- `app/Dockerfile`: hadolint and checkov (`tests/render/test_dockerfile_scan.py`);",
    "- rendered Kubernetes manifests: checkov (`tests/render/test_kubernetes_render.py`);",
    "- the systemd unit: `systemd-analyze security --offline` "
    "(`tests/render/test_systemd_render.py`);",
    "- IAM policies: parliament (`tests/render/test_ecs_render.py`, `tests/unit/test_ecs.py`).",
]
