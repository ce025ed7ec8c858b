"""A host fleet for real, simulated on this machine (tests/host/fleet_sim.py): a balancer
on 127.0.0.1 and hosts on 127.0.0.2-127.0.0.5, each machine an sshd of its own; the
coordinator releases over real SSH with the pinned keys, real nginx and supervisord, the
real Gin binary, under constant HTTPS load through the balancer. The tests run in order
and share the fleet, as a fleet's life would."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent.fleet_payload import FleetPayload
from gin_deploy.agent.wire import dump
from tests.host.conftest import Binary, kill_target, run_agent
from tests.host.fleet_sim import FleetLoad, Front, Hey, Sim, get, simulated, versions

pytestmark = pytest.mark.host

HOSTS = ["app1", "app2", "app3"]


@pytest.fixture(scope="module")
def sim(binaries: dict[str, Binary]) -> Iterator[Sim]:
    root = Path(tempfile.mkdtemp(prefix="gd-fleet-"))
    root.chmod(0o755)
    try:
        with simulated(root, binaries) as s:
            yield s
    finally:
        for d in root.glob("state-*"):
            with contextlib.suppress(Exception):
                kill_target(d)
        shutil.rmtree(root, ignore_errors=True)


def release_ok(sim: Sim, payload: FleetPayload) -> dict[str, Any]:
    proc = sim.release(payload)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_first_release_builds_the_fleet_behind_the_balancer(sim: Sim) -> None:
    result = release_ok(sim, sim.payload(HOSTS, "v1"))
    assert result["inRotation"] == HOSTS
    assert versions(sim, HOSTS) == {h: {"v1"} for h in HOSTS}
    seen = set()
    for _ in range(40):
        status, body = get(sim, "/whoami")
        assert status == 200
        seen.add(body["instance"].split("-")[-1])
    # Every host serves: instance names end in their ports, which differ per host.
    ports = {str(p) for h in HOSTS for p in range(sim.base_ports[h],
                                                   sim.base_ports[h] + sim.instances)}
    assert seen <= ports and len(seen) >= 3, seen


def test_the_app_sees_the_real_client_and_a_forged_forwarded_for_is_ignored(sim: Sim) -> None:
    status, body = get(sim, "/whoami", {"X-Forwarded-For": "203.0.113.66",
                                        "X-Real-IP": "203.0.113.67"})
    assert status == 200
    assert body["clientIP"] == "127.0.0.9", body
    assert "203.0.113" not in json.dumps(body), body
    assert body["proto"] == "https"


def test_a_host_answers_only_the_balancer(sim: Sim) -> None:
    # From anywhere else, the host's private nginx refuses, forged header or not.
    conn = http.client.HTTPConnection("127.0.0.2", sim.private_port, timeout=5,
                                      source_address=("127.0.0.9", 0))
    try:
        conn.request("GET", "/whoami", headers={"X-Forwarded-For": "127.0.0.1"})
        assert conn.getresponse().status == 403
    finally:
        conn.close()
    # It listens on its private address only.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.8", sim.private_port), timeout=2).close()


def test_a_release_across_three_hosts_under_load_fails_no_request(sim: Sim) -> None:
    with FleetLoad(Front(sim), threads=4) as load, Hey(sim) as hey:  # type: ignore[arg-type]
        time.sleep(0.5)
        result = release_ok(sim, sim.payload(HOSTS, "v2"))
        time.sleep(0.5)
    assert not load.failures and load.ok > 100, load.summary()
    assert hey.errors == 0 and hey.ok > 100, hey.output
    assert versions(sim, HOSTS) == {h: {"v2"} for h in HOSTS}
    assert result["inRotation"] == HOSTS


def test_a_host_that_never_gets_ready_rolls_back_the_hosts_already_done(sim: Sim) -> None:
    payload = sim.payload(HOSTS, "v1", readyTimeout=3)
    # app2's release never gets ready (its app waits an hour to start).
    bad = payload.hosts[1].deploy
    bad = bad.__class__(**{**bad.__dict__, "env": {**bad.env, "STARTUP_DELAY": "1h"},
                           "release": bad.release.__class__(
                               id="never-ready", binary=bad.release.binary,
                               sha256=bad.release.sha256)})
    hosts = list(payload.hosts)
    hosts[1] = hosts[1].__class__(**{**hosts[1].__dict__, "deploy": bad})
    payload = payload.__class__(**{**payload.__dict__, "hosts": tuple(hosts)})
    with FleetLoad(Front(sim), threads=6) as load:  # type: ignore[arg-type]
        proc = sim.release(payload)
        time.sleep(0.5)
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr
    assert "fleet fleet: host app2 failed: app2: instance hello-gin-" in message, message
    assert "was not ready within 3s" in message
    assert "rolled back app1 (to v2-" in message, message
    assert not load.failures, load.summary()
    # app1 went back, app2 rolled itself back, app3 was never touched.
    assert versions(sim, HOSTS) == {h: {"v2"} for h in HOSTS}
    status, _ = get(sim, "/healthz")
    assert status == 200
    # Every host is back in rotation.
    state = json.loads((sim.state_dir("lb") / "state.json").read_text())
    assert [(m["name"], m["down"]) for m in state["members"]] == [(h, False) for h in HOSTS]


def test_killing_one_hosts_instances_costs_no_request(sim: Sim) -> None:
    conf = sim.state_dir("app2") / "supervisor" / "supervisord.conf"
    with FleetLoad(Front(sim), threads=6) as load:  # type: ignore[arg-type]
        time.sleep(0.5)
        for pid in _app_pids(sim.state_dir("app2")):
            os.kill(pid, signal.SIGKILL)
        run = ["supervisorctl", "-c", str(conf)]
        os.system(" ".join([*run, "stop", "all", ">/dev/null"]))  # noqa: S605
        time.sleep(3)
        # Its SSH daemon going away does not matter to the traffic either.
        sim.sshds["app3"].stop()
        time.sleep(1)
        os.system(" ".join([*run, "start", "all", ">/dev/null"]))  # noqa: S605
        time.sleep(1)
    assert not load.failures and load.ok > 50, load.summary()
    sim.restart_sshd("app3")


def _app_pids(state_dir: Path) -> list[int]:
    from gin_deploy.agent.layout import Layout
    from gin_deploy.agent.processes import proc_table

    table = proc_table()
    layout = Layout(str(state_dir))
    release_root = os.path.realpath(layout.releases)
    pids = []
    for pid in table:
        with contextlib.suppress(OSError):
            if os.path.realpath(f"/proc/{pid}/exe").startswith(release_root):
                pids.append(pid)
    return pids


def test_adding_and_removing_hosts_under_load_costs_no_request(sim: Sim) -> None:
    with FleetLoad(Front(sim), threads=6) as load:  # type: ignore[arg-type]
        time.sleep(0.5)
        added = release_ok(sim, sim.payload([*HOSTS, "app4"], "v2"))
        time.sleep(0.5)
    assert not load.failures, load.summary()
    assert added["inRotation"] == [*HOSTS, "app4"]
    assert versions(sim, ["app4"]) == {"app4": {"v2"}}

    remaining = ["app2", "app3", "app4"]
    payload = sim.payload(remaining, "v2")
    with FleetLoad(Front(sim), threads=6) as load:  # type: ignore[arg-type]
        time.sleep(0.5)
        removed = release_ok(sim, payload)
        # What `up` does next for the removed host: delete its cleanup command.
        gone = sim.payload(["app1"], "v2").hosts[0].deploy
        proc = run_agent("destroy", dump(target_payload_of(gone)))
        assert proc.returncode == 0, proc.stderr
        time.sleep(1)
    assert not load.failures, load.summary()
    assert removed["removed"] == ["app1"] and removed["inRotation"] == remaining
    assert not sim.state_dir("app1").exists()
    state = json.loads((sim.state_dir("lb") / "state.json").read_text())
    assert [m["name"] for m in state["members"]] == remaining


def target_payload_of(deploy: Any) -> Any:
    """The destroy payload of a host (the component's, from its args: unit-tested)."""
    from gin_deploy.agent.payload import TargetPayload

    return TargetPayload(app=deploy.app, state_dir=deploy.state_dir, mode=deploy.mode,
                         supervisor=deploy.supervisor, instances=deploy.instances)


def test_destroy_cleans_every_machine(sim: Sim) -> None:
    payload = sim.payload(["app2", "app3", "app4"], "v2")
    for h in payload.hosts:
        proc = run_agent("destroy", dump(target_payload_of(h.deploy)))
        assert proc.returncode == 0, proc.stderr
    (lb,) = payload.balancers
    proc = run_agent("balancer-destroy", dump(lb.balancer.target))
    assert proc.returncode == 0, proc.stderr
    assert not list(sim.root.glob("state-*"))
