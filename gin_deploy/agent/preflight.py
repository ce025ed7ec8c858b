"""Before anything changes: the tools the target needs and the ports it will listen on."""

from __future__ import annotations

import os
from collections.abc import Sequence

from gin_deploy.agent.certs import have_cryptography
from gin_deploy.agent.network import port_free
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import AcmeTls, DeployPayload, NginxFiles
from gin_deploy.agent.processes import run_cmd, which

APT_PACKAGES = {
    "nginx": "nginx",
    "supervisord": "supervisor",
    "supervisorctl": "supervisor",
    "certbot": "certbot",
    "openssl": "openssl",
}


def required_tools(payload: DeployPayload) -> list[str]:
    tools = ["nginx"]
    if payload.supervisor == "supervisord":
        tools += ["supervisord", "supervisorctl"]
    else:
        tools.append("systemctl")
    if isinstance(payload.tls, AcmeTls):
        tools.append("certbot")
    if not have_cryptography():
        tools.append("openssl")
    return tools


def ensure_tools(payload: DeployPayload) -> None:
    missing = [t for t in required_tools(payload) if not which(t)]
    if not missing:
        return
    if not payload.install:
        raise HostError(f"{', '.join(missing)} not found on host; install "
                        f"{'it' if len(missing) == 1 else 'them'} or set install: true")
    apt = which("apt-get")
    if os.geteuid() != 0 or not apt:
        raise HostError(f"{', '.join(missing)} not found on host and install: true needs root "
                        "and apt-get; install them by hand")
    packages = sorted({APT_PACKAGES.get(t, t) for t in missing})
    log(f"installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_cmd([apt, "update", "-q"], "apt-get update", env=env, timeout=600)
    run_cmd([apt, "install", "-y", "-q", *packages], "apt-get install", env=env, timeout=1200)
    still = [t for t in missing if not which(t)]
    if still:
        raise HostError(f"{', '.join(still)} still not found after apt-get install")


def nginx_ports(nginx: NginxFiles) -> list[tuple[int, str] | tuple[int, str, str]]:
    """The ports nginx will listen on: both on every address, or (a fleet host behind
    balancers) plain HTTP on its private address only."""
    if nginx.listen_address is not None:
        return [(nginx.http_port, "nginx http", nginx.listen_address)]
    return [(nginx.http_port, "nginx http"), (nginx.https_port, "nginx https")]


def check_ports(ports: Sequence[tuple[int, str] | tuple[int, str, str]]) -> None:
    """Each (port, what[, the one address it will listen on]) must be free."""
    busy = [f"{p[0]} ({p[1]})" for p in ports
            if not port_free(p[0], *(p[2:] if len(p) == 3 else ()))]
    if busy:
        raise HostError(f"port {', '.join(busy)} already in use on the host; stop what uses it "
                        "or choose other ports")

