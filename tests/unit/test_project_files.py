"""The project files tell the truth: Pulumi.yaml schema, stack files, README, pins."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pulumi_command
import pytest
import yaml

from gin_deploy import docs
from gin_deploy.config import (
    TOP_LEVEL_KEYS,
    AppConfig,
    ConfigError,
    RawValue,
    parse_stack_config,
)
from gin_deploy.config.schema import specs
from tests.unit.harness import ROOT, project_defaults, stack_config

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def test_project_declares_python_with_explicit_toolchain_and_virtualenv() -> None:
    assert PROJECT["name"] == "gin-deploy"
    assert PROJECT["runtime"]["name"] == "python"
    assert PROJECT["runtime"]["options"] == {"toolchain": "pip", "virtualenv": ".venv"}


def test_every_contract_key_is_typed_and_described() -> None:
    assert set(PROJECT["config"]) == set(TOP_LEVEL_KEYS)
    for key, decl in PROJECT["config"].items():
        assert decl["type"] in ("string", "object", "array"), key
        assert len(decl["description"]) > 20, key
    assert PROJECT["config"]["targets"]["items"] == {"type": "object"}


def test_every_contract_key_has_a_default_so_the_cli_never_preempts_our_messages() -> None:
    # The CLI refuses a stack that lacks a typed key with no default, before the
    # program can explain; optional keys must default to "off".
    for key, decl in PROJECT["config"].items():
        assert decl.get("default") is not None, key
    assert PROJECT["config"]["edge"]["default"] == {}
    assert PROJECT["config"]["targets"]["default"] == []


def test_app_default_in_pulumi_yaml_matches_the_code() -> None:
    default = PROJECT["config"]["app"]["default"]
    code = AppConfig()
    for f, spec in specs(AppConfig):
        if spec.key in default:
            value = getattr(code, f.name)
            assert default[spec.key] == (list(value) if isinstance(value, tuple) else value)


def parse_file(stack: str) -> Any:
    merged = {**project_defaults(), **stack_config(stack)}
    raw = {k.split(":", 1)[1]: RawValue(v, False) for k, v in merged.items()}
    return parse_stack_config(raw, project="gin-deploy", stack=stack, project_dir=ROOT)


def test_dev_stack_file_is_valid() -> None:
    cfg = parse_file("dev")
    assert [t.kind for t in cfg.targets] == ["host"]
    assert cfg.targets[0].connection == "local"


def test_prod_stack_file_is_valid_given_its_key_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"targets\[2\]\.privateKeyPath: file"):
        parse_file("prod")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "gin-deploy-edge").write_text("key")
    cfg = parse_file("prod")
    assert [t.kind for t in cfg.targets] == ["ecs", "kubernetes", "host"]
    assert cfg.edge is not None and cfg.edge.cdn


def test_readme_config_reference_is_generated_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    assert docs.splice(readme) == readme, "run `python -m gin_deploy.docs` and commit README.md"


def test_pulumi_sdk_and_command_pins_are_the_versions_env_ones() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    sdk = next(d for d in deps if d.startswith("pulumi=="))
    command = next(d for d in deps if d.startswith("pulumi-command"))
    versions = dict(
        line.split("=", 1) for line in (ROOT / "tools" / "versions.env").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    )
    assert sdk == f"pulumi=={versions['PULUMI_SDK_VERSION']}"
    # The provider the Python package asks for must be the one we build.
    assert command == f"pulumi-command=={versions['PULUMI_COMMAND_VERSION']}"
    plugin = json.loads((Path(pulumi_command.__file__).parent / "pulumi-plugin.json").read_text())
    assert plugin["version"] == versions["PULUMI_COMMAND_VERSION"]
