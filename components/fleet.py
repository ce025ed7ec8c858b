"""HostFleet: one `kind: host` target on many machines, optionally behind balancers.

Per machine, what a single host gets over SSH (components/connection.py): a staging
directory, the agent's archive and (application hosts) the binary uploaded with the
pinned host key, and a command whose delete cleans the machine (`destroy` on a host,
`balancer-destroy` on a balancer). Then one release: a local command running the agent
as the fleet's coordinator (`hostctl.py fleet-release`, gin_deploy/agent/fleet.py), which
drains, deploys, readiness-gates and rejoins the hosts batch by batch and rolls the
released ones back when one fails. Its payload (every host's deploy payload, every
balancer's site, the SSH key) is a Pulumi secret; it re-runs whenever any of it changes.

A host removed from the config leaves the balancers in that release (the coordinator
puts only configured hosts back) and is cleaned afterwards: Pulumi deletes a removed
resource after the updates of the same `up`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command

from components.connection import HostConnection
from components.host import HostTargetArgs, deploy_payload, target_payload
from gin_deploy.agent.fleet_payload import (
    BalancerPayload,
    BalancerTarget,
    FleetBalancer,
    FleetHost,
    FleetPayload,
    Member,
    SshHost,
)
from gin_deploy.agent.payload import SelfSignedTls
from gin_deploy.agent.wire import dump
from gin_deploy.render.balancer import (
    host_port,
    member_upstreams,
    render_balancer_files,
    render_member_files,
    upstream_name,
)
from gin_deploy.render.host import OriginLock


@dataclass(frozen=True)
class FleetMachineArgs:
    """One machine of the fleet: what a single host target on it would get, plus its place
    in the fleet."""

    name: str
    host: HostTargetArgs  # ssh is always set
    private_address: str | None = None  # required with balancers
    weight: int = 1
    backup: bool = False


@dataclass(frozen=True)
class HostFleetArgs:
    hosts: tuple[FleetMachineArgs, ...]
    balancers: tuple[FleetMachineArgs, ...] = ()
    max_unavailable: int = 1
    private_port: int = 8081  # hosts' nginx behind balancers
    # The coordinator's archive on the deploying machine (relative to the project).
    agent_path: str = ""

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("hosts: a fleet needs at least one host")
        if any(m.host.ssh is None for m in (*self.hosts, *self.balancers)):
            raise ValueError("hosts: every machine of a fleet is reached over SSH")
        if self.balancers and any(m.private_address is None
                                  for m in (*self.hosts, *self.balancers)):
            raise ValueError("private_address: required on every machine with balancers")


def _sudo(args: HostTargetArgs) -> bool:
    return args.service.mode == "system" and args.ssh is not None and args.ssh.user != "root"


def _ssh(args: HostTargetArgs, agent: str) -> SshHost:
    assert args.ssh is not None
    return SshHost(host=args.ssh.host, port=args.ssh.port, user=args.ssh.user,
                   host_key=args.ssh.host_key, agent=agent, sudo=_sudo(args))


def balancer_target(m: FleetMachineArgs) -> BalancerTarget:
    s = m.host.service
    return BalancerTarget(app=s.app, state_dir=s.state_dir, mode=s.mode,
                          name=s.system_name if s.mode == "system" else None)


def balancer_payload(m: FleetMachineArgs, upstreams: Any, verify_value: str | None,
                     cdn_cidrs: Sequence[str]) -> BalancerPayload:
    """The balancer's site (with edge routing's lock and CDN ranges, as a host's)."""
    s, edge = m.host.service, m.host.edge
    if edge is not None and edge.locked:
        assert edge.verify_header and verify_value is not None
        s = dataclasses.replace(s, origin_lock=OriginLock(edge.verify_header, verify_value,
                                                          edge.open_path))
    if cdn_cidrs:
        s = dataclasses.replace(
            s, trusted_proxies=tuple(dict.fromkeys((*s.trusted_proxies, *cdn_cidrs))))
    return BalancerPayload(target=balancer_target(m), nginx=render_balancer_files(s, upstreams),
                           tls=m.host.tls, upstream=upstream_name(s))


