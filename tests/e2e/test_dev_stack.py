"""The dev stack for real: the pulumi CLI and the Automation API, this machine, real nginx.

One stack goes through its whole life in order (the tests depend on each other's
state, like a user's session): first `up` through the CLI as the README says,
no-change up / preview / refresh, a new version under load, a bad release that
is rolled back under load, then destroy. A second stack proves bad config fails
before anything exists.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gin_deploy import automation
from gin_deploy.agent import bundle
from gin_deploy.agent.network import port_free
from tests.e2e.conftest import Project
from tests.host.conftest import Load, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.host]
STACK = "dev"


def get(project: Project, path: str) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    conn = http.client.HTTPSConnection("localhost", project.https_port,
                                       context=project.tls_context(), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if body else {}, resp
    finally:
        conn.close()


def versions_served(project: Project, n: int = 40) -> set[str]:
    """The version reported by each instance, over enough requests to reach them all."""
    seen: dict[str, str] = {}
    for _ in range(n):
        _status, who, _ = get(project, "/whoami")
        _status, ver, _ = get(project, "/version")
        seen[who["instance"]] = ver["version"]
    return set(seen.values())


def test_first_up_through_the_cli_serves_https_through_nginx(project: Project) -> None:
    project.write_stack_file(STACK, project.dev_config())
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    out = project.pulumi("up", "--stack", STACK, "--yes", "--skip-preview")
    assert "hello-gin-binary" in out.stdout and "local-deploy" in out.stdout
    status, body, resp = get(project, "/healthz")
    assert status == 200 and body == {"status": "ok"}
    assert resp.getheader("Strict-Transport-Security", "").startswith("max-age=63072000")
    outputs = automation.outputs(STACK, settings=project.settings)
    assert outputs["url"] == f"https://localhost:{project.https_port}"
    assert outputs["caCert"] == str(project.state_dir / "tls" / "ca.crt")
    assert outputs["endpoints"] == {"local": outputs["url"]}
    assert re.fullmatch(r"0\.0\.0-src\.[0-9a-f]{12}", outputs["version"])
    # The agent ran from its archive in the project's build/ and installed that very file.
    agent = (project.state_dir / "bin" / "hostctl.py").read_bytes()
    assert agent == (project.root / "build" / "hostctl.pyz").read_bytes()
    assert agent == bundle.archive_bytes()


def test_second_up_changes_nothing_and_preview_and_refresh_agree(project: Project) -> None:
    events: list[str] = []
    result = automation.up(STACK, settings=project.settings, on_output=events.append)
    assert not result.changed, result.summary
    assert set(result.summary) == {"same"}
    assert events, "progress must stream"
    preview = automation.preview(STACK, settings=project.settings, expect_no_changes=True)
    assert not preview.changed
    refresh = automation.refresh(STACK, settings=project.settings, expect_no_changes=True)
    assert not refresh.changed


def deploy_result(project: Project) -> dict[str, Any]:
    """What the agent reported for the last deploy (the deploy command's stdout)."""
    export = json.loads(project.pulumi("stack", "export", "--stack", STACK,
                                       "--show-secrets").stdout)
    [deploy] = [r for r in export["deployment"]["resources"]
                if r["urn"].endswith("::local-deploy")]
    stdout = deploy["outputs"]["stdout"]
    if isinstance(stdout, dict):  # a secret: its plaintext is the JSON-encoded value
        stdout = json.loads(stdout["plaintext"])
    result: dict[str, Any] = json.loads(stdout)
    return result


def test_new_version_is_released_as_a_canary_under_load_with_zero_failed_requests(
        project: Project) -> None:
    """Pulumi.dev.yaml's release: 10%, 50%, 100% of the requests, each step judged on the
    new release's own requests in nginx's access log, then promoted."""
    config = project.dev_config()
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "2.0.0"}
    project.write_stack_file(STACK, config)
    with Load(project, threads=6) as load:  # type: ignore[arg-type]
        result = automation.up(STACK, settings=project.settings)
    assert load.ok > 100 and not load.failures, load.summary()
    assert result.summary.get("update", 0) >= 1
    assert versions_served(project) == {"2.0.0"}
    report = deploy_result(project)
    assert report["strategy"] == "canary"
    assert [s["percent"] for s in report["steps"]] == [10, 50, 100]
    assert all(s["requests"] > 0 and s["errors"] == 0 for s in report["steps"]), report
    candidates = range(project.base_port + project.instances,
                       project.base_port + 2 * project.instances)
    assert wait_for(lambda: all(port_free(p) for p in candidates), timeout=15)


