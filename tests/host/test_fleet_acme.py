"""A fleet's balancer renews its ACME certificate as a single host does, for real: the
simulated fleet (tests/host/fleet_sim.py) behind one dedicated balancer, which gets its
certificate from a local Pebble over HTTP-01 at the first release, runs the host's
renewal loop under its supervisord, and a forced renewal under HTTPS load through the
balancer swaps the certificate (certbot's deploy hook reloads the balancer's nginx)
without a failed request; the renewal is recorded and `status` reads it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from gin_deploy.agent.fleet_payload import FleetPayload
from gin_deploy.agent.processes import pid_alive, proc_table
from gin_deploy.agent.wire import dump
from gin_deploy.status import TargetStatus, check_host
from gin_deploy.status.hosts import query_fleet
from tests.host.conftest import Binary, kill_target, require, run_agent
from tests.host.fleet_sim import Sim, simulated
from tests.host.test_acme_pebble import (
    EMAIL,
    Pebble,
    PinnedLoad,
    challenges_served,
    nginx_pid,
    served_cert,
    start_pebble,
    stop_pebble,
)

pytestmark = [pytest.mark.host, pytest.mark.timeout(300)]

HOSTS = ["app1"]


@dataclass
class Balancer:
    """The balancer as the Pebble helpers see a stack: its state dir and HTTPS port."""

    state_dir: Path
    https_port: int


@dataclass
class Env:
    sim: Sim
    pebble: Pebble
    lb: Balancer
    payload: FleetPayload


@pytest.fixture(scope="module")
def env(binaries: dict[str, Binary]) -> Iterator[Env]:
    for tool in ("nginx", "supervisord", "certbot", "pebble"):
        require(tool)
    root = Path(tempfile.mkdtemp(prefix="gd-fleet-acme-"))
    root.chmod(0o755)  # nginx workers read the webroot inside
    pebble: Pebble | None = None
    try:
        with simulated(root, binaries) as sim:
            # Pebble's VA fetches http://localhost:<httpPort>/: the balancer (127.0.0.1).
            pebble = start_pebble(root / "pebble", sim.http_port)
            bundle = root / "pebble-ca.pem"
            bundle.write_text(pebble.tls_ca)
            payload = sim.payload(HOSTS, stack={"tls": {"mode": "acme", "acme": {
                "email": EMAIL, "server": pebble.directory, "caBundle": str(bundle)}}})
            yield Env(sim, pebble, Balancer(sim.state_dir("lb"), sim.https_port), payload)
    finally:
        if pebble is not None:
            stop_pebble(pebble)
        for d in root.glob("state-*"):
            with contextlib.suppress(Exception):
                kill_target(d)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def released(env: Env) -> dict[str, Any]:
    proc = env.sim.release(env.payload)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def renew_loops(state_dir: Path) -> dict[int, int]:
    """pid -> parent pid of every `renew-loop` of this state dir."""
    return {pid: ppid for pid, (ppid, _exe, cmd) in proc_table().items()
            if "renew-loop" in cmd and f"--state {state_dir} " in f"{cmd} "}


def test_one_dedicated_balancer_proves_the_domain_by_http_01_and_serves_pebbles_cert(
        env: Env, released: dict[str, Any]) -> None:
    lb = env.payload.balancers[0].balancer
    # One balancer is the fleet's only TLS terminator: HTTP-01 is the default.
    assert lb.tls.mode == "acme" and lb.tls.challenge == "http-01"
    assert released["inRotation"] == HOSTS
    assert len(env.pebble.issued()) == 1, env.pebble.log.read_text()
    cert = served_cert(cast(Any, env.lb), env.pebble.root())
    assert cert.serial_number == env.pebble.issued()[0]
    assert len(challenges_served(cast(Any, env.lb))) == 1  # the balancer's nginx answered


def test_the_balancer_runs_the_hosts_renewal_loop_under_its_supervisord(
        env: Env, released: dict[str, Any]) -> None:
    supervisord = int((env.lb.state_dir / "supervisor" / "supervisord.pid").read_text())
    assert list(renew_loops(env.lb.state_dir).values()) == [supervisord]


def test_a_forced_renewal_on_the_balancer_under_load_fails_no_request_and_status_reads_it(
        env: Env, released: dict[str, Any]) -> None:
    lb, pebble = cast(Any, env.lb), env.pebble
    root = pebble.root()
    before = served_cert(lb, root)
    master = nginx_pid(lb)
    start = time.monotonic()
    with PinnedLoad(lb, root) as load:
        time.sleep(1.5)
        # What the loop (or the systemd timer) runs, forced: the certificate is not due.
        renew = run_agent("renew", None, "--state", str(env.lb.state_dir), "--force",
                          timeout=120)
        time.sleep(max(1.5, 8 - (time.monotonic() - start)))
    assert renew.returncode == 0, renew.stderr
    assert json.loads(renew.stdout)["renewed"] is True
    assert not load.failures, load.summary()
    assert load.ok["fresh"] > 50 and load.ok["keepalive"] > 100, load.summary()
    assert load.stale_retries <= 2 * load.kinds.count("keepalive"), load.summary()
    after = served_cert(lb, root)
    assert after.serial_number != before.serial_number
    assert after.serial_number == pebble.issued()[-1]
    assert nginx_pid(lb) == master  # the deploy hook reloaded the balancer's nginx

    record = json.loads((env.lb.state_dir / "renewal.json").read_text())
    assert record["lastResult"] == "ok" and record["daysLeft"] > 14, record
    # `status` asks the balancer over SSH like the program's status output says.
    sim = env.sim

    def machine(name: str) -> dict[str, Any]:
        s = sim.sshds[name]
        return {"name": name, "host": s.address, "port": s.port, "user": sim.user,
                "hostKey": s.host_key, "stateDir": str(sim.state_dir(name)), "sudo": False}

    answer = query_fleet({"connection": "fleet", "hosts": [machine(h) for h in HOSTS],
                          "balancers": [machine("lb")]}, private_key_path=str(sim.key))
    assert answer["tlsMode"] == "acme"
    assert answer["renewal"]["lastSuccess"] == record["lastSuccess"]
    st = TargetStatus("fleet", "host")
    check_host(st, answer, datetime.datetime.now(datetime.UTC))
    assert st.renewal == record and st.healthy, st.problems
    # and no renewal for days is a problem `status` names
    check_host(st, answer, datetime.datetime.now(datetime.UTC)
               + datetime.timedelta(days=10))
    assert any("no certificate renewal has succeeded" in p for p in st.problems), st.problems


def test_destroying_the_balancer_stops_its_renewal(env: Env,
                                                   released: dict[str, Any]) -> None:
    loops = renew_loops(env.lb.state_dir)
    assert loops
    proc = run_agent("balancer-destroy", dump(env.payload.balancers[0].balancer.target))
    assert proc.returncode == 0, proc.stderr
    assert not env.lb.state_dir.exists()
    assert not [p for p in loops if pid_alive(p)]
