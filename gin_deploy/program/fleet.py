"""`kind: host` targets with `hosts[]`: stack config -> HostFleet args.

Each machine gets the args a single SSH host target on it would get (program/host.py),
from the target with that machine's address, pinned key, ports and its own state dir
(`<stateDir>-<name>`) and staging dir, so two machines of one fleet may even share a
box. Balancers carry the edge's names and lock; the hosts behind them are no origins.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi

from components.build import GinBuild
from components.endpoint import EdgeOrigin, TargetEndpoint
from components.fleet import FleetMachineArgs, HostFleet, HostFleetArgs
from gin_deploy.config import NAMESPACE, HostTargetConfig, StackConfig
from gin_deploy.config.fleet import FleetMachine
from gin_deploy.config.ssh_keys import preferred
from gin_deploy.program.host_keys import check_host_key


def build_fleet(target: HostTargetConfig, cfg: StackConfig, build: GinBuild,
                edge: EdgeOrigin | None, agent: tuple[str, str]) -> TargetEndpoint:
    assert build.binary_path is not None and build.binary_sha256 is not None
    args = fleet_args(target, cfg, version=build.version, binary_path=build.binary_path,
                      binary_sha256=build.binary_sha256, agent=agent, edge=edge)
    fleet = HostFleet(target.name, args)
    # What `status` asks each host by (gin_deploy/status/hosts.py); no secrets.
    def machines(members: tuple[FleetMachineArgs, ...]) -> list[dict[str, Any]]:
        out = []
        for m in members:
            ssh, s = m.host.ssh, m.host.service
            assert ssh is not None
            out.append({"name": m.name, "host": ssh.host, "port": ssh.port, "user": ssh.user,
                        "hostKey": ssh.host_key, "stateDir": s.state_dir,
                        "sudo": s.mode == "system" and ssh.user != "root"})
        return out
    front = (target.balancers or target.hosts)[0]
    return TargetEndpoint(
        name=target.name, kind="host", url=fleet.url,
        origin_host=pulumi.Output.from_input(front.host), weight=target.weight,
        region=target.region, ca_cert=fleet.ca_cert,
        status={"connection": "fleet", "hosts": machines(args.hosts),
                "balancers": machines(args.balancers)},
    )


def fleet_args(target: HostTargetConfig, cfg: StackConfig, *, version: str, binary_path: str,
               binary_sha256: pulumi.Input[str], agent: tuple[str, str],
               edge: EdgeOrigin | None = None, probe_keys: bool = True) -> HostFleetArgs:
    """HostFleet's args for a fleet target; every machine's host key is checked first
    (program/host_keys.py) unless `probe_keys` is off."""
    from gin_deploy.program.host import host_target_args

    path = f"{NAMESPACE}:targets[{cfg.targets.index(target)}]"

    def machine(key: str, i: int, m: FleetMachine, base_port: int | None,
                origin: EdgeOrigin | None) -> FleetMachineArgs:
        pinned = list(m.keys(target))
        port = m.port(target)
        if probe_keys:
            check_host_key(f"{path}.{key}[{i}]", m.host, port, pinned)
        single = dataclasses.replace(
            target, host=m.host, ssh_port=port, host_key=preferred(pinned).line,
            known_hosts_file=None, base_port=base_port or target.base_port,
            state_dir=f"{target.state_dir}-{m.name}", hosts=(), balancers=())
        args = host_target_args(single, cfg, version=version, binary_path=binary_path,
                                binary_sha256=binary_sha256, agent_path=agent[0],
                                agent_sha256=agent[1], edge=origin,
                                key_path=f"{path}.{key}[{i}]")
        args = dataclasses.replace(args, staging_dir=f"{args.staging_dir}-{m.name}")
        if key == "balancers":
            # Its own name on the machine (system mode: conf.d file, upstream), so it may
            # share a machine with one of the hosts.
            args = dataclasses.replace(args, service=dataclasses.replace(
                args.service, app=f"{args.service.app}-balancer"))
        return FleetMachineArgs(name=m.name, host=args, private_address=m.address,
                                weight=getattr(m, "weight", 1),
                                backup=bool(getattr(m, "backup", False)))

    return HostFleetArgs(
        hosts=tuple(machine("hosts", i, h, h.base_port, None)
                    for i, h in enumerate(target.hosts)),
        balancers=tuple(machine("balancers", i, b, None, edge)
                        for i, b in enumerate(target.balancers)),
        max_unavailable=target.max_unavailable, private_port=target.private_port,
        agent_path=agent[0])
