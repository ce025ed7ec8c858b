"""`kind: host` targets: stack config -> HostTarget args.

Defaults that depend on other settings (mode, ports, state dir) are resolved here, so
HostTarget receives concrete values only. The agent is built once per program run into
the project's build/ directory (gin_deploy.agent.bundle).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pulumi

from components.build import GinBuild
from components.certificate import ValidationRecords
from components.connection import SshEndpoint
from components.endpoint import EdgeOrigin, TargetEndpoint
from components.host import HostRelease, HostTarget, HostTargetArgs
from gin_deploy.agent import bundle
from gin_deploy.agent.payload import AcmeTls, SelfSignedTls, Tls
from gin_deploy.config import NAMESPACE, AppConfig, HostTargetConfig, StackConfig, TargetConfig
from gin_deploy.config.ssh_keys import preferred
from gin_deploy.program.fleet import build_fleet
from gin_deploy.program.host_keys import check_host_key
from gin_deploy.render.host import HostService


def build_host(target: TargetConfig, cfg: StackConfig, build: GinBuild,
               edge: EdgeOrigin | None = None, *,
               validation: ValidationRecords | None = None) -> TargetEndpoint:
    assert isinstance(target, HostTargetConfig)
    assert build.binary_path is not None and build.binary_sha256 is not None
    agent_path, agent_sha256 = build_agent(cfg.project_dir)
    if target.fleet:  # several machines: program/fleet.py
        return build_fleet(target, cfg, build, edge, (agent_path, agent_sha256))
    host = HostTarget(target.name, host_target_args(
        target, cfg, version=build.version, binary_path=build.binary_path,
        binary_sha256=build.binary_sha256, agent_path=agent_path, agent_sha256=agent_sha256,
        edge=edge,
    ))
    origin = target.host if target.connection == "ssh" and target.host else "localhost"
    args = host.args
    ssh = args.ssh
    status = {"stateDir": host.state_dir, "connection": target.connection,
              "sudo": args.service.mode == "system" and ssh is not None and ssh.user != "root"}
    if ssh is not None:
        status.update(host=ssh.host, user=ssh.user, port=ssh.port, hostKey=ssh.host_key)
    return TargetEndpoint(
        name=target.name, kind="host", url=host.url,
        origin_host=pulumi.Output.from_input(origin), weight=target.weight,
        region=target.region, ca_cert=host.ca_cert, status=status,
    )


def build_agent(project_dir: Path) -> tuple[str, str]:
    """The agent's zip archive in <project>/build/ (rewritten only when its code changed);
    returns its path relative to the project dir (the engine's cwd: the same in every
    checkout, so a teammate's `up` sees no change) and its sha256, the upload trigger."""
    out = project_dir / "build"
    out.mkdir(exist_ok=True)
    path, sha = bundle.build(str(out))
    return os.path.relpath(path, project_dir), sha


def host_target_args(target: HostTargetConfig, cfg: StackConfig, *, version: str,
                     binary_path: str, binary_sha256: pulumi.Input[str], agent_path: str,
                     agent_sha256: str, edge: EdgeOrigin | None = None,
                     key_path: str | None = None) -> HostTargetArgs:
    """HostTarget's args for one `kind: host` target of the stack."""
    mode = target.mode
    state_dir = target.state_dir   # resolved at parse time (gin_deploy/config/host.py)
    edge_names = edge.names if edge is not None else ()
    tls_mode, acme = cfg.tls.mode, cfg.tls.acme
    tls: Tls
    if tls_mode == "acme" and acme is not None:
        tls = AcmeTls(
            domains=tuple(dict.fromkeys((cfg.domain, *edge_names))),
            email=acme.email, server=acme.server,
            ca_bundle=(cfg.project_dir / acme.ca_bundle).read_text()
            if acme.ca_bundle else None,
            webroot=f"{state_dir}/acme/webroot",
            challenge="dns-01-route53" if acme.challenge == "dns-01-route53" else "http-01",
        )
    else:
        tls = SelfSignedTls(domains=server_names(cfg.domain, edge_names))
    ssh = None
    if target.connection == "ssh":
        assert target.host and target.user  # validated in config
        key = _private_key(target)
        assert key is not None  # validated in config
        pinned = list(target.host_keys)
        assert pinned  # validated in config
        if key_path is None:  # a fleet's machines were checked by program/fleet.py
            index = cfg.targets.index(target)
            check_host_key(f"{NAMESPACE}:targets[{index}]", target.host, target.ssh_port,
                           pinned)
        ssh = SshEndpoint(target.host, target.user, target.ssh_port, key,
                          host_key=preferred(pinned).line)
    return HostTargetArgs(
        service=HostService(
            app=cfg.app.name, stack=cfg.stack, target=target.name, state_dir=state_dir,
            project=cfg.project,
            mode="user" if mode == "user" else "system",
            supervisor="systemd" if target.supervisor == "systemd" else "supervisord",
            instance_ports=target.instance_ports,
            candidate_ports=target.candidate_ports,
            http_port=target.http_port, https_port=target.https_port,
            server_names=server_names(cfg.domain, edge_names),
            trusted_proxies=target.trusted_proxies,
            hsts_max_age=cfg.tls.hsts.max_age,
            hsts_include_subdomains=cfg.tls.hsts.include_subdomains,
            hsts_preload=cfg.tls.hsts.preload,
            acme=tls_mode == "acme",
            shutdown_timeout=cfg.app.shutdown_timeout,
            write_timeout=cfg.app.write_timeout,
        ),
        tls=tls, domain=cfg.domain, env=app_env(cfg.app), ready_path=cfg.app.ready_path,
        ready_timeout=target.ready_timeout, keep_releases=target.keep_releases,
        install=target.install, version=version, binary_path=binary_path,
        binary_sha256=binary_sha256, agent_path=agent_path, agent_sha256=agent_sha256,
        staging_dir=f".cache/gin-deploy/{cfg.project}-{cfg.stack}-{target.name}",
        ssh=ssh, secret_env=cfg.secret_env, edge=edge, release=host_release(target),
    )


def host_release(target: HostTargetConfig) -> HostRelease:
    r = target.release
    return HostRelease(strategy=r.strategy, steps=r.steps, bake_seconds=r.bake_seconds,
                       max_error_rate=r.max_error_rate, max_p95_ms=r.max_p95_ms,
                       min_requests=r.min_requests)


def server_names(domain: str, edge_names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Names nginx and the certificate cover: the domain, localhost, edge names."""
    return tuple(dict.fromkeys((domain, "localhost", *edge_names)))


def app_env(app: AppConfig) -> Mapping[str, str]:
    """Plain env of every instance; nginx on loopback is its only trusted proxy."""
    env = {
        "GIN_MODE": "release",
        "SHUTDOWN_TIMEOUT": f"{app.shutdown_timeout}s",
        "IDLE_TIMEOUT": f"{app.idle_timeout}s",
        "WRITE_TIMEOUT": f"{app.write_timeout}s",
        "TRUSTED_PROXIES": ",".join(app.trusted_proxies or ("127.0.0.1/32", "::1/128")),
    }
    env.update(app.env)
    return env


def _private_key(target: HostTargetConfig) -> pulumi.Output[str] | None:
    """The SSH key as a Pulumi secret, from secret config or a key file."""
    if target.private_key:
        return pulumi.Output.secret(target.private_key)
    if target.private_key_path:
        return pulumi.Output.secret(Path(target.private_key_path).expanduser().read_text())
    return None
