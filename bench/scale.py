"""Scale of the program: resources registered and evaluation time of the real program
(gin_deploy.program.main) under the unit tests' Pulumi mocks, as the prod stack grows.

Runs in a fresh interpreter (`python -m bench.scale`, started by bench/run.py) so the
import cost of the program (the Pulumi SDK and the AWS/Kubernetes/Docker/command
providers) is measured once, cold, and evaluations are measured warm after one
warm-up. The mocks are the ones tests/unit uses (tests/unit/harness.py plus the AWS
and Kubernetes answers registered by tests/unit/test_ecs.py and test_kubernetes.py).

Configs: Pulumi.prod.yaml is the template. "prod" is that stack as it is (edge
routing included when the program implements it; otherwise without, and the result
says so). The series repeat its targets with unique names: "mixed" cycles through
the prod targets (without edge routing only the first ecs target can share the
domain, so later ecs slots become the next kind), "host" and "kubernetes" repeat one
kind.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _targets(template: list[dict[str, Any]], kinds: list[str], n: int,
             ecs_repeatable: bool) -> list[dict[str, Any]]:
    by_kind = {t["kind"] if t.get("connection") != "ssh" else "host": t for t in template}
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n:
        kind = kinds[i % len(kinds)]
        i += 1
        if kind == "ecs" and not ecs_repeatable and any(t["kind"] == "ecs" for t in out):
            continue
        target = copy.deepcopy(by_kind[kind])
        target["name"] = f"{kind[:3]}{len(out):02d}"
        # Every copy takes traffic (the template's ssh host is out of rotation, weight 0,
        # and a stack where every weight is 0 is refused).
        target["weight"] = max(1, int(target.get("weight", 1)))
        if kind == "host":
            target["host"] = f"203.0.113.{10 + len(out)}"
        if kind == "ecs" and len(out):
            target["region"] = ("us-east-1", "eu-west-1", "ap-southeast-1")[len(out) % 3]
        out.append(target)
    return out


def _evaluate(config: dict[str, Any], repeats: int) -> dict[str, Any]:
    from tests.unit.harness import run_program

    times: list[float] = []
    count = 0
    kinds: dict[str, int] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        mocks = run_program(config, stack="prod")
        times.append(time.perf_counter() - start)
        count = len(mocks.resources)
        kinds = {}
        for r in mocks.resources:
            provider = r.typ.split(":")[0]
            kinds[provider] = kinds.get(provider, 0) + 1
    return {"resources": count, "by_provider": kinds, "seconds": statistics.median(times),
            "seconds_all": times}


def _register_mocks() -> None:
    """Import the unit-test modules that register provider answers with the harness
    (at import, or in an `install_mocks()` function, which is then called)."""
    import importlib

    installers = []
    for path in sorted((ROOT / "tests" / "unit").glob("test_*.py")):
        text = path.read_text()
        if "harness.OUTPUT_FACTORIES" in text or "harness.CALL_RESULTS" in text:
            module = importlib.import_module(f"tests.unit.{path.stem}")
            if callable(getattr(module, "install_mocks", None)):
                installers.append(module.install_mocks)
    for install in installers:
        install()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,5,20")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)   # the program runs from the project root, as under the engine
    start = time.perf_counter()
    import gin_deploy.program  # noqa: F401 - the cold import is what is measured
    import_seconds = time.perf_counter() - start
    _register_mocks()
    from tests.unit.harness import run_program, stack_config

    prod = stack_config("prod")
    with tempfile.TemporaryDirectory(prefix="gin-bench-key-") as tmp:
        # The prod ssh target reads its key file; a placeholder stands in (never used).
        key = Path(tmp) / "id_ed25519"
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nplaceholder\n"
                       "-----END OPENSSH PRIVATE KEY-----\n")
        for target in prod["gin-deploy:targets"]:
            if "privateKeyPath" in target:
                target["privateKeyPath"] = str(key)

        edge_note = "as committed, edge routing included"
        first = time.perf_counter()
        try:
            run_program(prod, stack="prod")   # also the warm-up
        except Exception as err:  # any failure: without edge, say why
            if "gin-deploy:edge" not in prod:
                raise
            prod.pop("gin-deploy:edge")
            reason = str(err).strip().splitlines()[-1][:160] if str(err).strip() else \
                type(err).__name__
            edge_note = f"without edge routing (with it the program failed: {reason})"
            first = time.perf_counter()
            run_program(prod, stack="prod")
        first_seconds = time.perf_counter() - first
        has_edge = "gin-deploy:edge" in prod

        result: dict[str, Any] = {
            "import_seconds": import_seconds,
            # The first evaluation in a process also imports the provider modules the
            # program touches (pulumi_aws loads its submodules lazily).
            "first_evaluation_seconds": first_seconds,
            "prod": {**_evaluate(prod, args.repeats), "note": edge_note,
                     "targets": len(prod["gin-deploy:targets"])},
            "series": {},
        }
        template = prod["gin-deploy:targets"]
        series = {"mixed": ["ecs", "kubernetes", "host"], "host": ["host"],
                  "kubernetes": ["kubernetes"]}
        for name, kinds in series.items():
            rows = []
            for n in sizes:
                config = copy.deepcopy(prod)
                config["gin-deploy:targets"] = _targets(template, kinds, n, has_edge)
                row = _evaluate(config, args.repeats)
                row["targets"] = n
                row["kinds"] = sorted({t["kind"] for t in config["gin-deploy:targets"]})
                rows.append(row)
            result["series"][name] = rows
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
