"""HostTarget under mocks: what reaches the host, how, and that secrets stay secret."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from gin_deploy.agent import bundle
from gin_deploy.agent.payload import DeployPayload, TargetPayload, parse
from tests.unit.harness import (
    HOST_KEY,
    RecordingMocks,
    is_secret,
    run_program,
    stack_config,
    unsecret,
)

DEV = stack_config("dev")


def dev_with(**target: Any) -> dict[str, Any]:
    config = dict(DEV)
    config["gin-deploy:targets"] = [{**DEV["gin-deploy:targets"][0], **target}]
    return config


def payload_of(mocks: RecordingMocks, name: str = "local-deploy") -> dict[str, Any]:
    return json.loads(unsecret(mocks.named(name).inputs["stdin"]))


def test_what_the_component_sends_is_what_the_agent_parses() -> None:
    deploy = run_program(DEV).named("local-deploy").inputs
    stdin = unsecret(deploy["stdin"])
    parsed = parse(DeployPayload, stdin)
    assert parsed.instances[0].name == "hello-gin-9080" and parsed.systemd is None
    # The destroy payload rides base64-encoded on the delete command line.
    encoded = deploy["delete"].split()[1]
    target = parse(TargetPayload, base64.b64decode(encoded).decode())
    assert (target.app, target.state_dir, target.instances) == (
        parsed.app, parsed.state_dir, parsed.instances)


def test_dev_deploys_through_the_agent_with_update_in_place_and_destroy_on_delete() -> None:
    mocks = run_program(DEV)
    deploy = mocks.named("local-deploy")
    assert deploy.typ == "command:local:Command"
    # The agent runs as the one-file archive that SSH hosts receive too.
    assert deploy.inputs["create"] == "python3 build/hostctl.pyz deploy"
    # update == create: a change re-runs the idempotent deploy instead of a replace,
    # which would run destroy around it.
    assert deploy.inputs["update"] == deploy.inputs["create"]
    assert "triggers" not in deploy.inputs
    assert deploy.inputs["delete"].endswith("| python3 build/hostctl.pyz destroy")
    assert not is_secret(deploy.inputs["stdin"])  # no app secrets: reviewable diffs


def test_deploy_options_keep_outputs_secret_and_never_destroy_after_a_replace() -> None:
    options: dict[str, pulumi.ResourceOptions] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        options[args.name] = args.opts

    run_program(DEV, transforms=(record,))
    deploy = options["local-deploy"]
    # pulumi-command keeps only same-named outputs secret; stdin may carry secrets.
    assert deploy.additional_secret_outputs == ["stdout", "stderr"]
    assert deploy.delete_before_replace is True
    # The build's stdout (a sha256) feeds the payload and stays plain.
    assert not options["hello-gin-binary"].additional_secret_outputs


def test_dev_payload_describes_three_instances_behind_nginx_on_8443() -> None:
    payload = payload_of(run_program(DEV))
    assert [i["port"] for i in payload["instances"]] == [9080, 9081, 9082]
    assert payload["mode"] == "user" and payload["supervisor"] == "supervisord"
    assert payload["nginx"]["httpsPort"] == 8443 and payload["nginx"]["httpPort"] == 8080
    site = payload["nginx"]["site"]
    for port in (9080, 9081, 9082):
        assert f"server 127.0.0.1:{port}" in site
    assert "listen 8443 ssl" in site and payload["nginx"]["main"]
    assert payload["tls"] == {"mode": "self-signed", "domains": ["localhost"]}
    assert payload["readyPath"] == "/readyz" and payload["readyTimeoutSeconds"] == 30
    assert payload["env"]["TRUSTED_PROXIES"] == "127.0.0.1/32,::1/128"
    programs = payload["supervisord"]["programs"]
    assert programs.count("[program:") == 6 and "hostctl.py run --state" in programs
    assert payload["systemd"] is None


def test_dev_releases_a_canary_beside_the_instances() -> None:
    """Pulumi.dev.yaml's release: candidates on the three ports after the instances, run
    by programs of their own that supervisord never starts by itself, judged from the
    access log nginx writes."""
    payload = payload_of(run_program(DEV))
    state = payload["stateDir"]
    assert payload["rollout"] == {
        "strategy": "canary", "steps": [10, 50, 100], "bakeSeconds": 10,
        "maxErrorRate": 0.01, "maxP95Ms": 500, "minRequests": 0,
        "candidates": [{"name": f"hello-gin-{p}", "port": p} for p in (9083, 9084, 9085)],
        "accessLog": f"{state}/logs/nginx-access.log",
        "shareDir": f"{state}/nginx/candidate-share"}
    site = payload["nginx"]["site"]
    assert (f"access_log {state}/logs/nginx-access.log hello_gin_json buffer=64k "
            "flush=250ms;") in site
    assert f"if (-f {state}/nginx/candidate-share/$hello_gin_bucket)" in site
    assert "proxy_pass http://$hello_gin_pool;" in site
    programs = payload["supervisord"]["programs"]
    candidate = programs.split("[program:hello-gin-9083]")[1].split("[program:")[0]
    assert "--name hello-gin-9083 --release candidate" in candidate
    assert "autostart=false" in candidate
    first = programs.split("[program:hello-gin-9080]")[1].split("[program:")[0]
    assert "--release" not in first and "autostart=true" in first


def test_a_one_instance_host_rolls_with_no_candidates() -> None:
    config = copy.deepcopy(DEV)
    config["gin-deploy:targets"][0]["instances"] = 1
    del config["gin-deploy:release"]
    payload = payload_of(run_program(config))
    assert "rollout" not in payload  # rolling: the payload reads as before
    assert "split_clients" not in payload["nginx"]["site"]
    assert payload["supervisord"]["programs"].count("[program:") == 1


def test_release_follows_the_built_binary() -> None:
    mocks = run_program(DEV)
    build_sha = mocks.named("hello-gin-binary")  # the mock prints this sha256
    payload = payload_of(mocks)
    assert payload["release"]["sha256"] == "e3b0c442" * 8
    assert payload["release"]["binary"].endswith("-amd64")
    assert build_sha.inputs["create"].count(payload["release"]["binary"]) == 2


def test_release_id_changes_with_env() -> None:
    first = payload_of(run_program(DEV))["release"]["id"]
    config = dict(DEV)
    config["gin-deploy:app"] = {**DEV["gin-deploy:app"], "env": {"FEATURE": "on"}}
    assert payload_of(run_program(config))["release"]["id"] != first


def test_release_id_leaves_secret_values_to_the_hosts_keyed_hmac() -> None:
    """A secret's value never shapes the program's release id (the agent adds a keyed HMAC
    of it), so the world-readable releases/ names reveal nothing about it."""
    ids = []
    for pin in ("12345", "54321"):
        config = dict(DEV)
        config["gin-deploy:app"] = {**DEV["gin-deploy:app"], "secretEnv": ["PIN"]}
        config["gin-deploy:PIN"] = pin
        ids.append(payload_of(run_program(config, secret_keys=["gin-deploy:PIN"]))
                   ["release"]["id"])
    assert ids[0] == ids[1]
    assert ids[0] != payload_of(run_program(DEV))["release"]["id"]  # the names count


def test_secret_env_reaches_the_host_only_as_a_secret() -> None:
    config = dict(DEV)
    config["gin-deploy:app"] = {**DEV["gin-deploy:app"], "secretEnv": ["DB_PASSWORD"]}
    config["gin-deploy:DB_PASSWORD"] = "correct-horse-battery"
    mocks = run_program(config, secret_keys=["gin-deploy:DB_PASSWORD"])
    deploy = mocks.named("local-deploy")
    assert is_secret(deploy.inputs["stdin"])
    payload = json.loads(unsecret(deploy.inputs["stdin"]))
    assert payload["env"]["DB_PASSWORD"] == "correct-horse-battery"
    assert payload["secretEnvKeys"] == ["DB_PASSWORD"]
    for resource in mocks.resources:
        for key, value in resource.inputs.items():
            if not is_secret(value):
                assert "correct-horse-battery" not in json.dumps(value), (resource.name, key)


def test_acme_mode_serves_the_challenge_and_keeps_renewal_running() -> None:
    config = dev_with()
    config["gin-deploy:tls"] = {"mode": "acme", "acme": {
        "email": "ops@example.com", "server": "https://localhost:14000/dir"}}
    payload = payload_of(run_program(config))
    assert payload["tls"]["mode"] == "acme"
    assert payload["tls"]["server"] == "https://localhost:14000/dir"
    assert payload["tls"]["webroot"].endswith("/acme/webroot")
    assert "acme-challenge" in payload["nginx"]["site"]
    assert "renew-loop" in payload["supervisord"]["programs"]


def test_state_dir_is_per_stack_and_target() -> None:
    payload = payload_of(run_program(DEV))
    assert payload["stateDir"].endswith("/.local/state/gin-deploy/gin-deploy-dev-local")
    payload = payload_of(run_program(dev_with(stateDir="/var/tmp/gd")))
    assert payload["stateDir"] == "/var/tmp/gd"
    assert "/var/tmp/gd/tls/server.crt" in payload["nginx"]["site"]


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nthrowaway\n")
    return key


def ssh_config(key: Path, **extra: Any) -> dict[str, Any]:
    config = dict(DEV)
    config["gin-deploy:targets"] = [{
        "name": "edge", "kind": "host", "connection": "ssh", "host": "203.0.113.10",
        "user": "deploy", "hostKey": HOST_KEY, "privateKeyPath": str(key), **extra}]
    return config


def test_ssh_target_stages_agent_and_binary_then_deploys_remotely(ssh_key: Path) -> None:
    mocks = run_program(ssh_config(ssh_key, supervisor="systemd"))
    staging = mocks.named("edge-staging")
    assert staging.inputs["create"].startswith("mkdir -p .cache/gin-deploy/gin-deploy-dev-edge")
    assert staging.inputs["delete"] == "rm -rf .cache/gin-deploy/gin-deploy-dev-edge"
    uploads = {r.name: r for r in mocks.of_type("command:remote:CopyToRemote")}
    assert sorted(uploads) == ["edge-upload-agent", "edge-upload-binary"]
    # The agent goes as its zip archive under the name the supervisord programs run,
    # re-sent exactly when its code changes.
    agent = uploads["edge-upload-agent"].inputs
    assert agent["remotePath"] == ".cache/gin-deploy/gin-deploy-dev-edge/hostctl.py"
    assert agent["source"].path == "build/hostctl.pyz"
    assert agent["triggers"] == [hashlib.sha256(bundle.archive_bytes()).hexdigest()]
    assert uploads["edge-upload-binary"].inputs["remotePath"].endswith("/app")
    deploy = mocks.named("edge-deploy")
    assert deploy.typ == "command:remote:Command"
    connection = deploy.inputs["connection"]
    assert is_secret(connection) or is_secret(connection["privateKey"])
    conn = unsecret(connection)
    assert unsecret(conn["privateKey"]).startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (conn["host"], conn["user"], conn["port"]) == ("203.0.113.10", "deploy", 22)
    # A non-root user needs sudo for system nginx and systemd.
    assert deploy.inputs["create"].startswith("sudo -n python3 .cache/gin-deploy/")
    payload = json.loads(unsecret(deploy.inputs["stdin"]))
    assert payload["mode"] == "system"
    assert payload["stateDir"] == "/srv/gin-deploy/gin-deploy-dev-edge"
    assert payload["nginx"]["httpsPort"] == 443 and payload["nginx"]["main"] is None
    assert payload["supervisord"] is None
    unit = payload["systemd"]["unit"]
    assert "ExecStart=/srv/gin-deploy/gin-deploy-dev-edge/current/app" in unit
    assert payload["release"]["binary"] == uploads["edge-upload-binary"].inputs["remotePath"]


def test_system_mode_candidates_are_named_and_confined_like_the_instances(
        ssh_key: Path) -> None:
    """Issue 14 under issue 16: the candidates' systemd unit is the instances' with the
    `candidate` link (same sandbox), named after the system name; under the host's
    supervisord they run as the app's account with umask 077, in a group after its own."""
    def payload(supervisor: str) -> dict[str, Any]:
        deploy = run_program(ssh_config(ssh_key, supervisor=supervisor)).named("edge-deploy")
        data: dict[str, Any] = json.loads(unsecret(deploy.inputs["stdin"]))
        return data

    units = payload("systemd")
    name, state = units["name"], units["stateDir"]
    assert name == "gin-deploy-gin_deploy-dev-hello_gin"
    assert [c["port"] for c in units["rollout"]["candidates"]] == [9082, 9083]
    unit, candidate = units["systemd"]["unit"], units["systemd"]["candidateUnit"]
    assert f"e.g. {name}-candidate@9080.service" in candidate

    def sandbox(text: str) -> list[str]:
        return [ln for ln in text.splitlines()
                if not ln.startswith(("#", "Description="))]
    assert sandbox(candidate) == [ln.replace(f"{state}/current", f"{state}/candidate")
                                  for ln in sandbox(unit)]
    assert "DynamicUser=yes" in candidate and f"ExecStart={state}/candidate/app" in candidate

    programs = payload("supervisord")["supervisord"]
    account = programs["user"]
    assert account.startswith("gd-hello-gin-")
    text = programs["programs"]
    assert f"[group:{name}-candidates]\nprograms=hello-gin-9082,hello-gin-9083\n" in text
    for port in (9080, 9081, 9082, 9083):
        section = text.split(f"[program:hello-gin-{port}]")[1].split("[program:")[0]
        assert f"user={account}\n" in section and "umask=077\n" in section


