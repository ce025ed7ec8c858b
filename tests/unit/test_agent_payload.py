"""The agent's payload is defined once (gin_deploy.agent.payload): the program serialises
it, the agent parses it with the same code, and a field renamed or missing on either side
is an error where the payload is built (a type error) or where it is read (a message
naming the field)."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api

from gin_deploy.agent.payload import (
    AcmeTls,
    DeployPayload,
    Instance,
    NginxFiles,
    PayloadError,
    Release,
    SelfSignedTls,
    SupervisordFiles,
    SystemdFiles,
    TargetPayload,
    parse,
    serialise,
)
from tests.unit.harness import ROOT

SHA = "ab" * 32


def deploy_payload(**over: Any) -> DeployPayload:
    base = DeployPayload(
        app="hello-gin", state_dir="/srv/gin-deploy/x", mode="system", supervisor="systemd",
        instances=(Instance("hello-gin-9080", 9080), Instance("hello-gin-9081", 9081)),
        release=Release(id="1.2.3-abc", binary=".cache/gin-deploy/x/app", sha256=SHA),
        nginx=NginxFiles(http_port=80, https_port=443, site="server {}\n"),
        tls=AcmeTls(domains=("api.example.com",), email="ops@example.com",
                    server="https://acme.example/dir", webroot="/srv/gin-deploy/x/acme"),
        systemd=SystemdFiles(unit="[Service]\n"),
        env={"GIN_MODE": "release", "DB_PASSWORD": "s3cret"},
        secret_env_keys=("DB_PASSWORD",), ready_timeout_seconds=45, keep_releases=3,
    )
    return dataclasses.replace(base, **over)


def problems_of(text: str, cls: type[TargetPayload] = DeployPayload) -> str:
    with pytest.raises(PayloadError) as err:
        parse(cls, text)
    message = str(err.value)
    assert message.startswith("invalid payload: ")
    return message


def wire(payload: DeployPayload) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(serialise(payload))
    return data


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("payload", [
    deploy_payload(),
    deploy_payload(mode="user", supervisor="supervisord", systemd=None,
                   supervisord=SupervisordFiles(programs="[program:hello-gin-9080]\n"
                                                         "[program:hello-gin-9081]\n",
                                                main="[supervisord]\n"),
                   nginx=NginxFiles(8080, 8443, "server {}\n", main="http {}\n",
                                    settle_seconds=2.5),
                   tls=SelfSignedTls(domains=("localhost", "127.0.0.1"))),
], ids=["acme-systemd", "self-signed-supervisord"])
def test_a_payload_survives_the_round_trip(payload: DeployPayload) -> None:
    text = serialise(payload)
    assert parse(DeployPayload, text) == payload
    assert serialise(parse(DeployPayload, text)) == text


def test_the_wire_keeps_the_agents_camel_case_keys_and_sorts_them() -> None:
    text = serialise(deploy_payload())
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert {"stateDir", "secretEnvKeys", "readyTimeoutSeconds", "keepReleases"} <= set(data)
    assert data["release"] == {"binary": ".cache/gin-deploy/x/app", "id": "1.2.3-abc",
                               "sha256": SHA}
    assert data["tls"]["mode"] == "acme" and data["tls"]["caBundle"] is None
    assert data["supervisord"] is None and data["systemd"] == {"unit": "[Service]\n"}
    assert text == json.dumps(data, sort_keys=True)  # the format existing stacks were fed


def test_extras_are_sent_only_when_set() -> None:
    plain = wire(deploy_payload())
    assert set(plain["nginx"]) == {"httpPort", "httpsPort", "site", "main"}
    tuned = deploy_payload(nginx=NginxFiles(80, 443, "s", conf_dir="/opt/nginx",
                                            settle_seconds=0),
                           systemd=SystemdFiles(unit="u", env_file="A=1\n"))
    data = wire(tuned)
    assert data["nginx"]["confDir"] == "/opt/nginx" and data["nginx"]["settleSeconds"] == 0
    assert data["systemd"] == {"unit": "u", "envFile": "A=1\n"}
    assert parse(DeployPayload, serialise(tuned)) == tuned


def test_the_destroy_payload_is_the_deploy_payloads_target_part() -> None:
    target = TargetPayload(app="a", state_dir="/srv/a", mode="user", supervisor="supervisord",
                           instances=(Instance("a-1", 1000),))
    assert json.loads(serialise(target)) == {
        "app": "a", "instances": [{"name": "a-1", "port": 1000}], "mode": "user",
        "stateDir": "/srv/a", "supervisor": "supervisord"}
    assert parse(TargetPayload, serialise(target)) == target
    # A deploy payload's extra fields are not part of it.
    message = problems_of(serialise(deploy_payload()), TargetPayload)
    assert "release is not a known field" in message


# --------------------------------------------------------------------------- errors


def test_a_renamed_key_and_a_missing_one_are_named() -> None:
    data = wire(deploy_payload())
    data["readyTimeout"] = data.pop("readyTimeoutSeconds")  # renamed on one side only
    del data["release"]["sha256"]
    message = problems_of(json.dumps(data))
    assert "readyTimeout is not a known field (known: " in message
    assert "release.sha256 is required" in message


@pytest.mark.parametrize(("path", "value", "problem"), [
    (("instances", 1, "port"), "9081", "instances[1].port must be an integer (got '9081')"),
    (("instances", 0, "port"), 70000, "instances[0].port must be in 1..65535 (got 70000)"),
    (("install",), "yes", "install must be true or false (got 'yes')"),
    (("mode",), "cluster", "mode must be one of user, system (got 'cluster')"),
    (("tls", "mode"), "dns", "tls.mode must be one of self-signed, acme (got 'dns')"),
    (("tls", "domains"), "a.example", "tls.domains must be a list (got 'a.example')"),
    (("env", "A"), 1, "env.A must be a string (got 1)"),
    (("nginx",), None, "nginx must not be null"),
    (("keepReleases",), 0, "keepReleases must be in 1..1000 (got 0)"),
    (("stateDir",), "/", "stateDir must be a dedicated directory, not /"),
])
def test_a_wrong_value_is_named_by_its_path(path: tuple[Any, ...], value: Any,
                                            problem: str) -> None:
    data = wire(deploy_payload())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert problem in problems_of(json.dumps(data))


def test_every_problem_is_reported_at_once() -> None:
    data = wire(deploy_payload())
    data["instances"][0]["port"] = 0
    data["tls"]["webroot"] = "relative"
    del data["nginx"]
    message = problems_of(json.dumps(data))
    assert "instances[0].port must be in 1..65535" in message
    assert "tls.webroot must be an absolute path" in message
    assert "nginx is required" in message


def test_rules_across_fields() -> None:
    # Checked once every field is valid on its own.
    user_without_main = deploy_payload(mode="user", supervisor="supervisord", systemd=None,
                                       supervisord=SupervisordFiles("[program:other]\n"))
    message = problems_of(serialise(user_without_main))
    assert "nginx.main is required in user mode" in message
    assert "supervisord.main is required in user mode" in message
    assert "supervisord.programs has no [program:hello-gin-9080] section" in message
    same_ports = deploy_payload(instances=(Instance("a", 1), Instance("b", 1)))
    assert "instances must have unique ports" in problems_of(serialise(same_ports))


def test_not_json_is_said_so() -> None:
    with pytest.raises(PayloadError, match="payload is not valid JSON"):
        parse(DeployPayload, "{nope")


# --------------------------------------------------------------------------- build time


def test_building_with_a_renamed_field_fails_at_once() -> None:
    with pytest.raises(TypeError, match="ready_timeout"):
        DeployPayload(app="a", state_dir="/srv/a", mode="user",  # type: ignore[call-arg]
                      supervisor="supervisord", instances=(), release=Release("r", "b", SHA),
                      nginx=NginxFiles(1, 2, "s"), tls=SelfSignedTls(("localhost",)),
                      ready_timeout=3)


def test_the_type_checker_catches_a_renamed_or_missing_field(tmp_path: Path) -> None:
    snippet = tmp_path / "builds_a_payload.py"
    snippet.write_text(textwrap.dedent("""
        from gin_deploy.agent.payload import Instance, NginxFiles, Release

        Release(id="r", binary="/b", sha=64 * "0")
        Instance(name="a")
        NginxFiles(http_port=80, https_port="443", site="s")
    """))
    out, _, status = mypy_api.run([str(snippet), "--no-incremental", "--follow-imports=silent",
                                   "--config-file", str(ROOT / "pyproject.toml")])
    assert status == 1, out
    assert 'Unexpected keyword argument "sha" for "Release"' in out
    assert 'Missing positional argument "port" in call to "Instance"' in out
    assert 'Argument "https_port" to "NginxFiles" has incompatible type "str"' in out