def test_release_that_never_gets_ready_is_rolled_back_and_the_old_one_keeps_serving(
        project: Project) -> None:
    config = project.dev_config(readyTimeout=3)
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "3.0.0-broken",
                                "env": {"STARTUP_DELAY": "1h"}}
    project.write_stack_file(STACK, config)
    with Load(project, threads=6) as load, pytest.raises(  # type: ignore[arg-type]
            automation.OperationFailed) as err:
        automation.up(STACK, settings=project.settings)
    assert load.ok > 50 and not load.failures, load.summary()
    message = str(err.value)
    # The candidates never got ready, so never a request; the old release kept serving.
    assert re.search(r"instance hello-gin-\d+ \(http://127\.0\.0\.1:\d+/readyz\) was not "
                     r"ready within 3s; release 3\.0\.0-broken-\w+ was not released; release "
                     r"2\.0\.0-\w+ serves again", message), message
    assert versions_served(project) == {"2.0.0"}
    # The stack still knows where the service is, and still describes the release that
    # serves: the failed deploy kept its previous inputs, so preview shows it pending.
    outputs = automation.outputs(STACK, settings=project.settings)
    assert outputs.get("url") == f"https://localhost:{project.https_port}", outputs
    assert deploy_result(project)["release"].startswith("2.0.0-")
    preview = automation.preview(STACK, settings=project.settings)
    assert preview.summary.get("update", 0) >= 1, preview.summary


def status_cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gin_deploy", "status", "--stack", STACK,
                           *args], cwd=project.root, env=project.env(), capture_output=True,
                          text=True, timeout=120, check=False)


def test_status_asks_the_live_target_and_fails_after_a_failed_deploy(
        project: Project) -> None:
    report = automation.status(STACK, settings=project.settings)
    (target,) = report.as_json()["targets"]
    # Asked of the live service: the rolled-back release, not what the config asks for.
    assert (target["name"], target["kind"], target["version"]) == ("local", "host", "2.0.0")
    assert (target["ready"], target["wanted"]) == (2, 2)
    assert 364 < target["certDaysLeft"] <= 365
    assert target["certIssuer"].startswith("gin-deploy hello-gin CA")
    assert target["lastDeploy"]["result"] == "failed"
    assert not target["healthy"] and not report.healthy
    assert any("the last deploy" in p and "was not ready within 3s" in p
               for p in target["problems"]), target["problems"]
    cli = status_cli(project)
    assert cli.returncode == 1, cli.stderr
    assert "local" in cli.stdout and "2.0.0" in cli.stdout and "UNHEALTHY" in cli.stdout


def restore(project: Project, **app: Any) -> dict[str, Any]:
    config = project.dev_config()
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "2.0.0", **app}
    project.write_stack_file(STACK, config)
    return config


def test_status_is_healthy_after_a_good_deploy_and_checks_certificate_days(
        project: Project) -> None:
    restore(project)
    automation.up(STACK, settings=project.settings)
    cli = status_cli(project, "--json")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    data = json.loads(cli.stdout)
    (target,) = data["targets"]
    assert {"name", "kind", "version", "ready", "wanted", "certDaysLeft",
            "healthy"} <= set(target)
    assert target["healthy"] and target["version"] == "2.0.0"
    assert target["lastDeploy"]["result"] == "ok" and target["problems"] == []
    # The self-signed leaf lives 365 days: a 400-day threshold makes it fail.
    short = status_cli(project, "--json", "--min-cert-days", "400")
    assert short.returncode == 1
    (target,) = json.loads(short.stdout)["targets"]
    assert "expires in" in target["problems"][0] and "(< 400)" in target["problems"][0]


