"""Fleet config (`hosts[]`, `balancers[]`): each rule proven by input only it rejects,
and every problem of a bad fleet reported at once by key path."""

from __future__ import annotations

from typing import Any

from gin_deploy.config import HostTargetConfig
from tests.unit.harness import HOST_KEY
from tests.unit.test_config import parse, problems

KEY_FILE = __file__  # any existing file stands in for a key file
P = "gin-deploy:targets[0]"


def fleet(**over: Any) -> dict[str, Any]:
    target = {
        "name": "web", "kind": "host", "connection": "ssh", "user": "deploy",
        "privateKeyPath": KEY_FILE,
        "hosts": [
            {"name": "app1", "host": "203.0.113.11", "privateAddress": "10.0.0.11",
             "hostKey": HOST_KEY, "weight": 3},
            {"name": "app2", "host": "203.0.113.12", "privateAddress": "10.0.0.12",
             "hostKey": HOST_KEY},
            {"name": "app3", "host": "10.0.0.13", "hostKey": HOST_KEY, "backup": True},
        ],
        "balancers": [{"name": "lb1", "host": "203.0.113.10", "privateAddress": "10.0.0.10",
                       "hostKey": HOST_KEY}],
    }
    target.update(over)
    return {"targets": [target]}


def test_a_fleet_parses_with_its_documented_defaults() -> None:
    (target,) = parse(fleet()).targets
    assert isinstance(target, HostTargetConfig) and target.fleet
    assert [h.name for h in target.hosts] == ["app1", "app2", "app3"]
    assert [(h.weight, h.backup) for h in target.hosts] == [(3, False), (1, False), (1, True)]
    # A host given by IP is its own private address.
    assert [h.address for h in target.hosts] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert (target.max_unavailable, target.private_port, target.mode) == (1, 8081, "system")
    assert [b.name for b in target.balancers] == ["lb1"]


def test_a_fleet_without_balancers_is_valid() -> None:
    (target,) = parse(fleet(balancers=[])).targets
    assert isinstance(target, HostTargetConfig) and not target.balancers


def test_every_fleet_problem_is_reported_at_once_by_key_path() -> None:
    hosts = [
        {"name": "app1", "host": "203.0.113.11", "privateAddress": "10.0.0.11",
         "hostKey": HOST_KEY, "backup": True},
        # same name, same SSH address, same private address as app1
        {"name": "app1", "host": "203.0.113.11", "privateAddress": "10.0.0.11",
         "hostKey": HOST_KEY, "backup": True},
        # no pinned key; a DNS name without a private address
        {"name": "app3", "host": "app3.example.com", "backup": True},
    ]
    found = problems(fleet(hosts=hosts, host="203.0.113.9"))
    assert found == [
        f"{P}.host: set it on each entry of hosts[] / balancers[], not on a fleet target",
        f"{P}.hosts: every host is a backup: at least one must not be",
        f"{P}.hosts[1].name: duplicate name 'app1' (also hosts[0])",
        f"{P}.hosts[1].host: 203.0.113.11:22 is also hosts[0]: each machine once",
        f"{P}.hosts[1].privateAddress: 10.0.0.11 is also hosts[0]'s: the balancer could "
        "not tell them apart",
        f"{P}.hosts[2].hostKey: the SSH host key must be pinned: set hostKey (get it with "
        "`ssh-keyscan -p 22 app3.example.com` and check its fingerprint on the host) or add "
        "it to the target's knownHostsFile",
        f"{P}.hosts[2].privateAddress: is required: 'app3.example.com' is not an IP address, "
        "and balancer traffic stays on the private network",
    ], found


def test_a_fleet_needs_ssh_and_at_least_one_host() -> None:
    found = problems({"targets": [{"name": "web", "kind": "host", "hosts": [],
                                   "balancers": [{"name": "lb", "host": "10.0.0.1",
                                                  "hostKey": HOST_KEY}]}]})
    assert f"{P}.connection: a fleet (hosts or balancers) is reached over SSH: set " \
        "connection: ssh" in found
    assert f"{P}.hosts: a fleet needs at least one application host" in found


