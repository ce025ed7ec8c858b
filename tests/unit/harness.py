"""Run the real gin-deploy program under Pulumi mocks and record what it registers.

Mocks are set before anything is built; every registered resource is recorded
with its type token, name and inputs, so tests assert on what the engine would
receive. Secrets keep their secret wrapper in the recorded inputs (`is_secret`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = rpc._special_sig_key
# An SSH host key to pin (the one Pulumi.prod.yaml's example host carries).
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIMooMwM9tdRIGJxxgcSHAbmRpRaJefbad5TrM2GpKoE"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == rpc._special_secret_sig


def unsecret(value: Any) -> Any:
    return value["value"] if is_secret(value) else value


@dataclass
class Registered:
    typ: str
    name: str
    inputs: dict[str, Any]
    parent_urn: str | None = None


# Per-type extra outputs and per-token invoke results that cloud providers would
# return; test modules of each target kind register theirs here at import.
OUTPUT_FACTORIES: dict[str, Callable[[pulumi.runtime.MockResourceArgs], dict[str, Any]]] = {}
CALL_RESULTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Registered] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == "command:local:Command" or args.typ == "command:remote:Command":
            # A build prints the binary's sha256; a deploy prints its JSON summary.
            outputs.setdefault("stdout", "e3b0c442" * 8)
        if args.typ == "docker:index/registryImage:RegistryImage":
            outputs["sha256Digest"] = f"sha256:{'ab' * 32}"
        factory = OUTPUT_FACTORIES.get(args.typ)
        if factory is not None:
            outputs.update(factory(args))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append((args.token, dict(args.args)))
        result = CALL_RESULTS.get(args.token)
        return result(dict(args.args)) if result is not None else {}

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str, typ: str | None = None) -> Registered:
        """The one resource named `name` (of type `typ`: a component and its main child
        may share a name)."""
        matches = [r for r in self.resources if r.name == name and typ in (None, r.typ)]
        assert len(matches) == 1, f"expected one resource named {name!r}, got {len(matches)}"
        return matches[0]


def project_defaults() -> dict[str, Any]:
    """The typed defaults of Pulumi.yaml, as the engine applies them."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return {f"gin-deploy:{k}": v["default"] for k, v in project["config"].items() if "default" in v}


def stack_config(stack: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return dict(data["config"])


def set_config(config: dict[str, Any], secret_keys: list[str] | tuple[str, ...] = ()) -> None:
    merged = {**project_defaults(), **config}
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in merged.items()}
    pulumi.runtime.set_all_config(encoded, list(secret_keys))


def run_program(
    config: dict[str, Any],
    *,
    stack: str = "dev",
    secret_keys: list[str] | tuple[str, ...] = (),
    preview: bool = False,
    mocks: RecordingMocks | None = None,
    transforms: tuple[Callable[[pulumi.ResourceTransformationArgs], Any], ...] = (),
) -> RecordingMocks:
    """Run gin_deploy.program.main() with `config`; return the recorded resources.

    Exceptions raised by the program (ConfigError) propagate to the caller.
    """
    from gin_deploy import program

    mocks = mocks if mocks is not None else RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="gin-deploy", stack=stack, preview=preview)
    set_config(config, secret_keys)

    @pulumi.runtime.test
    def evaluate() -> None:
        # Transformations see resource options, which mocks do not record.
        for transform in transforms:
            pulumi.runtime.register_stack_transformation(transform)
        program.main()

    evaluate()
    return mocks
