"""What the program sends for a host fleet, defined once (see payload.py for the rules).

`FleetPayload` goes to the fleet's coordinator (`hostctl.py fleet-release`, run on the
deploying machine): every host's own `DeployPayload`, every balancer's `BalancerPayload`,
how to reach each over SSH, and the release's batch size. The coordinator sends each
host its `DeployPayload` and each balancer its `BalancerPayload` with the member list of
the step (gin_deploy/agent/fleet.py).

Python 3.9+ on the hosts: unions are spelt Optional[...].
"""

from dataclasses import dataclass, field
from typing import Optional

from gin_deploy.agent.payload import (
    NGINX_CONF_DIR,
    DeployPayload,
    Mode,
    NginxFiles,
    Tls,
    _abs_path,
    _in,
    _name,
    _state_dir,
    _text,
)
from gin_deploy.agent.wire import meta


@dataclass(frozen=True)
class Member:
    """One application host in a balancer's upstream."""

    name: str = field(metadata=meta(_name))
    address: str = field(metadata=meta(_text))  # private address:port, as nginx writes it
    weight: int = field(default=1, metadata=meta(_in(1, 1000)))
    backup: bool = False
    down: bool = False  # drained: nginx sends it nothing new


@dataclass(frozen=True)
class BalancerTarget:
    """A balancer on one host: what destroy needs (no secrets)."""

    app: str = field(metadata=meta(_name))
    state_dir: str = field(metadata=meta(_state_dir))
    mode: Mode
    # System mode: the site's file name stem in conf.d (None: the app's).
    name: Optional[str] = field(default=None, metadata=meta(_name))
    conf_dir: str = field(default=NGINX_CONF_DIR, metadata=meta(_abs_path, omit_default=True))


@dataclass(frozen=True)
class BalancerPayload:
    """The balancer's nginx site (TLS) and the hosts in its upstream at this step."""

    target: BalancerTarget
    nginx: NginxFiles
    tls: Tls
    upstream: str = field(metadata=meta(_name))  # the upstream block whose servers we set
    members: tuple[Member, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.target.mode == "user" and self.nginx.main is None:
            out.append(("nginx.main", "is required in user mode"))
        if len({m.name for m in self.members}) != len(self.members):
            out.append(("members", "must have unique names"))
        return out


@dataclass(frozen=True)
class SshHost:
    """How the coordinator reaches a machine: the pinned key, the staged agent."""

    host: str = field(metadata=meta(_text))
    port: int = field(metadata=meta(_in(1, 65535)))
    user: str = field(metadata=meta(_text))
    host_key: str = field(metadata=meta(_text))  # the pinned public key line
    agent: str = field(metadata=meta(_text))  # the staged hostctl.py, from the login dir
    sudo: bool = False


@dataclass(frozen=True)
class FleetHost:
    name: str = field(metadata=meta(_name))
    ssh: SshHost
    deploy: DeployPayload
    member: Member  # how the balancers see it (when there are balancers)


@dataclass(frozen=True)
class FleetBalancer:
    name: str = field(metadata=meta(_name))
    ssh: SshHost
    balancer: BalancerPayload  # members are set by the coordinator, step by step


@dataclass(frozen=True)
class FleetPayload:
    target: str = field(metadata=meta(_name))
    hosts: tuple[FleetHost, ...]
    balancers: tuple[FleetBalancer, ...] = ()
    max_unavailable: int = field(default=1, metadata=meta(_in(1, 1000)))
    private_key: str = field(default="", metadata=meta(_text))  # the SSH key (a secret)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not self.hosts:
            out.append(("hosts", "must not be empty"))
        names = [h.name for h in self.hosts] + [b.name for b in self.balancers]
        if len(set(names)) != len(names):
            out.append(("hosts", "hosts and balancers must have unique names"))
        return out
