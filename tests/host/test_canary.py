"""canary and blueGreen releases for real: nginx, supervisord, the Gin app and its
fault-injection build, under load through nginx.

Payloads are built by the component's own code (components.host.deploy_payload), so the
files and the release part are exactly what `pulumi up` sends. A good release is
promoted without a failed request; one that fails a fifth of its requests or is too slow
at p95 is rolled back by the agent on its own, with users exposed no more than the first
step's share; too little traffic is inconclusive; a deploy killed in the middle leaves
users on the old release and the next one converges; starting 6 candidates takes no
longer than 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.host import HostRelease, HostTargetArgs, deploy_payload
from gin_deploy.agent.payload import SelfSignedTls, serialise
from gin_deploy.agent.traffic import share_of
from gin_deploy.render.host import HostService
from tests.host.conftest import (
    AGENT,
    APP,
    APP_DIR,
    Binary,
    Load,
    Stack,
    cleanup_stack,
    free_ports,
    port_free,
    require,
    result_of,
    run_agent,
    wait_for,
)

pytestmark = [pytest.mark.host, pytest.mark.timeout(240)]

PYTHON = os.environ.get("HOSTCTL_TEST_PYTHON", sys.executable)
ENV = {"GIN_MODE": "release", "SHUTDOWN_TIMEOUT": "10s",
       "TRUSTED_PROXIES": "127.0.0.1/32,::1/128"}


@pytest.fixture(scope="session")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Binary:
    """The reference app's fault-injection build (FAULT_ERROR_RATE, FAULT_LATENCY)."""
    go = require("go")
    path = tmp_path_factory.mktemp("faults") / "app-faults"
    subprocess.run([go, "build", "-tags", "faults", "-trimpath", "-ldflags",
                    "-s -w -X main.version=v2-faults", "-o", str(path), "."],
                   cwd=APP_DIR, env={**os.environ, "CGO_ENABLED": "0"}, check=True,
                   timeout=600, capture_output=True)
    return Binary("v2-faults", path, hashlib.sha256(path.read_bytes()).hexdigest())


@dataclass
class CanaryStack(Stack):
    candidate_ports: tuple[int, ...] = ()

    def release(self, binary: Binary, strategy: str = "canary", env: dict[str, str] | None = None,
                ready_timeout: int = 20, **release: Any) -> dict[str, Any]:
        """The payload `pulumi up` would send for `binary` with this release policy."""
        service = HostService(
            app=APP, stack="test", target="local", state_dir=str(self.state_dir), mode="user",
            supervisor="supervisord", instance_ports=tuple(self.ports),
            http_port=self.http_port, https_port=self.https_port, server_names=("localhost",),
            candidate_ports=self.candidate_ports if strategy != "rolling" else ())
        args = HostTargetArgs(
            service=service, tls=SelfSignedTls(domains=("localhost",)), domain="localhost",
            env={**ENV, **(env or {})}, ready_path="/readyz", ready_timeout=ready_timeout,
            keep_releases=5, install=False, version=binary.version,
            binary_path=str(binary.path), binary_sha256=binary.sha256,
            agent_path=str(AGENT), agent_sha256="", staging_dir="",
            release=HostRelease(strategy=strategy, **release))
        data: dict[str, Any] = json.loads(serialise(
            deploy_payload(args, str(binary.path), binary.sha256)))
        return data

    def deploy(self, payload: dict[str, Any], **kw: Any) -> subprocess.CompletedProcess[str]:
        # The hosts' Python may be older (HOSTCTL_TEST_PYTHON, e.g. a 3.9).
        kw.setdefault("python", PYTHON)
        return run_agent("deploy", payload, **kw)

    def site(self) -> str:
        return (self.state_dir / "nginx" / "site.conf").read_text()

    def share(self) -> int:
        """Percent of requests nginx sends to the candidates now."""
        return share_of(str(self.state_dir / "nginx" / "candidate-share"))

    def versions(self, n: int = 60) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            status, _, body = self.https("/version")
            seen[json.loads(body)["version"] if status == 200 else f"HTTP {status}"] += 1
        return seen

    def candidates_stopped(self) -> bool:
        return all(port_free(p) for p in self.candidate_ports)


