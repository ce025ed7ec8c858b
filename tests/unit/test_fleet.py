"""HostFleet under mocks: resources per machine, and the coordinator's payload as the
agent parses it (members, member sites behind balancers, the balancer's upstream)."""

from __future__ import annotations

import base64
import json
from typing import Any

from gin_deploy.agent.balancer import with_members
from gin_deploy.agent.fleet_payload import BalancerTarget, FleetPayload
from gin_deploy.agent.payload import TargetPayload, parse
from gin_deploy.agent.wire import load
from tests.unit.harness import HOST_KEY, RecordingMocks, is_secret, run_program, stack_config
from tests.unit.test_host import dev_with

KEY_FILE = __file__


def fleet_config(**over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        connection="ssh", user="deploy", privateKeyPath=KEY_FILE, mode="user",
        # dev's stack-wide canary: a fleet releases host by host instead
        release={"strategy": "rolling"},
        hosts=[
            {"name": "app1", "host": "127.0.0.2", "hostKey": HOST_KEY, "weight": 3,
             "basePort": 9180},
            {"name": "app2", "host": "127.0.0.3", "hostKey": HOST_KEY, "basePort": 9280},
            {"name": "spare", "host": "127.0.0.4", "hostKey": HOST_KEY, "basePort": 9380,
             "backup": True},
        ],
        balancers=[{"name": "lb", "host": "127.0.0.1", "hostKey": HOST_KEY}])
    return dev_with(**{**fields, **over})


def fleet_payload(mocks: RecordingMocks, name: str = "local-release") -> FleetPayload:
    release = mocks.named(name)
    assert is_secret(release.inputs["stdin"]), "the payload carries the SSH key"
    raw = release.inputs["stdin"]
    text = raw["value"] if isinstance(raw, dict) and "value" in raw else raw
    return load(FleetPayload, json.loads(text))


def test_every_machine_gets_staging_uploads_and_a_cleanup_command() -> None:
    mocks = run_program(fleet_config())
    names = {r.name for r in mocks.resources}
    for host in ("app1", "app2", "spare"):
        for role in ("staging", "upload-agent", "upload-binary", "host"):
            assert f"local-{host}-{role}" in names, (host, role, sorted(names))
    assert {"local-lb-staging", "local-lb-upload-agent", "local-lb-balancer"} <= names
    assert "local-lb-upload-binary" not in names  # a balancer runs no instance
    assert "local-deploy" not in names  # no single-host deploy
    # Cleaning a host is its ordinary destroy; its payload rides on the command line.
    host = mocks.named("local-app2-host").inputs
    target = parse(TargetPayload, base64.b64decode(host["delete"].split()[1]).decode())
    assert target.state_dir.endswith("-local-app2") and target.instances[0].port == 9280
    lb = mocks.named("local-lb-balancer").inputs["delete"]
    assert lb.endswith("balancer-destroy")
    balancer = load(BalancerTarget, json.loads(base64.b64decode(lb.split()[1])))
    assert balancer.app == "hello-gin-balancer"


def test_the_release_runs_the_coordinator_with_every_host_and_balancer() -> None:
    mocks = run_program(fleet_config(maxUnavailable=1))
    release = mocks.named("local-release")
    assert release.typ == "command:local:Command"
    assert release.inputs["create"] == "python3 build/hostctl.pyz fleet-release"
    assert release.inputs["update"] == release.inputs["create"]
    payload = fleet_payload(mocks)
    assert payload.private_key and payload.max_unavailable == 1
    assert [(h.name, h.member.address, h.member.weight, h.member.backup)
            for h in payload.hosts] == [("app1", "127.0.0.2:8081", 3, False),
                                         ("app2", "127.0.0.3:8081", 1, False),
                                         ("spare", "127.0.0.4:8081", 1, True)]
    app1 = payload.hosts[0]
    assert (app1.ssh.host, app1.ssh.host_key) == ("127.0.0.2", HOST_KEY)
    # Each machine has its own state and staging dir: two may share a box.
    assert app1.deploy.state_dir.endswith("-local-app1")
    assert app1.ssh.agent.endswith("-local-app1/hostctl.py")
    assert [i.port for i in app1.deploy.instances] == [9180, 9181, 9182]  # dev: 3