def test_policy_pack_runs_in_the_engine_and_blocks_a_plain_secret(project: Project) -> None:
    pack = (str(project.root / "policy"),)
    restore(project)
    # The compliant stack passes: an `up` under the pack (it would stop on a violation).
    automation.up(STACK, settings=project.settings, policy_packs=pack)
    restore(project, env={"DB_PASSWORD": "plain"})
    with pytest.raises(automation.OperationFailed) as err:
        automation.preview(STACK, settings=project.settings, policy_packs=pack)
    assert "['DB_PASSWORD'] look like secrets: declare them in app.secretEnv" in str(err.value)
    # A preview that rebuilds the binary cannot see the payload: the engine says so, and
    # `up` stops on the violation before the deploy runs (the old release serves on).
    restore(project, version="2.0.9", env={"DB_PASSWORD": "plain"})
    seen = automation.preview(STACK, settings=project.settings, policy_packs=pack)
    assert "can't run policy 'host-tls-and-secrets'" in seen.output
    assert "can't run policy 'logs-retained'" not in seen.output
    with pytest.raises(automation.OperationFailed) as err:
        automation.up(STACK, settings=project.settings, policy_packs=pack)
    assert "['DB_PASSWORD'] look like secrets" in str(err.value)
    assert versions_served(project) == {"2.0.0"}


def test_secret_config_never_appears_in_state_outputs_logs_or_rendered_files(
        project: Project) -> None:
    secret = "s3cr3t-" + secrets.token_hex(12)
    restore(project, secretEnv=["DB_PASSWORD"])
    result = automation.up(STACK, settings=project.settings,
                           secret_config={"DB_PASSWORD": secret})
    assert result.changed
    backend = Path(project.settings.backend_url.removeprefix("file://"))  # type: ignore[union-attr]
    places = {
        "engine output": result.output,
        "stack outputs": project.pulumi("stack", "output", "--json", "--stack", STACK).stdout,
        "stack export": json.dumps(project.stack_export(STACK)),
        "stack file": (project.root / f"Pulumi.{STACK}.yaml").read_text(),
    }
    for path in [*backend.rglob("*"), *project.state_dir.rglob("*")]:
        if path.is_file() and not path.is_symlink():
            places[str(path)] = path.read_bytes().decode(errors="replace")
    # The app needs the value at run time: only the release's env files hold it, 0600.
    holders = {k for k, text in places.items() if secret in text}
    assert holders and all(Path(k).name in ("env.json", "app.env") for k in holders), holders
    for holder in holders:
        assert Path(holder).stat().st_mode & 0o077 == 0, holder


def test_a_locked_stack_fails_at_once_and_other_stacks_carry_on(project: Project) -> None:
    restore(project, version="2.0.1")
    backend = Path(project.settings.backend_url.removeprefix("file://"))  # type: ignore[union-attr]
    locks = backend / ".pulumi" / "locks"
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(
        result=automation.up(STACK, settings=project.settings)))
    runner.start()
    try:
        assert wait_for(lambda: any(locks.rglob("*.json")), timeout=60), "no lock appeared"
        started = time.monotonic()
        with pytest.raises(automation.StackLockedError, match="is locked by another operation"):
            automation.up(STACK, settings=project.settings)
        assert time.monotonic() - started < 30
        # Another stack of the same project is not blocked by it.
        project.write_stack_file("other", project.dev_config())
        other = automation.preview("other", settings=project.settings)
        assert other.summary.get("create", 0) >= 3
    finally:
        runner.join(timeout=300)
    assert first["result"].changed
    assert versions_served(project) == {"2.0.1"}


def test_bad_config_fails_preview_before_anything_exists(project: Project) -> None:
    config = project.dev_config(instances=0)
    config["gin-deploy:domain"] = "not a domain"
    project.write_stack_file("broken", config)
    with pytest.raises(automation.OperationFailed) as err:
        automation.preview("broken", settings=project.settings)
    message = str(err.value)
    assert "gin-deploy:targets[0].instances: must be >= 1" in message
    assert "gin-deploy:domain: must be a valid DNS name" in message
    assert "Traceback" not in message
    resources = project.stack_export("broken")["deployment"].get("resources") or []
    assert resources == []


def test_destroy_leaves_no_process_port_or_file(project: Project) -> None:
    from gin_deploy.agent.layout import Layout
    from gin_deploy.agent.processes import target_processes

    layout = Layout(str(project.state_dir))
    assert target_processes(layout), "the stack should be running before destroy"
    automation.destroy(STACK, settings=project.settings)
    assert wait_for(lambda: not target_processes(layout), timeout=15)
    ports = [project.http_port, project.https_port,
             *range(project.base_port, project.base_port + 2 * project.instances)]
    assert all(port_free(p) for p in ports), ports
    assert not Path(project.state_dir).exists()
    assert automation.outputs(STACK, settings=project.settings) == {}