def fleet_payload(name: str, args: HostFleetArgs, staged: dict[str, tuple[str, str]],
                  binary_sha256: str, private_key: str, verify_value: str | None,
                  cdn_cidrs: Sequence[str]) -> FleetPayload:
    """The coordinator's payload once the binary's sha256 and the key are known;
    `staged`: machine name -> (agent, binary) paths on it."""
    port = args.private_port
    balancer_ips = tuple(b.private_address for b in args.balancers if b.private_address)
    hosts = []
    for m in args.hosts:
        agent, binary = staged[m.name]
        payload = deploy_payload(m.host, binary, binary_sha256)
        assert m.host.ssh is not None
        address = m.private_address or m.host.ssh.host
        if args.balancers:
            assert m.private_address
            payload = dataclasses.replace(
                payload, nginx=render_member_files(m.host.service, m.private_address, port,
                                                   balancer_ips),
                # Not served (the balancers terminate TLS), but the agent keeps a CA.
                tls=SelfSignedTls(domains=(m.private_address,)))
        member = Member(name=m.name, address=host_port(address, port), weight=m.weight,
                        backup=m.backup)
        hosts.append(FleetHost(name=m.name, ssh=_ssh(m.host, agent), deploy=payload,
                               member=member))
    upstreams = member_upstreams(tuple((m.private_address or "", m.weight, m.backup)
                                       for m in args.hosts), port) if args.balancers else ()
    balancers = tuple(
        FleetBalancer(name=b.name, ssh=_ssh(b.host, staged[b.name][0]),
                      balancer=balancer_payload(b, upstreams, verify_value, cdn_cidrs))
        for b in args.balancers)
    return FleetPayload(target=name, hosts=tuple(hosts), balancers=balancers,
                        max_unavailable=args.max_unavailable, private_key=private_key)


class HostFleet(pulumi.ComponentResource):
    """The service on several hosts, released host by host, behind balancers or DNS."""

    url: pulumi.Output[str]
    release: pulumi.CustomResource
    ca_cert: str | None

    def __init__(self, name: str, args: HostFleetArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gin-deploy:fleet:HostFleet", name, None, opts)
        staged: dict[str, tuple[str, str]] = {}
        machines: list[pulumi.Resource] = []
        first = args.hosts[0].host
        for role, members in (("host", args.hosts), ("balancer", args.balancers)):
            for m in members:
                staged[m.name], made = self._machine(f"{name}-{m.name}", role, m)
                machines += made
        edge = next((b.host.edge for b in args.balancers if b.host.edge is not None), None)

        def payload(values: list[Any]) -> str:
            sha, key, verify_value, cdn_cidrs = values
            return json.dumps(dump(fleet_payload(name, args, staged, sha, key, verify_value,
                                                 cdn_cidrs or ())), sort_keys=True)

        ssh = first.ssh
        assert ssh is not None
        stdin: pulumi.Output[str] = pulumi.Output.all(
            first.binary_sha256, ssh.private_key,
            edge.verify_value if edge is not None else None,
            edge.cdn_cidrs if edge is not None else None,
        ).apply(payload)
        stdin = pulumi.Output.secret(stdin)
        release = f"python3 {shlex.quote(args.agent_path)} fleet-release"
        self.release = command.local.Command(
            f"{name}-release", create=release, update=release, stdin=stdin,
            opts=pulumi.ResourceOptions(parent=self, depends_on=machines,
                                        additional_secret_outputs=["stdout", "stderr"]))
        front = args.balancers[0].host if args.balancers else first
        port = front.service.https_port
        url = f"https://{front.domain}{'' if port == 443 else f':{port}'}"
        self.url = self.release.id.apply(lambda _: url)
        self.ca_cert = (f"{front.service.state_dir}/tls/ca.crt"
                        if front.tls.mode == "self-signed" else None)
        self.register_outputs({"url": self.url, "caCert": self.ca_cert})

    def _machine(self, name: str, role: str,
                 m: FleetMachineArgs) -> tuple[tuple[str, str], list[pulumi.Resource]]:
        """Staging, uploads and the cleanup command of one machine."""
        a = m.host
        conn = HostConnection(name, self, a.ssh, staging_dir=a.staging_dir)
        ready = conn.prepare_staging()
        agent, deps = conn.stage_file("agent", a.agent_path, "hostctl.py", a.agent_sha256,
                                      ready)
        binary = ""
        if role == "host":
            binary, binary_deps = conn.stage_file("binary", a.binary_path, "app",
                                                  a.binary_sha256, ready)
            deps += binary_deps
            wire = dump(target_payload(a))
            verb = "destroy"
        else:
            wire = dump(balancer_target(m))
            verb = "balancer-destroy"
        sudo = "sudo -n " if _sudo(a) else ""
        run = f"{sudo}{conn.python} {shlex.quote(agent)}"
        encoded = base64.b64encode(json.dumps(wire, sort_keys=True).encode()).decode()
        # Nothing to do on create (the release deploys); delete cleans the machine.
        cleanup = conn.run(role, create=f"test -r {shlex.quote(agent)}",
                           delete=f"echo {encoded} | base64 -d | {run} {verb}",
                           stdin="", depends_on=deps)
        return (agent, binary), [*deps, cleanup]