def test_hosts_behind_balancers_listen_privately_and_trust_only_the_balancer() -> None:
    payload = fleet_payload(run_program(fleet_config()))
    site = payload.hosts[1].deploy.nginx
    assert site.listen_address == "127.0.0.3" and site.http_port == 8081
    assert "listen 127.0.0.3:8081;" in site.site and "ssl" not in site.site
    assert "geo $realip_remote_addr $hello_gin_from_balancer {\n    default 0;\n" \
        "    127.0.0.1 1;\n}" in site.site
    assert "if ($hello_gin_from_balancer = 0) {\n        return 403;" in site.site
    assert "set_real_ip_from 127.0.0.1;" in site.site
    assert "real_ip_recursive" not in site.site
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site.site


def test_the_balancer_proxies_to_the_hosts_with_weights_backup_and_passive_checks() -> None:
    payload = fleet_payload(run_program(fleet_config()))
    (lb,) = payload.balancers
    site = lb.balancer.nginx.site
    # Its own name (it may share a machine with a host): a conf.d file of its own.
    assert lb.balancer.upstream == "hello_gin_balancer_backend"
    assert "server 127.0.0.2:8081 weight=3 max_fails=2 fail_timeout=5s;" in site
    assert "server 127.0.0.4:8081 weight=1 max_fails=2 fail_timeout=5s backup;" in site
    # The client cannot forge its address: the balancer sets it from the connection.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site
    assert "listen 8443 ssl" in site
    # The agent replaces the server lines with the step's members.
    members = [h.member for h in payload.hosts[:2]]
    drained = with_members(site, lb.balancer.upstream,
                           [members[0], members[1].__class__(**{**members[1].__dict__,
                                                                "down": True})])
    assert "server 127.0.0.3:8081 weight=1 max_fails=2 fail_timeout=5s down;  # app2" \
        in drained
    assert "127.0.0.4" not in drained.split("upstream")[1].split("}")[0]


def test_without_balancers_every_host_terminates_tls() -> None:
    payload = fleet_payload(run_program(fleet_config(balancers=[])))
    assert not payload.balancers
    for h in payload.hosts:
        assert h.deploy.nginx.listen_address is None and "ssl" in h.deploy.nginx.site


def test_the_dev_stack_is_unchanged_by_fleets() -> None:
    names = {r.name for r in run_program(stack_config("dev")).resources}
    assert "local-deploy" in names and not any(n.endswith("-release") for n in names)


def prod_fleet_example() -> dict[str, Any]:
    """The commented fleet target of Pulumi.prod.yaml, uncommented."""
    import yaml

    from tests.unit.harness import ROOT

    lines = (ROOT / "Pulumi.prod.yaml").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "# - name: fleet-fra")
    block = []
    for line in lines[start:]:
        if not line.startswith("    #"):
            break
        block.append(line.replace("#", " ", 1)[4:])
    (target,) = yaml.safe_load("\n".join(block))
    return dict(target)


def test_the_prod_fleet_example_is_valid_and_deploys_under_mocks(
        tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "gin-deploy-edge").write_text("key")
    config = stack_config("prod")
    example = {**prod_fleet_example(), "weight": 1}
    config["gin-deploy:targets"] = [*config["gin-deploy:targets"], example]
    from tests.unit.test_edge import run

    mocks = run(config)
    release = mocks.named("fleet-fra-release")
    assert is_secret(release.inputs["stdin"])
    payload = fleet_payload(mocks, "fleet-fra-release")
    assert [h.member.address for h in payload.hosts] == [
        "10.0.1.11:8081", "10.0.1.12:8081", "10.0.1.13:8081"]
    # Behind the CDN the balancer carries the origin lock, like a single host would.
    assert "return 403" in payload.balancers[0].balancer.nginx.site


