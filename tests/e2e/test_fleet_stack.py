"""A host fleet through the real engine: `pulumi up` of a balancer (127.0.0.1) and hosts
(127.0.0.2-127.0.0.4), each an sshd of its own (tests/host/fleet_sim.py), uploads with the
pinned keys, the release run by the coordinator; a new version under load, a host added
and one removed under load, then destroy. The tests run in order on one stack."""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gin_deploy import automation
from tests.e2e.conftest import Project
from tests.host.conftest import kill_target, wait_for
from tests.host.fleet_sim import FleetLoad, Front, Sim, get, simulated, versions

pytestmark = [pytest.mark.e2e, pytest.mark.host]
STACK = "fleet"


@pytest.fixture(scope="module")
def sim(project: Project) -> Iterator[Sim]:
    root = Path(tempfile.mkdtemp(prefix="gd-fleet-e2e-"))
    root.chmod(0o755)
    try:
        with simulated(root, {}) as s:
            yield s
    finally:
        # A test that failed before `destroy` leaves the machines' daemons running.
        for d in root.glob("state-*"):
            kill_target(d)
        shutil.rmtree(root, ignore_errors=True)


def config(project: Project, sim: Sim, hosts: list[str], version: str,
           env: dict[str, str] | None = None) -> dict[str, Any]:
    base = project.dev_config()
    cfg = copy.deepcopy(base)
    cfg["gin-deploy:app"] = {**cfg["gin-deploy:app"], "version": version, "env": env or {}}
    target = sim.target(hosts)
    target.pop("privatePort")
    # The dev stack's canary is stack-wide; a fleet releases host by host.
    cfg["gin-deploy:targets"] = [{**target, "privatePort": sim.private_port,
                                  "release": {"strategy": "rolling"}}]
    return cfg


def up(project: Project, sim: Sim, hosts: list[str], version: str,
       env: dict[str, str] | None = None) -> Any:
    project.write_stack_file(STACK, config(project, sim, hosts, version, env))
    return automation.up(STACK, settings=project.settings)


def test_up_deploys_the_fleet_behind_its_balancer(project: Project, sim: Sim) -> None:
    result = up(project, sim, ["app1", "app2", "app3"], "1.0.0")
    assert result.summary.get("create", 0) >= 15, result.summary
    assert versions(sim, ["app1", "app2", "app3"]) == {
        h: {"1.0.0"} for h in ("app1", "app2", "app3")}
    status, body = get(sim, "/whoami", {"X-Forwarded-For": "203.0.113.66"})
    assert status == 200 and body["clientIP"] == "127.0.0.9", body
    outputs = automation.outputs(STACK, settings=project.settings)
    assert outputs["url"] == f"https://localhost:{sim.https_port}"
    again = automation.up(STACK, settings=project.settings)
    assert not again.changed, again.summary
    # `status` asks every host and the balancer over SSH with the pinned keys.
    report = automation.status(STACK, settings=project.settings)
    (st,) = report.targets
    assert report.healthy, st.problems
    assert (st.kind, st.version, st.ready, st.wanted) == ("host", "1.0.0", 6, 6)


def test_a_new_version_goes_out_host_by_host_under_load(project: Project, sim: Sim) -> None:
    with FleetLoad(Front(sim), threads=4) as load:  # type: ignore[arg-type]
        time.sleep(0.5)
        up(project, sim, ["app1", "app2", "app3"], "1.1.0")
        time.sleep(0.5)
    assert not load.failures and load.ok > 100, load.summary()
    assert versions(sim, ["app1", "app2", "app3"]) == {
        h: {"1.1.0"} for h in ("app1", "app2", "app3")}


def test_a_failing_host_fails_up_by_name_and_rolls_back_the_released_ones(
        project: Project, sim: Sim) -> None:
    before = {h: current(sim, h) for h in ("app1", "app2", "app3")}
    sim.sshds["app2"].stop()  # app2 cannot be reached once app1 is released
    # A new release of the same binary: nothing to upload, the release runs at once.
    change = {"FLEET_CHANGE": "1"}
    project.write_stack_file(STACK, config(project, sim, ["app1", "app2", "app3"], "1.1.0",
                                           change))
    with FleetLoad(Front(sim), threads=4) as load, \
            pytest.raises(automation.OperationFailed) as err:  # type: ignore[arg-type]
        automation.up(STACK, settings=project.settings)
    message = str(err.value)
    assert "fleet fleet: host app2 failed: app2: " in message, message
    assert f"rolled back app1 (to {before['app1']})" in message, message
    assert not load.failures, load.summary()
    assert {h: current(sim, h) for h in ("app1", "app3")} == {
        h: before[h] for h in ("app1", "app3")}
    # With app2 reachable again (a new port), the same change goes out.
    sim.restart_sshd("app2")
    up(project, sim, ["app1", "app2", "app3"], "1.1.0", change)
    assert len({current(sim, h) for h in ("app1", "app2", "app3")}) == 1
    assert current(sim, "app1") != before["app1"]


def current(sim: Sim, host: str) -> str:
    import os

    return os.path.basename(os.readlink(sim.state_dir(host) / "current"))


def test_adding_and_removing_a_host_is_an_ordinary_up(project: Project, sim: Sim) -> None:
    with FleetLoad(Front(sim), threads=4) as load:  # type: ignore[arg-type]
        time.sleep(0.5)
        up(project, sim, ["app1", "app2", "app3", "app4"], "1.1.0", {"FLEET_CHANGE": "1"})
        assert versions(sim, ["app4"]) == {"app4": {"1.1.0"}}
        result = up(project, sim, ["app2", "app3", "app4"], "1.1.0", {"FLEET_CHANGE": "1"})
        time.sleep(0.5)
    assert not load.failures, load.summary()
    assert result.summary.get("delete", 0) >= 4, result.summary
    assert not sim.state_dir("app1").exists()
    state = (sim.state_dir("lb") / "state.json").read_text()
    assert '"app1"' not in state and '"app4"' in state


def test_destroy_cleans_every_machine(project: Project, sim: Sim) -> None:
    automation.destroy(STACK, settings=project.settings)
    assert wait_for(lambda: not list(sim.root.glob("state-*")), timeout=15)
