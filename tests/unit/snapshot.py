"""What the engine would see of a stack: every resource's URN, aliases and inputs.

The reshape of the code (issue: one-way layers) must not move any resource of an
existing stack: a moved URN without an alias is a delete + create on the next `up`.
`tests/unit/golden/<stack>.json` holds the snapshot taken from the program *before*
the reshape; `test_urn_stability.py` checks that the program today still registers
every one of those URNs (directly or as an alias) with the same inputs.

Regenerate only for an intended change, and review the diff like code:

    .venv/bin/python -m tests.unit.snapshot --write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks

from gin_deploy.agent import bundle
from tests.unit import harness

GOLDEN = Path(__file__).resolve().parent / "golden"
# HOME while the program runs: fixed, because it ends up in base64-encoded inputs.
HOME_DIR = Path("/tmp/gin-deploy-snapshot-home")
# A fixed version: the default one is a hash of app/'s sources, which other work changes.
VERSION = "1.2.3"


@contextmanager
def recording_urns() -> Iterator[dict[str, dict[str, Any]]]:
    """Wrap the mock monitor's RegisterResource to note each URN, parent and aliases."""
    seen: dict[str, dict[str, Any]] = {}
    original = pulumi_mocks.MockMonitor.RegisterResource

    def register(self: pulumi_mocks.MockMonitor, request: Any) -> Any:
        response = original(self, request)
        aliases = list(request.aliasURNs)
        for spec in request.aliases:
            if spec.urn:
                aliases.append(spec.urn)
                continue
            s = spec.spec
            parent = "" if s.noParent else (s.parentUrn or request.parent)
            aliases.append(self.make_urn(parent, s.type or request.type, s.name or request.name))
        seen[response.urn] = {"type": request.type, "parent": request.parent,
                              "aliases": sorted(set(aliases))}
        return response

    pulumi_mocks.MockMonitor.RegisterResource = register  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        pulumi_mocks.MockMonitor.RegisterResource = original  # type: ignore[method-assign]


# The image tag is <version>-<content address of app/ and its Dockerfile>.
_IMAGE_TAG = re.compile(re.escape(VERSION) + r"-[0-9a-f]{16}\b")


def _normalise(value: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(value, str) and value in dict(replacements):
        return dict(replacements)[value]
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return _IMAGE_TAG.sub(f"{VERSION}-<image-content>", value)
    if isinstance(value, dict):
        return {k: _normalise(v, replacements) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v, replacements) for v in value]
    return value


def _asset(value: Any) -> str:
    """Assets and archives by what they point at (their repr holds a memory address)."""
    where = getattr(value, "path", None) or getattr(value, "uri", None) or "<inline>"
    return f"{type(value).__name__}({where})"


def _config(stack: str) -> dict[str, Any]:
    config = harness.stack_config(stack)
    app = dict(config.get("gin-deploy:app") or {})
    app["version"] = VERSION
    config["gin-deploy:app"] = app
    return config


