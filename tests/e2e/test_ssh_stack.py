"""A host target reached over SSH (a real sshd on 127.0.0.1), through the real engine."""

from __future__ import annotations

import http.client
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from gin_deploy import automation
from gin_deploy.agent import bundle
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.network import port_free
from gin_deploy.agent.processes import target_processes
from tests.e2e.conftest import Project
from tests.host.conftest import Load, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.host]
STACK = "edge-ssh"


@pytest.fixture(scope="module")
def keys(sshd: dict[str, Any], project: Project) -> dict[str, Path]:
    out = {}
    for name, text in (("good", sshd["key"]), ("wrong", sshd["wrong"])):
        path = project.root.parent / f"{name}_key"
        path.write_text(text)
        path.chmod(0o600)
        out[name] = path
    return out


def ssh_config(project: Project, sshd: dict[str, Any], key: Path,
               host_key: str | None = None) -> dict[str, Any]:
    pinned = host_key or (sshd["dir"] / "host_key.pub").read_text().strip()
    return project.dev_config(connection="ssh", host="127.0.0.1", sshPort=sshd["port"],
                              user=sshd["user"], privateKeyPath=str(key), mode="user",
                              hostKey=pinned)


def staging_dir(sshd: dict[str, Any]) -> Path:
    home = Path(pwd.getpwnam(sshd["user"]).pw_dir)
    return home / ".cache" / "gin-deploy" / f"gin-deploy-{STACK}-local"


def healthz(project: Project) -> int:
    conn = http.client.HTTPSConnection("localhost", project.https_port,
                                       context=project.tls_context(), timeout=10)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_host_with_another_key_is_refused_and_nothing_is_sent(
        project: Project, sshd: dict[str, Any], keys: dict[str, Path]) -> None:
    # The stack pins a key the host does not have: what a man in the middle looks like.
    other = (sshd["dir"] / "wrong_key.pub").read_text().strip()
    shutil.rmtree(staging_dir(sshd), ignore_errors=True)  # an earlier run's leftovers
    project.write_stack_file(STACK, ssh_config(project, sshd, keys["good"], host_key=other))
    with pytest.raises(automation.OperationFailed) as err:
        automation.up(STACK, settings=project.settings)
    offered = subprocess.run(["ssh-keygen", "-lf", str(sshd["dir"] / "host_key.pub")],
                             check=True, capture_output=True, text=True).stdout.split()[1]
    message = str(err.value)
    assert f"127.0.0.1:{sshd['port']} offers host key {offered} (ssh-ed25519)" in message, \
        message
    assert not staging_dir(sshd).exists() and not project.state_dir.exists()


def test_up_over_ssh_serves_https(project: Project, sshd: dict[str, Any],
                                  keys: dict[str, Path]) -> None:
    project.write_stack_file(STACK, ssh_config(project, sshd, keys["good"]))
    result = automation.up(STACK, settings=project.settings)
    assert result.summary.get("create", 0) >= 5, result.summary
    assert healthz(project) == 200
    # The agent travels as its zip archive and runs on the host under that name.
    assert (staging_dir(sshd) / "hostctl.py").read_bytes() == bundle.archive_bytes()
    assert (project.state_dir / "bin" / "hostctl.py").read_bytes() == bundle.archive_bytes()
    assert (staging_dir(sshd) / "app").exists()


def test_auth_failure_is_clear_and_the_running_release_keeps_serving(
        project: Project, sshd: dict[str, Any], keys: dict[str, Path]) -> None:
    config = ssh_config(project, sshd, keys["wrong"])
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "9.9.9"}
    project.write_stack_file(STACK, config)
    with Load(project, threads=4) as load, pytest.raises(  # type: ignore[arg-type]
            automation.OperationFailed) as err:
        automation.up(STACK, settings=project.settings)
    assert load.ok > 20 and not load.failures, load.summary()
    message = str(err.value)
    assert f"127.0.0.1:{sshd['port']}" in message and "authentication" in message, message


def test_the_right_key_recovers(project: Project, sshd: dict[str, Any],
                                keys: dict[str, Path]) -> None:
    project.write_stack_file(STACK, ssh_config(project, sshd, keys["good"]))
    automation.up(STACK, settings=project.settings)
    assert healthz(project) == 200
    again = automation.up(STACK, settings=project.settings)
    assert not again.changed, again.summary


def test_status_asks_the_agent_over_ssh_with_the_pinned_key(
        project: Project, sshd: dict[str, Any], keys: dict[str, Path]) -> None:
    # The key as secret config this time: status decrypts it and hands it to ssh-agent.
    config = ssh_config(project, sshd, keys["good"])
    target = config["gin-deploy:targets"][0]
    del target["privateKeyPath"]
    project.write_stack_file(STACK, config)
    automation.select_stack(STACK, project.settings).set_config(
        "gin-deploy:targets[0].privateKey", auto.ConfigValue(sshd["key"], secret=True),
        path=True)
    automation.up(STACK, settings=project.settings)
    report = automation.status(STACK, settings=project.settings)
    (st,) = report.targets
    assert report.healthy, st.problems
    outputs = automation.outputs(STACK, settings=project.settings)
    assert (st.kind, st.version, st.ready, st.wanted) == ("host", outputs["version"], 2, 2)
    assert st.detail["release"] and st.last_deploy and st.last_deploy["result"] == "ok"
    assert st.cert_days_left and st.cert_days_left > 300
    # A host that now offers another key is not asked: status fails, says why.
    outputs["targets"][0]["hostKey"] = (sshd["dir"] / "wrong_key.pub").read_text().strip()
    bad = status_of_outputs(project, outputs)
    assert not bad.healthy and "Host key verification failed" in bad.targets[0].problems[0]


def status_of_outputs(project: Project, outputs: dict[str, Any]) -> Any:
    from gin_deploy import status

    st = automation.select_stack(STACK, project.settings)
    config = {k: v.value for k, v in st.get_all_config().items()}
    return status.collect(STACK, outputs, config)


def test_destroy_over_ssh_leaves_nothing(project: Project, sshd: dict[str, Any]) -> None:
    layout = Layout(str(project.state_dir))
    automation.destroy(STACK, settings=project.settings)
    assert wait_for(lambda: not target_processes(layout), timeout=15)
    assert not project.state_dir.exists()
    assert not staging_dir(sshd).exists()
    ports = [project.http_port, project.https_port,
             *range(project.base_port, project.base_port + project.instances)]
    assert all(port_free(p) for p in ports)
