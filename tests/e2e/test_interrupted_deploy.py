"""An interrupted `pulumi up` costs no request and the next one converges.

The deploying process tree is killed with SIGKILL in the middle of a host rollout (a
closed laptop, a cancelled CI job). Users keep being served by nginx and the instances
(their supervisor is not part of the deploy's process tree); the stack is left locked by
a process that no longer exists, which the Automation API names as such, clears only
when asked, and the next `up` converges without any manual state surgery.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gin_deploy import automation
from tests.e2e.conftest import TOOLS, Project
from tests.e2e.test_dev_stack import versions_served
from tests.host.conftest import Load, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.host]
STACK = "dev"


def releases(project: Project, prefix: str) -> list[Path]:
    directory = project.state_dir / "releases"
    return sorted(directory.glob(f"{prefix}*")) if directory.is_dir() else []


def test_killed_up_under_load_then_a_clean_converge(project: Project) -> None:
    project.write_stack_file(STACK, project.dev_config())
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    automation.up(STACK, settings=project.settings)

    # A release whose instances take a while to get ready: the rollout is long enough to
    # be killed in the middle.
    config = project.dev_config(readyTimeout=30)
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "2.0.0",
                                "env": {"STARTUP_DELAY": "3s"}}
    project.write_stack_file(STACK, config)
    with Load(project, threads=6) as load:  # type: ignore[arg-type]
        deploy = subprocess.Popen(
            [str(TOOLS / "bin" / "pulumi"), "up", "--stack", STACK, "--yes", "--skip-preview",
             "--non-interactive"],
            cwd=project.root, env=project.env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_for(lambda: releases(project, "2.0.0"), timeout=180), \
                "the new release never reached the host"
            time.sleep(1.5)   # the first instance is restarting now
        finally:
            os.killpg(deploy.pid, signal.SIGKILL)   # the whole deploying process tree
            deploy.wait()
        time.sleep(3)
    assert load.ok > 50 and not load.failures, load.summary()

    with pytest.raises(automation.StaleLockError) as err:
        automation.up(STACK, settings=project.settings)
    assert f"pulumi pid {deploy.pid}" in str(err.value)
    assert "no longer running" in str(err.value)

    with Load(project, threads=6) as load:  # type: ignore[arg-type]
        result = automation.up(STACK, settings=project.settings, clear_stale_lock=True)
    assert load.ok > 20 and not load.failures, load.summary()
    assert "update" in result.summary or "create" in result.summary, result.summary
    assert versions_served(project) == {"2.0.0"}
    preview = automation.preview(STACK, settings=project.settings, expect_no_changes=True)
    assert not preview.changed

    automation.destroy(STACK, settings=project.settings)