def take(stack: str, home: Path) -> dict[str, Any]:
    """The stack's resources as {urn: {type, aliases, inputs}}, machine paths replaced."""
    # The prod stack needs what AWS and the clusters would answer (the test modules' mocks).
    from tests.unit import test_edge

    test_edge.install_mocks()
    # The home dir is fixed (HOME_DIR), so it stays as is, also inside base64 payloads.
    # Values that follow the git HEAD or app/'s sources are replaced by their names.
    from components.build import git_stamp, source_hash

    src = source_hash(harness.ROOT / "app")
    commit, build_time = git_stamp(harness.ROOT / "app")
    # The agent's archive follows its code, like the binary follows app/'s sources.
    agent = hashlib.sha256(bundle.archive_bytes()).hexdigest()
    replacements = [(sys.executable, "<python>"), (str(harness.ROOT), "<project>"),
                    (src, "<source-hash>"), (src[:16], "<source-hash-16>"),
                    (src[:12], "<source-hash-12>"), (f"={commit}", "=<commit>"),
                    (commit, "<commit>"), (build_time, "<commit-time>"),
                    (agent, "<agent-sha256>")]
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        with recording_urns() as seen:
            mocks = harness.run_program(_config(stack), stack=stack)
    finally:
        if old_home is not None:
            os.environ["HOME"] = old_home
    inputs_by_key = {(r.typ, r.name): r.inputs for r in mocks.resources}
    # The mock monitor answers on a thread that does not see the stack's settings; and like
    # the real engine, the stack resource is left out of its children's type chains (whether
    # the mocks register it depends on what ran before in the same process).
    def fix(urn: str) -> str:
        urn = urn.replace("urn:pulumi:stack::project::", f"urn:pulumi:{stack}::gin-deploy::")
        return urn.replace("::pulumi:pulumi:Stack$", "::")

    snapshot: dict[str, Any] = {}
    for urn, info in sorted(seen.items()):
        if info["type"] == "pulumi:pulumi:Stack":
            continue
        name = urn.rsplit("::", 1)[-1]
        inputs = inputs_by_key.get((info["type"], name), {})
        snapshot[fix(urn)] = {
            "parent": "" if "::pulumi:pulumi:Stack::" in info["parent"] else fix(info["parent"]),
            "aliases": [fix(a) for a in info["aliases"]],
            "inputs": _normalise(json.loads(json.dumps(inputs, default=_asset)), replacements),
        }
    return snapshot


def reachable_urns(current: dict[str, Any]) -> dict[str, str]:
    """Every URN a current resource answers to -> that resource's URN.

    A child inherits its parent's aliases: its URN under each alias of the parent.
    """
    names: dict[str, set[str]] = {}

    def of(urn: str) -> set[str]:
        if urn in names:
            return names[urn]
        info = current[urn]
        found = {urn, *info["aliases"]}
        parent = info["parent"]
        if parent and parent in current:
            own_type, name = urn.split("::")[2].split("$")[-1], urn.split("::")[-1]
            for parent_urn in of(parent) - {parent}:
                parent_type = parent_urn.split("::")[2]
                stack_project = parent_urn.split("::")[0:2]
                found.add("::".join([*stack_project, f"{parent_type}${own_type}", name]))
        names[urn] = found
        return found

    return {alias: urn for urn in current for alias in of(urn)}


def prepare_home() -> Path:
    """A fresh HOME_DIR: the prod host target reads its SSH key from ~/.ssh/gin-deploy-edge."""
    shutil.rmtree(HOME_DIR, ignore_errors=True)
    (HOME_DIR / ".ssh").mkdir(parents=True)
    (HOME_DIR / ".ssh" / "gin-deploy-edge").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return HOME_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite tests/unit/golden/")
    parser.add_argument("--force", action="store_true",
                        help="write even if resources of existing stacks would be deleted")
    args = parser.parse_args()
    GOLDEN.mkdir(exist_ok=True)
    for stack in ("dev", "prod"):
        snap = take(stack, prepare_home())
        golden = GOLDEN / f"{stack}.json"
        previous = json.loads(golden.read_text()) if golden.exists() else {}
        # A golden URN that is reachable only through an alias stays under its old name (with
        # today's inputs): existing stacks have that name, and the alias must keep covering it.
        reachable = reachable_urns(snap)
        for urn in previous:
            if urn not in snap and urn in reachable:
                snap[urn] = {**snap.pop(reachable[urn]), "aliases": previous[urn]["aliases"]}
        gone = [urn for urn in previous if urn not in snap]
        if args.write and gone and not args.force:
            raise SystemExit(f"{stack}: {len(gone)} resources of existing stacks would be "
                             f"deleted (e.g. {gone[0]}); not rewriting without --force")
        text = json.dumps(snap, indent=1, sort_keys=True) + "\n"
        if args.write:
            (GOLDEN / f"{stack}.json").write_text(text)
        print(f"{stack}: {len(snap)} resources")
    pulumi.runtime.set_mocks(harness.RecordingMocks())


if __name__ == "__main__":
    main()
