"""The repository's own automation, checked by the tools that own the formats."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCRIPTS = [*sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file()), ROOT / ".ci" / "run"]


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{ROOT / '.tools' / 'bin'}:/usr/bin:/bin")
    if found is None:
        pytest.fail(f"{name} is missing: run scripts/setup.sh (it installs it)")
    return found


@pytest.mark.host
def test_workflows_pass_actionlint_with_shellcheck() -> None:
    assert WORKFLOWS, "no workflows"
    tool("shellcheck")  # actionlint runs it on every `run:` block when present
    result = subprocess.run([tool("actionlint"), "-no-color", *map(str, WORKFLOWS)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.host
def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")
    result = subprocess.run([tool("actionlint"), "-no-color", str(bad)],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0


@pytest.mark.host
def test_shell_scripts_pass_shellcheck() -> None:
    result = subprocess.run([tool("shellcheck"), "-S", "warning", *map(str, SCRIPTS)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_use_the_pinned_cli_version() -> None:
    versions = dict(re.findall(r"^([A-Z_]+)=(\S+)$", (ROOT / "tools" / "versions.env").read_text(),
                               re.M))
    checked = 0
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text()) or {}
        for job in workflow.get("jobs", {}).values():
            for step in job.get("steps", []):
                if not step.get("uses", "").startswith("pulumi/actions@"):
                    continue
                # Every CLI a workflow installs is the pinned one (not the SDK's version).
                assert step["with"]["pulumi-version"] == "${{ env.PULUMI_CLI_VERSION }}", path.name
                assert workflow["env"]["PULUMI_CLI_VERSION"] == versions["PULUMI_CLI_VERSION"]
                checked += 1
    assert checked >= 2  # preview and deploy


def test_pr_previews_cover_every_stack_and_enforce_the_policy_pack() -> None:
    preview = yaml.safe_load((ROOT / ".github" / "workflows" / "preview.yml").read_text())
    job = preview["jobs"]["preview"]
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    assert sorted(job["strategy"]["matrix"]["stack"]) == stacks
    step = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert step["with"]["policyPacks"] == "policy"
    deploy = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    assert deploy["jobs"]["up"]["environment"] == "production"
    assert deploy["concurrency"]["cancel-in-progress"] is False