def test_balancer_traffic_stays_on_a_private_network() -> None:
    balancers = [{"name": "lb1", "host": "93.184.216.34", "hostKey": HOST_KEY}]
    found = problems(fleet(balancers=balancers))
    assert found == [f"{P}.balancers[0].privateAddress: 93.184.216.34 is a public address: "
                     "balancer traffic is plain HTTP and must stay on a private network "
                     "(RFC 1918, ULA or loopback)"], found


def test_balancers_and_hosts_share_an_address_family() -> None:
    balancers = [{"name": "lb1", "host": "203.0.113.10", "privateAddress": "fd00::10",
                  "hostKey": HOST_KEY}]
    assert problems(fleet(balancers=balancers)) == [
        f"{P}.balancers: balancers and hosts mix IPv4 and IPv6 private addresses: a "
        "balancer could not reach every host"]


def test_max_unavailable_leaves_a_host_serving() -> None:
    assert problems(fleet(maxUnavailable=2)) == [
        f"{P}.maxUnavailable: 2 would drain every one of the 2 hosts that are not backups "
        "at once; at most 1"]


def test_private_port_collisions_are_reported() -> None:
    found = problems(fleet(privatePort=443))
    assert found == [f"{P}.privatePort: 443 is also httpsPort: a host may share its machine "
                     "with a balancer"], found
    hosts = [*fleet()["targets"][0]["hosts"][:2],
             {"name": "app3", "host": "10.0.0.13", "hostKey": HOST_KEY, "basePort": 8080}]
    found = problems(fleet(hosts=hosts))
    assert found == [f"{P}.hosts[2].basePort: instances 8080-8081 of app3 collide with "
                     "privatePort 8081"], found


def test_a_bad_host_key_names_the_entry() -> None:
    hosts = [*fleet()["targets"][0]["hosts"][:2],
             {"name": "app3", "host": "10.0.0.13", "hostKey": "ssh-ed25519 !!"}]
    (found,) = problems(fleet(hosts=hosts))
    assert found.startswith(f"{P}.hosts[2].hostKey: the key's base64 part does not decode")


def test_edge_routing_of_a_fleet_needs_a_balancer() -> None:
    config = fleet(balancers=[], weight=1)
    config.update(domain="api.example.com",
                  edge={"routing": "weighted", "zone": "example.com", "cdn": False})
    found = problems(config)
    assert f"{P}.balancers: edge routing of a fleet needs a balancer (its one origin); " \
        "without one, point DNS at every host yourself or list each host as a target of " \
        "its own" in found, found


ACME = {"mode": "acme", "acme": {"email": "ops@example.com",
                                 "server": "https://acme.example.com/dir"}}


def test_acme_on_a_fleet_proves_the_domain_by_dns_when_several_machines_answer_it() -> None:
    # Three hosts terminating TLS: a CA's HTTP-01 request could land on any of them.
    cfg = parse({**fleet(balancers=[]), "domain": "api.example.com", "tls": ACME})
    assert cfg.tls.acme.challenge == "dns-01-route53"
    # One balancer terminates TLS alone: HTTP-01 works.
    cfg = parse({**fleet(), "domain": "api.example.com", "tls": ACME})
    assert cfg.tls.acme.challenge == "http-01"
    tls = {**ACME, "acme": {**ACME["acme"], "challenge": "http-01"}}
    found = problems({**fleet(balancers=[]), "domain": "api.example.com", "tls": tls})
    assert found == ["gin-deploy:tls.acme.challenge: http-01 cannot issue 'api.example.com' "
                     "for web: 3 hosts answer(s) it, so the CA's request lands on any "
                     "target; use dns-01-route53 (the default for this stack)"], found


def test_a_fleet_releases_host_by_host_and_refuses_canaries_for_now() -> None:
    (target,) = parse(fleet(instances=3)).targets
    assert target.release.strategy == "rolling"  # not the canary of a 3-instance host
    assert target.candidate_ports == ()
    found = problems({**fleet(), "release": {"strategy": "canary"}})
    assert found == [f"{P}.release.strategy: canary is not supported on a fleet yet: a fleet "
                     "releases host by host (maxUnavailable at a time); set this target's "
                     "release.strategy to rolling"], found
    (target,) = parse({**fleet(release={"strategy": "rolling"}),
                       "release": {"strategy": "blueGreen"}}).targets
    assert target.release.strategy == "rolling"
