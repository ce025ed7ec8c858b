"""nginx for host fleets: the balancers' public site and the hosts' private one.

A balancer's site is the single host's site (`render.nginx.NginxSite`: TLS, HSTS and
security headers, keepalive, `proxy_next_upstream` for idempotent requests, the client
address from `$remote_addr` only) whose upstream servers are the fleet's hosts at their
private addresses, with their weights, `backup`, and a passive health check
(`max_fails`/`fail_timeout`): a host that stops answering is skipped, and the failed
request retried on another. Which hosts are in the upstream, and which are drained
(`down`), changes with every step of a release: the agent rewrites the server lines of
the rendered site (gin_deploy.agent.balancer.with_members), so nginx -t checks exactly
what goes live.

A host's site behind balancers (`MemberSite`) listens on its private address only,
allows the balancers' addresses and denies every other peer, and takes the client
address from X-Forwarded-For only when a balancer sent it (`set_real_ip_from`). Pure.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from gin_deploy.agent.payload import NginxFiles
from gin_deploy.render._jinja import check_int, check_safe_path, make_environment
from gin_deploy.render.host import HostService, render_host_files
from gin_deploy.render.nginx import (
    UPSTREAM_KEEPALIVE_TIMEOUT_S,
    UpstreamServer,
    render_main_config,
)

# A host is taken out of the balancer's rotation after this many failed attempts within
# FAIL_TIMEOUT_S, for FAIL_TIMEOUT_S; retries land on the other hosts meanwhile.
MAX_FAILS = 2
FAIL_TIMEOUT_S = 5


def _ip(field: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} must be an IP address") from None


def host_port(address: str, port: int) -> str:
    """`address:port` as nginx writes it (IPv6 in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def member_upstreams(members: tuple[tuple[str, int, bool], ...],
                     port: int) -> tuple[UpstreamServer, ...]:
    """The balancer's upstream servers for (private address, weight, backup) hosts."""
    return tuple(UpstreamServer(host_port(a, port), weight=w, backup=b, max_fails=MAX_FAILS,
                                fail_timeout_s=FAIL_TIMEOUT_S) for a, w, b in members)


@dataclass(frozen=True)
class MemberSite:
    """nginx on a fleet host behind balancers."""

    name: str
    address: str  # the host's private address: the only one nginx listens on
    port: int
    balancers: tuple[str, ...]  # the balancers' private addresses: the only peers allowed
    upstreams: tuple[UpstreamServer, ...]  # the local instances
    access_log: str
    error_log: str
    client_max_body_size: str = "1m"
    client_timeout_s: int = 10
    upstream_keepalive: int = 32
    upstream_keepalive_requests: int = 1000
    upstream_keepalive_timeout_s: int = UPSTREAM_KEEPALIVE_TIMEOUT_S
    proxy_connect_timeout_s: int = 2
    proxy_read_timeout_s: int = 30
    next_upstream_tries: int = 3
    next_upstream_timeout_s: int = 10

    def __post_init__(self) -> None:
        if not re.search(r"[A-Za-z0-9]", self.name):
            raise ValueError(f"name: {self.name!r} must contain a letter or digit")
        _ip("address", self.address)
        check_int("port", self.port, minimum=1, maximum=65535)
        object.__setattr__(self, "balancers", tuple(self.balancers))
        if not self.balancers:
            raise ValueError("balancers: at least one balancer address is required")
        for b in self.balancers:
            _ip("balancers", b)
        object.__setattr__(self, "upstreams", tuple(self.upstreams))
        if not self.upstreams:
            raise ValueError("upstreams: at least one instance is required")
        check_safe_path("access_log", self.access_log)
        check_safe_path("error_log", self.error_log)
        for f in ("client_timeout_s", "upstream_keepalive", "upstream_keepalive_requests",
                  "upstream_keepalive_timeout_s", "proxy_connect_timeout_s",
                  "proxy_read_timeout_s", "next_upstream_tries", "next_upstream_timeout_s"):
            check_int(f, getattr(self, f), minimum=1)

    @property
    def ident(self) -> str:
        return re.sub(r"[^a-z0-9_]", "_", self.name.lower())

    @property
    def listen(self) -> str:
        return host_port(self.address, self.port)


_ENV = make_environment({})


def render_member_site(site: MemberSite) -> str:
    """The http{}-context site of a fleet host behind balancers."""
    return _ENV.get_template("nginx_member.conf.j2").render(site=site)


def site_name(s: HostService) -> str:
    """The name the site's nginx identifiers derive from (see render_host_files)."""
    return s.system_name if s.mode == "system" else s.app


def upstream_name(s: HostService) -> str:
    return re.sub(r"[^a-z0-9_]", "_", site_name(s).lower()) + "_backend"


def render_balancer_files(s: HostService, upstreams: tuple[UpstreamServer, ...]) -> NginxFiles:
    """A balancer's nginx: the public site of `s` (TLS, headers, origin lock) proxying to
    the fleet's hosts; the agent sets which are in rotation at each step."""
    return render_host_files(s, upstreams).nginx


def render_member_files(s: HostService, address: str, port: int,
                        balancers: tuple[str, ...]) -> NginxFiles:
    """A fleet host's nginx behind `balancers`: `s`'s instances on `address:port` only."""
    sd = PurePosixPath(s.state_dir)
    site = MemberSite(
        name=site_name(s), address=address, port=port, balancers=balancers,
        upstreams=tuple(UpstreamServer(f"127.0.0.1:{p}") for p in s.instance_ports),
        access_log=str(sd / "logs" / "nginx-access.log"),
        error_log=str(sd / "logs" / "nginx-error.log"),
        proxy_read_timeout_s=s.write_timeout,
    )
    main = render_main_config(
        site_include=str(sd / "nginx" / "site.conf"), pid_file=str(sd / "nginx" / "nginx.pid"),
        error_log=str(sd / "logs" / "nginx-error.log"), temp_dir=str(sd / "nginx" / "temp"),
    ) if s.mode == "user" else None
    # https_port is not served by a host behind balancers (listen_address says so).
    return NginxFiles(http_port=port, https_port=s.https_port if s.https_port != port
                      else port + 1, site=render_member_site(site), main=main,
                      listen_address=address)
