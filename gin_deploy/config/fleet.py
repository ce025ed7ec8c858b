"""Host fleets: one `kind: host` target, many machines (`hosts[]`), optionally behind
dedicated balancer hosts (`balancers[]`).

Every host shares the target's settings (user, key, mode, instances, ports); each entry
adds what differs per machine: its SSH address and pinned key, the private address the
balancer reaches it on, its weight and `backup`. With balancers, only they run the public
nginx (TLS); the application hosts' nginx listens on their private address and answers
the balancers alone. Without balancers every host terminates TLS itself, behind DNS.

The rules across the fleet (unique names and addresses, a host that is not a backup,
balancers that can reach the hosts, colliding ports) live here, on the classes, and are
called from `HostTargetConfig.check`, so they are reported with every other problem.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gin_deploy.config.checks import resource_name
from gin_deploy.config.schema import Problems, spec_field
from gin_deploy.config.ssh_keys import HostKey, HostKeyError, known_host_keys, parse_key

if TYPE_CHECKING:
    from gin_deploy.config.host import HostTargetConfig

# nginx's weight is unbounded; a ratio beyond 1:100 is a typo, not a plan.
MAX_WEIGHT = 100


def _ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"must be an IP address (the balancer's nginx names it), got {value!r}"
    return None


@dataclass(frozen=True)
class FleetMachine:
    """What every machine of a fleet has: a name, an SSH address, its pinned key."""

    name: str = spec_field("name", "Unique name within the target; prefixes its resources "
                           "and suffixes its stateDir.", check=resource_name)
    host: str = spec_field("host", "SSH address.")
    host_key: str | None = spec_field("hostKey", "The machine's SSH public key line; "
                                      "default: the target's knownHostsFile entry.", None)
    ssh_port: int | None = spec_field("sshPort", "SSH port (default: the target's).", None,
                                      min=1, max=65535)
    private_address: str | None = spec_field(
        "privateAddress", "IP address on the private network between balancers and hosts "
        "(default: host, when it is an IP).", None, check=_ip)

    def port(self, target: HostTargetConfig) -> int:
        return self.ssh_port if self.ssh_port is not None else target.ssh_port

    @property
    def address(self) -> str | None:
        """The private address, resolved (None: unknown, a problem with balancers)."""
        if self.private_address is not None:
            return self.private_address
        return self.host if _ip(self.host) is None else None

    def keys(self, target: HostTargetConfig) -> tuple[HostKey, ...]:
        """Every key the machine may present (hostKey and the knownHostsFile's entries)."""
        found: list[HostKey] = []
        if self.host_key:
            found.append(parse_key(self.host_key))
        if target.known_hosts_file:
            found += known_host_keys(Path(target.known_hosts_file).expanduser(), self.host,
                                     self.port(target))
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class FleetHost(FleetMachine):
    """One application host: nginx and the target's instances."""

    weight: int = spec_field("weight", "Share of the balancer's traffic relative to the "
                             "other hosts.", 1, min=1, max=MAX_WEIGHT)
    backup: bool = spec_field("backup", "Takes traffic only while every other host is "
                              "down.", False)
    base_port: int | None = spec_field(
        "basePort", "Loopback port of its first instance (default: the target's; for "
        "hosts sharing one machine).", None, min=1024, max=65535)


@dataclass(frozen=True)
class FleetBalancer(FleetMachine):
    """A dedicated balancer: the public nginx (TLS) proxying to the hosts."""


def check_fleet_edge(target: HostTargetConfig, path: str, problems: Problems) -> None:
    """Edge routing sends users to one origin per target: the fleet's balancer."""
    if not target.balancers:
        problems.add(f"{path}.balancers", "edge routing of a fleet needs a balancer (its "
                     "one origin); without one, point DNS at every host yourself or list "
                     "each host as a target of its own")


def check_fleet_release(target: HostTargetConfig, path: str, problems: Problems) -> None:
    """A fleet's release goes host by host; canary and blue/green steps across the fleet's
    hosts are not built yet (each host's canary would need the balancer's share)."""
    strategy = target.release.strategy if target.release is not None else "rolling"
    if strategy != "rolling":
        problems.add(f"{path}.release.strategy", f"{strategy} is not supported on a fleet "
                     "yet: a fleet releases host by host (maxUnavailable at a time); set "
                     "this target's release.strategy to rolling")


def check_fleet(target: HostTargetConfig, path: str, problems: Problems) -> None:
    """Every rule across a fleet's hosts and balancers, reported by key path."""
    hosts, balancers = target.hosts, target.balancers
    if target.connection != "ssh":
        problems.add(f"{path}.connection", "a fleet (hosts or balancers) is reached over "
                     "SSH: set connection: ssh")
    for key, value in (("host", target.host), ("hostKey", target.host_key)):
        if value:
            problems.add(f"{path}.{key}", "set it on each entry of hosts[] / balancers[], "
                         "not on a fleet target")
    if not hosts:
        problems.add(f"{path}.hosts", "a fleet needs at least one application host")
        return
    if all(h.backup for h in hosts):
        problems.add(f"{path}.hosts", "every host is a backup: at least one must not be")
    _unique(path, hosts, balancers, target, problems)
    known = target.known_hosts_file
    if known and not Path(known).expanduser().is_file():
        problems.add(f"{path}.knownHostsFile", f"file {known!r} does not exist")
    else:
        for key, machines in (("hosts", hosts), ("balancers", balancers)):
            for i, m in enumerate(machines):
                _check_keys(f"{path}.{key}[{i}]", m, target, problems)
    if balancers:
        _check_private_network(path, hosts, balancers, problems)
    primaries = sum(1 for h in hosts if not h.backup)
    if balancers and primaries > 1 and target.max_unavailable >= primaries:
        problems.add(f"{path}.maxUnavailable", f"{target.max_unavailable} would drain every "
                     f"one of the {primaries} hosts that are not backups at once; at most "
                     f"{primaries - 1}")
    _check_ports(path, target, problems)


def _unique(path: str, hosts: Sequence[FleetHost], balancers: Sequence[FleetBalancer],
            target: HostTargetConfig, problems: Problems) -> None:
    names: dict[str, str] = {}
    ssh: dict[tuple[str, int], str] = {}
    private: dict[str, str] = {}
    for key, machines in (("hosts", hosts), ("balancers", balancers)):
        for i, m in enumerate(machines):
            where = f"{key}[{i}]"
            if m.name in names:
                problems.add(f"{path}.{where}.name", f"duplicate name {m.name!r} (also "
                             f"{names[m.name]})")
            names.setdefault(m.name, where)
            # A balancer may share a machine with a host (and so its SSH address), but two
            # hosts (or two balancers) on one address would be deployed twice.
            endpoint = (m.host, m.port(target))
            same = ssh.get(endpoint)
            if same is not None and same.split("[")[0] == key:
                problems.add(f"{path}.{where}.host", f"{m.host}:{endpoint[1]} is also "
                             f"{same}: each machine once")
            ssh.setdefault(endpoint, where)
            if key == "hosts" and m.address is not None:
                if m.address in private:
                    problems.add(f"{path}.{where}.privateAddress", f"{m.address} is also "
                                 f"{private[m.address]}'s: the balancer could not tell them "
                                 "apart")
                private.setdefault(m.address, where)


def _check_keys(path: str, m: FleetMachine, target: HostTargetConfig,
                problems: Problems) -> None:
    scan = f"ssh-keyscan -p {m.port(target)} {m.host}"
    if m.host_key:
        try:
            parse_key(m.host_key)
        except HostKeyError as exc:
            problems.add(f"{path}.hostKey", f"{exc} (get it with `{scan}`)")
            return
    if not m.keys(target):
        problems.add(f"{path}.hostKey", "the SSH host key must be pinned: set hostKey (get it "
                     f"with `{scan}` and check its fingerprint on the host) or add it to the "
                     "target's knownHostsFile")


def _check_private_network(path: str, hosts: Sequence[FleetHost],
                           balancers: Sequence[FleetBalancer], problems: Problems) -> None:
    """Balancers reach every host on a private address of the same family."""
    families = set()
    for key, machines in (("balancers", balancers), ("hosts", hosts)):
        for i, m in enumerate(machines):
            where = f"{path}.{key}[{i}]"
            address = m.address
            if address is None:
                problems.add(f"{where}.privateAddress", f"is required: {m.host!r} is not an IP "
                             "address, and balancer traffic stays on the private network")
                continue
            ip = ipaddress.ip_address(address)
            if not (ip.is_private or ip.is_loopback):
                problems.add(f"{where}.privateAddress", f"{address} is a public address: "
                             "balancer traffic is plain HTTP and must stay on a private "
                             "network (RFC 1918, ULA or loopback)")
            families.add((ip.version, key, i))
    versions = {v for v, _k, _i in families}
    if len(versions) > 1:
        problems.add(f"{path}.balancers", "balancers and hosts mix IPv4 and IPv6 private "
                     "addresses: a balancer could not reach every host")


def _check_ports(path: str, target: HostTargetConfig, problems: Problems) -> None:
    private = target.private_port
    for key, port in (("httpPort", target.http_port), ("httpsPort", target.https_port)):
        if target.balancers and private == port:
            problems.add(f"{path}.privatePort", f"{private} is also {key}: a host may share "
                         "its machine with a balancer")
    for i, h in enumerate(target.hosts):
        base = h.base_port if h.base_port is not None else target.base_port
        ports = range(base, base + target.instances)
        where = f"{path}.hosts[{i}].basePort" if h.base_port is not None else f"{path}.basePort"
        if h.base_port is not None and ports[-1] > 65535:
            problems.add(where, "basePort + instances exceeds 65535")
        # The target's own basePort against http(s)Port is HostTargetConfig's rule.
        others = (("httpPort", target.http_port), ("httpsPort", target.https_port)) \
            if h.base_port is not None else ()
        if target.balancers:
            others = (("privatePort", private), *others)
        clash = [(k, p) for k, p in others if p in ports]
        for key, port in clash:
            problems.add(where, f"instances {ports[0]}-{ports[-1]} of {h.name} collide "
                         f"with {key} {port}")
