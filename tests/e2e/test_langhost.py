"""The project's Pulumi toolchain end to end: the real CLI from .tools/bin runs a tiny Python
program (a folder-based project, not an inline one) through `pulumi-language-python` - the
official host or gin-deploy's own (tools/langhost/pulumi_language_python.py), whichever
scripts/setup.sh installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gin_deploy import automation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"

PROGRAM = '''\
import pulumi


class Box(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("tiny:index:Box", name, {})
        self.register_outputs({})


config = pulumi.Config()
if config.get_bool("fail"):
    raise pulumi.RunError("tiny: the fail flag is set")
if config.get_bool("crash"):
    raise ValueError("tiny: crashed")
Box("box")
pulumi.export("greeting", "hello " + (config.get("who") or "world"))
'''


@pytest.fixture
def tiny_project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    if not (TOOLS / "bin" / "pulumi").exists():
        pytest.fail(f"{TOOLS / 'bin' / 'pulumi'} is missing: run scripts/setup.sh first")
    work = tmp_path / "tiny"
    work.mkdir()
    (work / "Pulumi.yaml").write_text(
        "name: tiny\nruntime:\n  name: python\n  options:\n    virtualenv: .venv\n")
    (work / "__main__.py").write_text(PROGRAM)
    (work / ".venv").symlink_to(sys.prefix)  # the virtualenv running these tests
    (tmp_path / "state").mkdir()
    env = {
        **os.environ,
        "PATH": f"{TOOLS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    yield work, env


def pulumi(work: Path, env: dict[str, str], *args: str, ok: bool = True) -> str:
    proc = subprocess.run(["pulumi", *args, "--color", "never"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, f"pulumi {' '.join(args)} -> {proc.returncode}:\n{out}"
    return out


def diagnostics(output: str) -> str:
    return output.split("Diagnostics:", 1)[1] if "Diagnostics:" in output else ""


def test_cli_runs_a_python_project(tiny_project: tuple[Path, dict[str, str]]) -> None:
    work, env = tiny_project
    pulumi(work, env, "stack", "init", "dev")

    out = pulumi(work, env, "up", "--yes")
    assert "+ 2 created" in out
    assert pulumi(work, env, "stack", "output", "greeting").strip() == "hello world"
    out = pulumi(work, env, "up", "--yes", "--expect-no-changes")
    assert "2 unchanged" in out
    assert "warning" not in out  # e.g. "using pulumi-language-python from $PATH"

    pulumi(work, env, "config", "set", "fail", "true")
    out = pulumi(work, env, "up", "--yes", ok=False)
    diag = diagnostics(out)
    assert diag.count("tiny: the fail flag is set") == 1, out
    assert "Traceback" not in out and "unhandled" not in out

    pulumi(work, env, "config", "set", "fail", "false")
    pulumi(work, env, "config", "set", "crash", "true")
    out = pulumi(work, env, "preview", ok=False)
    diag = diagnostics(out)
    assert "Program failed with an unhandled exception" in diag
    assert 'raise ValueError("tiny: crashed")' in diag and "ValueError: tiny: crashed" in diag
    assert diag.count("ValueError: tiny: crashed") == 1, out

    pulumi(work, env, "config", "set", "crash", "false")
    out = pulumi(work, env, "destroy", "--yes")
    assert "- 2 deleted" in out


def test_about_reports_the_pinned_cli_sdk_and_language_host(
        tiny_project: tuple[Path, dict[str, str]]) -> None:
    """The pair the tests prove is the pinned one: CLI and SDK each at its own pin (no lockstep),
    the language host at the CLI's version if official, else at PULUMI_LANGHOST_VERSION."""
    work, env = tiny_project
    pins = dict(re.findall(r"^([A-Z_]+)=(\S+)$",
                           (ROOT / "tools" / "versions.env").read_text(), re.M))
    pulumi(work, env, "stack", "init", "dev")
    proc = subprocess.run(["pulumi", "about", "--json"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    about = json.loads(proc.stdout)
    assert about["errors"] == [], about["errors"]
    assert about["cliAbout"]["version"] == pins["PULUMI_CLI_VERSION"]
    deps = {d["name"]: d["version"] for d in about["dependencies"]}
    assert deps["pulumi"] == pins["PULUMI_SDK_VERSION"]
    standin = "gin-deploy stand-in" in (TOOLS / "bin" / "pulumi-language-python").read_text(
        errors="replace")
    expected = pins["PULUMI_LANGHOST_VERSION" if standin else "PULUMI_CLI_VERSION"]
    assert {"name": "python", "kind": "language", "version": expected} in about["plugins"]


def test_automation_api_drives_the_project(tiny_project: tuple[Path, dict[str, str]]) -> None:
    work, env = tiny_project
    settings = automation.Settings(
        work_dir=work, tools_dir=TOOLS, backend_url=env["PULUMI_BACKEND_URL"],
        passphrase_file=work.parent / "passphrase",
        extra_env={"PULUMI_HOME": env["PULUMI_HOME"],
                   "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"})
    first = automation.up("auto", settings=settings, config={"tiny:who": "automation"})
    assert first.summary == {"create": 2}
    assert first.outputs == {"greeting": "hello automation"}
    again = automation.up("auto", settings=settings)
    assert not again.changed
    with pytest.raises(automation.OperationFailed, match="tiny: the fail flag is set"):
        automation.up("auto", settings=settings, config={"tiny:fail": "true"})
    automation.apply_config(automation.select_stack("auto", settings), {"tiny:fail": "false"}, None)
    assert automation.destroy("auto", settings=settings, remove=True).summary == {"delete": 2}
