"""A canary release under systemd, against a fake systemctl: the candidates run the
template unit of their own (written, never enabled), the instances are restarted only at
promotion, and destroy finds the candidates' units from the state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gin_deploy.agent.canary import release_beside
from gin_deploy.agent.deploy import destroy
from gin_deploy.agent.layout import ensure_state_dir, save_state
from gin_deploy.agent.output import HostError
from gin_deploy.agent.payload import TargetPayload
from gin_deploy.agent.releases import current_release, switch_current
from gin_deploy.agent.rollout import Target
from gin_deploy.agent.supervisors import Systemd
from tests.host.conftest import free_ports
from tests.host.test_agent_unit import (
    FAKE_SYSTEMCTL,
    ReadyServer,
    calls_of,
    minimal,
    parse_deploy,
)

pytestmark = [pytest.mark.host, pytest.mark.timeout(60)]


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           ) -> Iterator[tuple[Target, Path, ReadyServer, list[str]]]:
    fake = tmp_path / "fakebin"
    fake.mkdir()
    calls = tmp_path / "systemctl.log"
    (fake / "systemctl").write_text(FAKE_SYSTEMCTL.format(log=calls))
    (fake / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    ports = free_ports(4)
    state = tmp_path / "state"
    data = minimal(
        tmp_path, mode="system", supervisor="systemd", supervisord=None,
        systemd={"unit": "[Service]\nExecStart=/x/current/app\n",
                 "candidateUnit": "[Service]\nExecStart=/x/candidate/app\n",
                 "unitDir": str(tmp_path / "units")},
        instances=[{"name": f"hello-gin-{p}", "port": p} for p in ports[:2]],
        readyTimeoutSeconds=2,
        rollout={"strategy": "canary", "steps": [50, 100], "bakeSeconds": 0,
                 "candidates": [{"name": f"hello-gin-{p}", "port": p} for p in ports[2:]],
                 "accessLog": str(state / "logs" / "nginx-access.log"),
                 "shareDir": str(state / "nginx" / "candidate-share")})
    target = Target.create(parse_deploy(data))
    assert isinstance(target.supervisor, Systemd)
    sites: list[str] = []
    # The host's nginx is not part of this test: record what would be loaded.
    monkeypatch.setattr(target.nginx, "apply", lambda site, main: sites.append(site) or False)
    ensure_state_dir(target.layout)
    for rid in ("old", "new"):
        os.makedirs(target.layout.release_dir(rid))
    switch_current(target.layout, "old")
    servers = ReadyServer(ports)
    try:
        yield target, calls, servers, sites
    finally:
        servers.close()


def test_candidates_run_their_own_unit_and_instances_restart_only_at_promotion(
        canary: tuple[Target, Path, ReadyServer, list[str]]) -> None:
    target, calls, _, sites = canary
    payload = target.payload
    instances = [i.port for i in payload.instances]
    candidates = [c.port for c in payload.rollout.candidates]  # type: ignore[attr-defined]
    assert target.supervisor.apply() is True
    units = Path(target.supervisor.conf_dir)
    assert (units / "hello-gin-candidate@.service").read_text().endswith("candidate/app\n")
    assert not [c for c in calls_of(calls) if "candidate" in c]  # written, never enabled
    calls.unlink()

    steps = release_beside(target, payload, "new", "old",  # type: ignore[arg-type]
                           (str(units), str(units)))
    assert [s["percent"] for s in steps] == [50, 100]
    # In three phases; within each all at once (in any order).
    done = calls_of(calls)
    phases = [set(done[:2]), set(done[2:4]), set(done[4:])]
    assert phases == [{f"start hello-gin-candidate@{p}.service" for p in candidates},
                      {f"restart hello-gin@{p}.service" for p in instances},
                      {f"stop hello-gin-candidate@{p}.service" for p in candidates}], done
    assert current_release(target.layout) == "new"
    assert sites and not (Path(target.layout.state_dir) / "rollout.json").exists()

    # destroy finds the candidates' units where the deploy recorded them
    save_state(target.layout, {
        "app": "hello-gin", "mode": "system", "supervisor": "systemd",
        "instances": [{"name": f"hello-gin-{p}", "port": p} for p in instances],
        "candidates": [{"name": f"hello-gin-{p}", "port": p} for p in candidates],
        "supervisorConfDir": str(units), "nginxConfDir": str(units)})
    calls.unlink()
    destroy(TargetPayload(payload.app, payload.state_dir, payload.mode, payload.supervisor,
                          payload.instances))
    assert {f"disable --now hello-gin-candidate@{p}.service" for p in candidates} <= set(
        calls_of(calls))
    assert not (units / "hello-gin-candidate@.service").exists()


def test_a_candidate_not_ready_leaves_the_instances_alone(
        canary: tuple[Target, Path, ReadyServer, list[str]]) -> None:
    target, calls, servers, _ = canary
    payload = target.payload
    candidate = payload.rollout.candidates[1]  # type: ignore[attr-defined]
    servers.healthy[candidate.port] = False
    with pytest.raises(HostError) as err:
        release_beside(target, payload, "new", "old",  # type: ignore[arg-type]
                       (target.supervisor.conf_dir, target.supervisor.conf_dir))
    assert str(err.value).startswith(
        f"instance {candidate.name} (http://127.0.0.1:{candidate.port}/readyz) was not ready "
        "within 2s; release new was not released; release old serves again")
    assert not [c for c in calls_of(calls) if c.startswith("restart")]
    assert current_release(target.layout) == "old"