def test_ssh_user_mode_needs_no_sudo_and_lives_in_the_users_home(ssh_key: Path) -> None:
    mocks = run_program(ssh_config(ssh_key, user="admin", mode="user", httpPort=18080,
                                   httpsPort=18443))
    deploy = mocks.named("edge-deploy")
    assert deploy.inputs["create"].startswith("python3 ")
    payload = json.loads(unsecret(deploy.inputs["stdin"]))
    assert payload["stateDir"] == "/home/admin/.local/state/gin-deploy/gin-deploy-dev-edge"


def test_ssh_private_key_from_secret_config(ssh_key: Path) -> None:
    config = ssh_config(ssh_key)
    target = config["gin-deploy:targets"][0]
    del target["privateKeyPath"]
    target["privateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nfrom-config\n"
    mocks = run_program(config, secret_keys=["gin-deploy:targets"])
    conn = unsecret(mocks.named("edge-deploy").inputs["connection"])
    assert "from-config" in unsecret(conn["privateKey"])
    for upload in mocks.of_type("command:remote:CopyToRemote"):
        assert is_secret(upload.inputs["connection"]) or is_secret(
            upload.inputs["connection"]["privateKey"])


@pytest.mark.parametrize(("strategy", "candidates", "message"), [
    ("canary", (), "service.candidate_ports: release.strategy canary needs candidate ports"),
    ("rolling", (9090,), "service.candidate_ports: release.strategy rolling takes no"),
    ("canary", (9090, 9091), "service.candidate_ports: as many as instance_ports"),
    ("yolo", (), "release.strategy: 'yolo' must be one of rolling | canary | blueGreen"),
])
def test_host_args_refuse_a_release_without_its_candidates(
        strategy: str, candidates: tuple[int, ...], message: str) -> None:
    from components.host import HostRelease, HostTargetArgs
    from gin_deploy.agent.payload import SelfSignedTls
    from gin_deploy.render.host import HostService

    service = HostService(app="a", stack="s", target="t", state_dir="/srv/a", mode="system",
                          supervisor="systemd", instance_ports=(9080,), http_port=80,
                          https_port=443, server_names=("localhost",),
                          candidate_ports=candidates)
    with pytest.raises(ValueError, match=re.escape(message)):
        HostTargetArgs(service=service, tls=SelfSignedTls(domains=("localhost",)),
                       domain="localhost", env={}, ready_path="/readyz", ready_timeout=30,
                       keep_releases=5, install=False, version="1", binary_path="b",
                       binary_sha256="x", agent_path="a", agent_sha256="y", staging_dir="s",
                       release=HostRelease(strategy=strategy))