@pytest.fixture
def canary_stack(binaries: dict[str, Binary]) -> Iterator[Any]:
    """Factory of user-mode stacks with `n` instances and as many candidate ports; v1 is
    deployed (a first deploy starts the instances in place)."""
    for tool in ("nginx", "supervisord", "supervisorctl"):
        require(tool)
    made: list[tuple[CanaryStack, Path]] = []

    def make(n: int = 3, first: bool = True) -> CanaryStack:
        root = Path(tempfile.mkdtemp(prefix="hostctl-test-"))
        root.chmod(0o755)
        ports = free_ports(2 * n + 2)
        st = CanaryStack(root / "state", ports[:n], ports[-2], ports[-1], binaries,
                         candidate_ports=tuple(ports[n:2 * n]))
        made.append((st, root))
        if first:
            result_of(st.deploy(st.release(binaries["v1"], bake_seconds=0)))
        return st

    yield make
    for st, root in made:
        cleanup_stack(st, root)


def release_id(payload: dict[str, Any]) -> str:
    return str(payload["release"]["id"])


def current(st: CanaryStack) -> str:
    return os.readlink(st.state_dir / "current").split("/")[-1]


# --------------------------------------------------------------------------- good releases


def test_good_release_is_promoted_step_by_step_with_zero_failed_requests(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    st = canary_stack(3)
    payload = st.release(binaries["v2"], steps=(10, 50, 100), bake_seconds=2,
                         min_requests=20)
    with Load(st, path="/whoami") as load:
        time.sleep(0.5)
        proc = st.deploy(payload)
        time.sleep(1)
    result = result_of(proc)
    assert not load.failures, load.summary()
    assert result["strategy"] == "canary" and result["release"] == release_id(payload)
    assert [s["percent"] for s in result["steps"]] == [10, 50, 100]
    for step in result["steps"]:
        assert step["requests"] >= 20 and step["errors"] == 0, result["steps"]
    # The share each step gave the candidates is what they got (within noise).
    first = result["steps"][0]
    share = first["requests"] / (first["requests"] + first["oldRequests"])
    assert 0.03 < share < 0.2, first
    candidates = {f"{APP}-{p}" for p in st.candidate_ports}
    assert candidates <= set(load.instances), load.instances  # they did serve
    # Promoted: the instances run v2, the candidates are gone, nginx is as rendered.
    assert current(st) == release_id(payload)
    assert all(st.instance_version(p) == "v2" for p in st.ports)
    assert wait_for(st.candidates_stopped, 10)
    assert st.site() == payload["nginx"]["site"] and st.share() == 0
    assert not (st.state_dir / "rollout.json").exists()
    assert not (st.state_dir / "candidate").exists()
    assert st.versions() == Counter({"v2": 60})
    # A second deploy of the same release is a no-op.
    again = result_of(st.deploy(payload))
    assert again["changed"] is False and again["steps"] == []


def test_blue_green_moves_all_requests_at_once_and_judges_them(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    st = canary_stack(2)
    payload = st.release(binaries["v2"], strategy="blueGreen", bake_seconds=2,
                         min_requests=20)
    with Load(st, path="/whoami") as load:
        time.sleep(0.5)
        result = result_of(st.deploy(payload))
    assert not load.failures, load.summary()
    [step] = result["steps"]
    assert step["percent"] == 100 and step["requests"] >= 20
    assert step["oldRequests"] < step["requests"] / 5  # only what was in flight
    assert all(st.instance_version(p) == "v2" for p in st.ports)


# --------------------------------------------------------------------------- bad releases


def test_release_failing_a_fifth_of_requests_is_rolled_back_within_the_first_step(
        canary_stack: Any, binaries: dict[str, Binary], faulty: Binary) -> None:
    st = canary_stack(3)
    good = current(st)
    bad = st.release(faulty, env={"FAULT_ERROR_RATE": "0.2"}, steps=(10, 50, 100),
                     bake_seconds=10, min_requests=50, max_error_rate=0.01)
    with Load(st, path="/whoami") as load:
        time.sleep(0.5)
        proc = st.deploy(bad)
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr
    assert re.search(rf"release {re.escape(release_id(bad))} failed at step 1 of 3 \(10% of "
                     r"requests\): error rate \d+\.\d\d% \(\d+ of \d+ requests answered 5xx\) "
                     r"> maxErrorRate 1\.00%; the old release over the same time: \d+ "
                     r"requests, 0\.00% 5xx", message), message
    assert f"release {good} serves again" in message
    # Only the candidates' faults reached users, and no more than the first step's share.
    total = load.ok + sum(load.failures.values())
    assert set(load.failures) == {"HTTP 500"}, load.summary()
    assert 0 < load.failures["HTTP 500"] <= 0.10 * total, load.summary()
    assert current(st) == good and st.share() == 0
    assert wait_for(st.candidates_stopped, 10)
    assert not (st.state_dir / "rollout.json").exists()
    with Load(st, path="/whoami") as after:
        time.sleep(3)
    assert after.ok > 50 and not after.failures, after.summary()
    assert st.versions() == Counter({"v1": 60})


def test_release_too_slow_at_p95_is_rolled_back(
        canary_stack: Any, binaries: dict[str, Binary], faulty: Binary) -> None:
    st = canary_stack(2)
    good = current(st)
    slow = st.release(faulty, env={"FAULT_LATENCY": "300ms"}, steps=(20, 100),
                      bake_seconds=6, min_requests=30, max_p95_ms=100)
    with Load(st, path="/whoami") as load:
        time.sleep(0.5)
        proc = st.deploy(slow)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"failed at step 1 of 2 \(20% of requests\): p95 latency 3\d\d ms \(of "
                     r"\d+ requests\) > maxP95Ms 100 ms", proc.stderr), proc.stderr
    assert not load.failures, load.summary()  # slow, not failing
    assert current(st) == good and st.versions() == Counter({"v1": 60})
    assert wait_for(st.candidates_stopped, 10)


def test_too_few_requests_extend_the_bake_once_then_fail_as_inconclusive(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    st = canary_stack(1)
    good = current(st)
    quiet = st.release(binaries["v2"], steps=(10, 50, 100), bake_seconds=1, min_requests=50)
    proc = st.deploy(quiet)
    assert proc.returncode == 1, proc.stderr
    assert "baking 1s more" in proc.stderr
    assert ("failed at step 1 of 3 (10% of requests): inconclusive: 0 requests of the new "
            "release in 2s < minRequests 50") in proc.stderr, proc.stderr
    assert current(st) == good and wait_for(st.candidates_stopped, 10)


def test_candidates_that_never_get_ready_never_get_a_request(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    st = canary_stack(2)
    good = current(st)
    never = st.release(binaries["v2"], env={"STARTUP_DELAY": "1h"}, ready_timeout=3)
    with Load(st) as load:
        proc = st.deploy(never)
    assert proc.returncode == 1
    candidate = f"{APP}-{st.candidate_ports[0]}"
    assert re.search(rf"instance {APP}-\d+ \(http://127\.0\.0\.1:\d+/readyz\) was not ready "
                     rf"within 3s; release {re.escape(release_id(never))} was not released; "
                     rf"release {good} serves again", proc.stderr), proc.stderr
    assert f"lines of {st.state_dir}/logs/{candidate}.log" in proc.stderr or \
        f"lines of {st.state_dir}/logs/{APP}-{st.candidate_ports[1]}.log" in proc.stderr
    assert not load.failures and load.ok > 50, load.summary()
    assert current(st) == good and wait_for(st.candidates_stopped, 10)


def test_a_rolling_target_turning_canary_keeps_its_instances_running(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    """The candidates' programs join in a supervisord group of their own: adding them to
    the instances' group would make `supervisorctl update` restart every instance."""
    st = canary_stack(2, first=False)
    result_of(st.deploy(st.release(binaries["v1"], strategy="rolling")))
    before = st.instance_pids()
    assert set(before) == {f"{APP}-{p}" for p in st.ports}
    never = st.release(binaries["v2"], env={"STARTUP_DELAY": "1h"}, ready_timeout=2)
    proc = st.deploy(never)
    assert proc.returncode == 1 and "was not released" in proc.stderr, proc.stderr
    after = st.instance_pids()
    assert {n: after[n] for n in before} == before
    assert {n: after[n] for n in after if n not in before} == {
        f"{APP}-{p}": None for p in st.candidate_ports}  # defined, stopped
    programs = (st.state_dir / "supervisor" / "programs.conf").read_text()
    assert f"[group:{APP}-candidates]" in programs


# --------------------------------------------------------------------------- interrupted


def test_killed_deploy_leaves_users_on_the_old_release_and_the_next_one_converges(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    st = canary_stack(2)
    good = current(st)
    payload = st.release(binaries["v2"], steps=(50, 100), bake_seconds=60, min_requests=1)
    with Load(st, path="/whoami") as load:
        agent = subprocess.Popen([PYTHON, str(AGENT), "deploy"],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, text=True)
        assert agent.stdin is not None
        agent.stdin.write(json.dumps(payload))
        agent.stdin.close()
        try:
            assert wait_for(lambda: st.share() == 50, 60), "the first step never began"
            time.sleep(1)
        finally:
            agent.send_signal(signal.SIGKILL)
            agent.wait()
        # The guard puts every request back on the instances and stops the candidates.
        assert wait_for(lambda: st.share() == 0 and st.candidates_stopped(), 30)
        time.sleep(1)
    assert not load.failures, load.summary()
    assert current(st) == good
    assert st.versions() == Counter({"v1": 60})
    assert not (st.state_dir / "rollout.json").exists()
    guard_log = (st.state_dir / "logs" / "guard.log").read_text()
    assert f"undoing the unfinished release of {release_id(payload)} (steps)" in guard_log

    quick = st.release(binaries["v2"], steps=(50, 100), bake_seconds=1, min_requests=0)
    assert release_id(quick) == release_id(payload)
    result = result_of(st.deploy(quick))
    assert result["release"] == release_id(payload) and current(st) == release_id(payload)
    assert st.versions() == Counter({"v2": 60})


def test_the_next_deploy_undoes_what_a_dead_guard_left(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    """Guard and deploy both gone (a reboot of the deploying side): the next deploy reads
    the record, puts users back on the old release, then releases again."""
    st = canary_stack(1)
    good = current(st)
    payload = st.release(binaries["v2"], steps=(50, 100), bake_seconds=60)
    agent = subprocess.Popen([PYTHON, str(AGENT), "deploy"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                             start_new_session=True)
    assert agent.stdin is not None
    agent.stdin.write(json.dumps(payload))
    agent.stdin.close()
    try:
        assert wait_for(lambda: st.share() == 50, 60), "the first step never began"
    finally:
        guards = _guards(st)
        for pid in guards:
            os.kill(pid, signal.SIGKILL)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    assert guards, "the release ran without a guard"
    assert st.share() == 50 and (st.state_dir / "rollout.json").exists()
    proc = st.deploy(st.release(binaries["v1"], bake_seconds=0))
    result = result_of(proc)
    assert "undoing the unfinished release" in proc.stderr
    assert result["release"] == good and result["changed"] is False
    assert st.share() == 0 and wait_for(st.candidates_stopped, 10)
    assert st.versions() == Counter({"v1": 60})


def _guards(st: CanaryStack) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"guard" in argv and str(st.state_dir).encode() in argv:
                    out.append(int(entry.name))
    return out


# --------------------------------------------------------------------------- scale


def test_time_to_release_does_not_grow_with_the_number_of_instances(
        canary_stack: Any, binaries: dict[str, Binary]) -> None:
    """Judged on supervisord's own order of events, not on wall-clock times (the machine
    is shared): one at a time, a start waits out startsecs (1 s) before the next spawns."""
    took = {}
    for n in (1, 6):
        st = canary_stack(n)
        started = time.monotonic()
        result_of(st.deploy(st.release(binaries["v2"], bake_seconds=0)))
        took[n] = time.monotonic() - started
        assert all(st.instance_version(p) == "v2" for p in st.ports)
        # Started together: every one of them was spawned before any had stayed up for
        # startsecs - the candidates at the start, the instances at promotion.
        for names in ([f"{APP}-{p}" for p in st.candidate_ports],
                      [f"{APP}-{p}" for p in st.ports]):
            spawns, running = last_start(st, names)
            assert max(spawns) < min(running), (n, names, spawns, running, took)


def last_start(st: CanaryStack, names: list[str]) -> tuple[list[int], list[int]]:
    """Where in supervisord's log each of `names` was last spawned, and where it then
    entered RUNNING (line numbers)."""
    spawned: dict[str, int] = {}
    running: dict[str, int] = {}
    lines = (st.state_dir / "logs" / "supervisord.log").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"INFO (?:spawned: '([^']+)'|success: (\S+) entered RUNNING)", line)
        if m and m.group(1) in names:
            spawned[m.group(1)] = i
            running.pop(m.group(1), None)
        elif m and m.group(2) in names:
            running[m.group(2)] = i
    assert set(spawned) == set(running) == set(names), (names, spawned, running)
    return list(spawned.values()), list(running.values())
