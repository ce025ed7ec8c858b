"""`kind: host`: the service on this machine or any VM, reached locally or over SSH."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from gin_deploy.config.checks import trusted_cidrs
from gin_deploy.config.fleet import (
    FleetBalancer,
    FleetHost,
    check_fleet,
    check_fleet_edge,
    check_fleet_release,
)
from gin_deploy.config.schema import (
    NAMESPACE,
    ParseContext,
    Problems,
    fill,
    require_secret,
    spec_field,
)
from gin_deploy.config.ssh_keys import (
    HostKey,
    HostKeyError,
    host_patterns,
    known_host_keys,
    parse_key,
)
from gin_deploy.config.target import TargetBase
from gin_deploy.render.nginx import UPSTREAM_KEEPALIVE_TIMEOUT_S

if TYPE_CHECKING:
    from gin_deploy.config.edge import EdgeConfig
    from gin_deploy.config.stack import StackConfig


@dataclass(frozen=True)
class HostTargetConfig(TargetBase):
    acme_certificates: ClassVar[bool] = True
    connection: str = spec_field("connection", "How to reach the host.", "local",
                                 choices=("local", "ssh"))
    host: str | None = spec_field("host", "SSH address (ssh only).", None)
    user: str | None = spec_field("user", "SSH user (ssh only).", None)
    ssh_port: int = spec_field("sshPort", "SSH port.", 22, min=1, max=65535)
    private_key: str | None = spec_field("privateKey", "SSH private key (must be a secret).", None)
    private_key_path: str | None = spec_field("privateKeyPath", "SSH private key file on the "
                                              "deploying machine.", None)
    host_key: str | None = spec_field(
        "hostKey", "The host's SSH public key line (`ssh-ed25519 AAAA...`), verified before "
        "anything is sent; get it with `ssh-keyscan -p <sshPort> <host>` and compare its "
        "`ssh-keygen -lf` fingerprint with the host's console (ssh only).", None)
    known_hosts_file: str | None = spec_field(
        "knownHostsFile", "A known_hosts file on the deploying machine whose entries for "
        "host (`[host]:port` unless port 22) are accepted (ssh only). hostKey or "
        "knownHostsFile is required: unknown host keys are refused.", None)
    instances: int = spec_field("instances", "Instances of the service on the host.", 2,
                                min=1, max=64)
    supervisor: str = spec_field("supervisor", "Process supervisor.", "supervisord",
                                 choices=("supervisord", "systemd"))
    # mode, httpPort and httpsPort are resolved at construction (see __post_init__),
    # stateDir by the stack parse (resolve).
    mode: str = spec_field("mode", "`user`: own nginx + supervisord as the login user on "
                           "unprivileged ports; `system`: system nginx and services. "
                           "Default: user for local, system for ssh.", None,
                           choices=("user", "system"))
    base_port: int = spec_field("basePort", "Loopback port of the first instance; the rest "
                                "follow.", 9080, min=1024, max=65535)
    http_port: int = spec_field("httpPort", "nginx HTTP port (default 8080 user mode, "
                                "80 system).", None, min=1, max=65535)
    https_port: int = spec_field("httpsPort", "nginx HTTPS port (default 8443 user mode, "
                                 "443 system).", None, min=1, max=65535)
    state_dir: str = spec_field("stateDir", "Where releases, configs and logs live on the "
                                "host (default: per stack under ~/.local/state for "
                                "user mode, /srv/gin-deploy/<app> for system).", None)
    install: bool = spec_field("install", "apt-get install missing nginx/supervisor/certbot "
                               "(Debian/Ubuntu hosts).", False)
    keep_releases: int = spec_field("keepReleases", "Releases kept for instant rollback.", 5,
                                    min=2, max=50)
    ready_timeout: int = spec_field("readyTimeout", "Seconds an instance may take to become "
                                    "ready in a rolling update.", 30, min=1, max=600)
    trusted_proxies: tuple[str, ...] = spec_field(
        "trustedProxies", "CIDRs of proxies in front of nginx whose X-Forwarded-For is "
        "trusted (e.g. a CDN).", (), check=trusted_cidrs)

    # A fleet (gin_deploy/config/fleet.py): several machines instead of `host`.
    hosts: tuple[FleetHost, ...] = spec_field(
        "hosts", "Application hosts of a fleet (ssh): each runs nginx and the instances; "
        "user, key, mode and ports are the target's. Instead of host.", ())
    balancers: tuple[FleetBalancer, ...] = spec_field(
        "balancers", "Dedicated balancer hosts of a fleet: their nginx terminates TLS and "
        "proxies to the hosts' private addresses, which answer only them. Empty: every "
        "host terminates TLS itself.", ())
    max_unavailable: int = spec_field("maxUnavailable", "Fleet hosts released (drained, "
                                      "deployed, rejoined) at a time.", 1, min=1, max=64)
    private_port: int = spec_field("privatePort", "With balancers: the port the hosts' nginx "
                                   "listens on at their private address (plain HTTP).", 8081,
                                   min=1, max=65535)

    @property
    def fleet(self) -> bool:
        return bool(self.hosts or self.balancers)

    @property
    def tls_terminators(self) -> int:
        # A fleet's balancers terminate TLS; without them, every host does.
        return len(self.balancers or self.hosts) or 1

    def __post_init__(self) -> None:
        fill(self, mode="user" if self.connection == "local" else "system")
        user = self.mode == "user"
        fill(self, http_port=8080 if user else 80, https_port=8443 if user else 443)

    def resolve(self, cfg: StackConfig) -> Self:
        local = self.connection == "local"
        if self.state_dir is not None:
            # `~` means the home of whoever deploys; on an SSH host the agent expands it.
            return replace(self, state_dir=str(Path(self.state_dir).expanduser())) \
                if local else self
        leaf = f"{cfg.project}-{cfg.stack}-{self.name}"
        if self.mode == "system":
            state_dir = f"/srv/gin-deploy/{leaf}"
        elif local:
            state_dir = str(Path("~/.local/state/gin-deploy").expanduser() / leaf)
        else:
            home = "/root" if self.user == "root" else f"/home/{self.user}"
            state_dir = f"{home}/.local/state/gin-deploy/{leaf}"
        return replace(self, state_dir=state_dir)

    @property
    def scale(self) -> int:
        # A fleet releases host by host (maxUnavailable): rolling unless told otherwise,
        # and told otherwise is refused until canaries span the fleet (check_fleet_release).
        return 1 if self.fleet else self.instances

    @property
    def instance_ports(self) -> tuple[int, ...]:
        return tuple(range(self.base_port, self.base_port + self.instances))

    @property
    def candidate_ports(self) -> tuple[int, ...]:
        """canary and blueGreen: where a new release starts beside the serving one (the
        ports after the instances'); none for rolling."""
        if self.release is None or self.release.strategy == "rolling":
            return ()
        first = self.base_port + self.instances
        return tuple(range(first, first + self.instances))

    @classmethod
    def check_kind(cls, cfg: StackConfig, members: Sequence[tuple[int, TargetBase]],
                   problems: Problems) -> None:
        idle = cfg.app.idle_timeout
        if idle <= UPSTREAM_KEEPALIVE_TIMEOUT_S:
            where = ", ".join(f"targets[{i}]" for i, _t in members)
            problems.add(f"{NAMESPACE}:app.idleTimeout", f"{idle}s must exceed nginx's "
                         f"upstream keepalive_timeout ({UPSTREAM_KEEPALIVE_TIMEOUT_S}s) on host "
                         f"targets ({where}): nginx, not the app, must close idle connections")
        for i, target in members:
            assert isinstance(target, HostTargetConfig)
            if target.fleet:
                check_fleet_release(target, f"{NAMESPACE}:targets[{i}]", problems)
            ports = target.candidate_ports
            if not ports:
                continue
            path = f"{NAMESPACE}:targets[{i}]"
            why = (f"{target.release.strategy} starts a new release beside the serving one on "
                   f"ports {ports[0]}-{ports[-1]} (basePort + instances .. + 2 x instances)")
            if ports[-1] > 65535 and target.instance_ports[-1] <= 65535:  # else said by check
                problems.add(f"{path}.basePort", f"too high: {why}, beyond 65535")
            for key, port in (("httpPort", target.http_port), ("httpsPort", target.https_port)):
                if port in ports:
                    problems.add(f"{path}.{key}", f"{port} collides with them: {why}")

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        if self.fleet:
            check_fleet(self, path, problems)
        elif self.connection == "ssh" and not self.host:
            problems.add(f"{path}.host", "is required when connection is ssh")
        if self.connection == "ssh" and not self.user:
            problems.add(f"{path}.user", "is required when connection is ssh")
        if self.connection == "ssh" and self.host and not self.fleet:
            self._check_host_keys(path, problems)
        if self.connection == "ssh":
            if self.private_key and self.private_key_path:
                problems.add(path, "set only one of privateKey, privateKeyPath")
            if not (self.private_key or self.private_key_path):
                problems.add(f"{path}.privateKey", "an SSH key is required for ssh: privateKey "
                             "(secret) or privateKeyPath")
        else:
            for name, value in (("host", self.host), ("user", self.user),
                                ("privateKey", self.private_key),
                                ("privateKeyPath", self.private_key_path),
                                ("hostKey", self.host_key),
                                ("knownHostsFile", self.known_hosts_file)):
                if value:
                    problems.add(f"{path}.{name}", "only applies to connection: ssh")
        if self.private_key:
            require_secret(ctx, path, "privateKey", problems)
        if self.private_key_path and not Path(self.private_key_path).expanduser().is_file():
            problems.add(f"{path}.privateKeyPath",
                         f"file {self.private_key_path!r} does not exist")
        if self.mode == "user" and self.supervisor == "systemd":
            problems.add(f"{path}.supervisor", "systemd needs mode: system (user mode runs its "
                         "own supervisord)")
        ports = {"httpPort": self.http_port, "httpsPort": self.https_port}
        if self.mode == "user":
            for key, port in ports.items():
                if port < 1024:
                    problems.add(f"{path}.{key}",
                                 f"{port} needs root; user mode needs a port >= 1024")
        if self.http_port == self.https_port:
            problems.add(f"{path}.httpsPort", "must differ from httpPort")
        instance_ports = self.instance_ports
        for key, port in ports.items():
            if port in instance_ports:
                problems.add(f"{path}.{key}", f"{port} collides with the instance ports "
                             f"{instance_ports[0]}-{instance_ports[-1]} (basePort + instances)")
        if instance_ports[-1] > 65535:
            problems.add(f"{path}.basePort", "basePort + instances exceeds 65535")

    def _check_host_keys(self, path: str, problems: Problems) -> None:
        # A deploy sends the release and its secrets: a host whose key is not pinned is
        # refused, never trusted on first use (first contact is where a MITM strikes).
        assert self.host
        scan = f"ssh-keyscan -p {self.ssh_port} {self.host}"
        if not (self.host_key or self.known_hosts_file):
            problems.add(f"{path}.hostKey", "the SSH host key must be pinned (hostKey or "
                         f"knownHostsFile): get it with `{scan}`, check its fingerprint "
                         "(`ssh-keygen -lf -` on that output) against the host's own "
                         "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, then set "
                         "hostKey to the `ssh-ed25519 AAAA...` part")
        if self.host_key:
            try:
                parse_key(self.host_key)
            except HostKeyError as exc:
                problems.add(f"{path}.hostKey", f"{exc} (get it with `{scan}`)")
        if self.known_hosts_file:
            file = Path(self.known_hosts_file).expanduser()
            if not file.is_file():
                problems.add(f"{path}.knownHostsFile",
                             f"file {self.known_hosts_file!r} does not exist")
            elif not known_host_keys(file, self.host, self.ssh_port):
                problems.add(f"{path}.knownHostsFile", f"{self.known_hosts_file!r} has no "
                             f"key for {host_patterns(self.host, self.ssh_port)} (add one: "
                             f"`{scan} >> {self.known_hosts_file}`, after checking its "
                             "fingerprint)")

    @property
    def host_keys(self) -> tuple[HostKey, ...]:
        """Every key the host may present (hostKey and knownHostsFile's entries)."""
        keys: list[HostKey] = []
        if self.host_key:
            keys.append(parse_key(self.host_key))
        if self.known_hosts_file and self.host:
            keys += known_host_keys(Path(self.known_hosts_file).expanduser(), self.host,
                                    self.ssh_port)
        return tuple(dict.fromkeys(keys))

    def check_edge(self, edge: EdgeConfig, domain: str, path: str, problems: Problems) -> None:
        super().check_edge(edge, domain, path, problems)
        if self.fleet:
            check_fleet_edge(self, path, problems)
        if self.connection != "ssh":
            problems.add(f"{path}.connection", "edge routing needs hosts reachable from "
                         "the internet: connection ssh with a public host address")
        if self.https_port != 443:
            problems.add(f"{path}.httpsPort", f"{self.https_port}: edge routing "
                         "sends users (and health checks) to port 443")