def test_status_sums_a_fleets_hosts_and_names_one_it_cannot_ask(monkeypatch: Any) -> None:
    import pytest

    from gin_deploy.status import hosts

    answers = {
        "127.0.0.2": {"current": "v2-a", "ready": 3, "wanted": 3, "nginxRunning": True,
                      "lastDeploy": {"time": "2026-01-02", "result": "ok"}},
        "127.0.0.3": {"current": "v2-a", "ready": 2, "wanted": 3, "nginxRunning": True,
                      "lastDeploy": {"time": "2026-01-01", "result": "ok"}},
    }
    asked = []

    def fake(target: Any, key: Any = None, path: Any = None, agent: str = "status") -> Any:
        if target.get("connection") == "fleet":
            return hosts.query_fleet(target, key, path)
        asked.append((target["host"], target["connection"], target["stateDir"]))
        if target["host"] not in answers:
            raise hosts.HostQueryError("ssh: connect to host refused")
        return answers[target["host"]]

    monkeypatch.setattr(hosts, "query_agent", fake)
    machines = [{"name": "app1", "host": "127.0.0.2", "stateDir": "/srv/a"},
                {"name": "app2", "host": "127.0.0.3", "stateDir": "/srv/b"}]
    summed = hosts.query_fleet({"connection": "fleet", "hosts": machines})
    assert asked == [("127.0.0.2", "ssh", "/srv/a"), ("127.0.0.3", "ssh", "/srv/b")]
    assert (summed["current"], summed["ready"], summed["wanted"]) == ("v2-a", 5, 6)
    assert summed["lastDeploy"]["time"] == "2026-01-02"
    answers["127.0.0.3"]["current"] = "v1-b"
    assert hosts.query_fleet({"hosts": machines})["current"] == \
        "mixed: app1=v2-a, app2=v1-b"
    # A host the balancer has drained serves nothing: its instances do not count as ready.
    answers["127.0.0.1"] = {"joined": ["app1"], "drained": ["app2"], "nginxRunning": True,
                            "tlsMode": "self-signed", "caCert": "PEM"}
    lb = [{"name": "lb", "host": "127.0.0.1", "stateDir": "/srv/lb"}]
    summed = hosts.query_fleet({"hosts": machines, "balancers": lb})
    assert (summed["ready"], summed["wanted"], summed["caCert"]) == (3, 6, "PEM")
    machines.append({"name": "app3", "host": "127.0.0.4", "stateDir": "/srv/c"})
    with pytest.raises(hosts.HostQueryError, match="host app3: ssh: connect to host refused"):
        hosts.query_fleet({"hosts": machines})


def test_the_targets_output_lists_how_to_ask_each_host() -> None:
    from tests.unit.test_edge import run

    (target,) = run(fleet_config()).outputs["targets"]
    assert (target["name"], target["kind"], target["connection"]) == ("local", "host", "fleet")
    assert [(b["name"], b["host"]) for b in target["balancers"]] == [("lb", "127.0.0.1")]
    app1 = target["hosts"][0]
    assert {k: app1[k] for k in ("name", "host", "user", "hostKey", "sudo")} == {
        "name": "app1", "host": "127.0.0.2", "user": "deploy", "hostKey": HOST_KEY,
        "sudo": False}
    assert app1["stateDir"].endswith("-local-app1") and "privateKey" not in app1


def test_in_system_mode_a_balancer_and_a_host_may_share_a_machine() -> None:
    config = fleet_config(mode="system", httpPort=80, httpsPort=443)
    target = config["gin-deploy:targets"][0]
    target["balancers"] = [{"name": "lb", "host": "127.0.0.2", "hostKey": HOST_KEY}]
    payload = fleet_payload(run_program(config))
    (lb,) = payload.balancers
    host = payload.hosts[0].deploy
    # Different files in conf.d, different upstream names, different state dirs.
    assert lb.balancer.target.name and host.name and lb.balancer.target.name != host.name
    assert lb.balancer.target.state_dir != host.state_dir
    assert lb.ssh.sudo and payload.hosts[0].ssh.sudo  # system mode as a non-root user
