"""HostTarget: the service on a host (this machine or any VM) behind nginx with TLS.

The component renders every config file from plain values (gin_deploy.render.host),
then hands them with the binary to the host agent (gin_deploy.agent, shipped as one
zip archive), which installs the release, runs N instances under supervisord or
systemd, restarts them one at a time gated on readiness, rolls back on failure and
reloads nginx only after `nginx -t` passes. What crosses to the agent is a typed
payload (gin_deploy.agent.payload) serialised and parsed by the same code. The same
resources serve `connection: local` and `connection: ssh`; only how files reach the
host differs (HostConnection). Behind edge routing nginx also answers the host's own
name at the edge, and behind a CDN it trusts CloudFront's client address and forwards
only requests carrying CloudFront's secret header (the deploy payload is then a
Pulumi secret).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.connection import HostConnection, SshEndpoint
from components.endpoint import EdgeOrigin
from gin_deploy.agent.payload import (
    DeployPayload,
    Instance,
    Release,
    Rollout,
    TargetPayload,
    Tls,
    serialise,
)
from gin_deploy.render.host import (
    HostService,
    OriginLock,
    access_log_path,
    candidate_share_dir,
    instance_name,
    render_host_files,
)

STRATEGIES = ("rolling", "canary", "blueGreen")


@dataclass(frozen=True)
class HostRelease:
    """How a new version replaces the serving one on the host (see gin_deploy.agent.canary).

    canary and blueGreen start it on `HostService.candidate_ports`, which they need and
    rolling must not have."""

    strategy: str = "rolling"  # rolling | canary | blueGreen
    steps: tuple[int, ...] = (100,)  # percent of requests per step, ending at 100
    bake_seconds: int = 60  # per step; 0: no analysis
    max_error_rate: float = 0.01
    max_p95_ms: int = 500
    min_requests: int = 100


@dataclass(frozen=True)
class HostTargetArgs:
    """Everything a HostTarget needs, resolved: the program maps stack config to these."""

    service: HostService  # the files' inputs; the component adds edge routing's lock
    tls: Tls  # how the host gets its certificate (domains included)
    domain: str  # the URL's host
    env: Mapping[str, str]  # plain env of every instance
    ready_path: str
    ready_timeout: int  # seconds an instance may take to become ready
    keep_releases: int
    install: bool  # apt-get install missing tools on the host
    version: str
    binary_path: str  # on the deploying machine
    binary_sha256: pulumi.Input[str]
    agent_path: str  # the agent's zip archive on the deploying machine
    agent_sha256: str
    staging_dir: str  # SSH hosts: where uploads wait, relative to the login dir
    ssh: SshEndpoint | None = None  # None: this machine
    # Values of app.secretEnv by env name; passed to the host only as secrets.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    # Set by edge routing: behind a CDN the origin lock (names are in `service`).
    edge: EdgeOrigin | None = None
    release: HostRelease = field(default_factory=HostRelease)

    def __post_init__(self) -> None:
        strategy = self.release.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"release.strategy: {strategy!r} must be one of "
                             f"{' | '.join(STRATEGIES)}")
        beside = strategy != "rolling"
        if beside != bool(self.service.candidate_ports):
            raise ValueError(f"service.candidate_ports: release.strategy {strategy} "
                             f"{'needs' if beside else 'takes no'} candidate ports")
        if beside and len(self.service.candidate_ports) != len(self.service.instance_ports):
            raise ValueError("service.candidate_ports: as many as instance_ports")


def release_id(version: str, binary_sha256: str, env: Mapping[str, str],
               secret_env: Mapping[str, str]) -> str:
    """Changes whenever the binary, a plain env value or the set of secret names does; names
    the release dir. Secret values stay out of it (a short unkeyed hash of a PIN is
    recovered in seconds): the agent adds a keyed HMAC of them (releases.keyed_release)."""
    digest = hashlib.sha256(binary_sha256.encode())
    digest.update(json.dumps([sorted(env.items()), sorted(secret_env)]).encode())
    safe_version = "".join(c if c.isalnum() or c in ".-_" else "_" for c in version)
    return f"{safe_version}-{digest.hexdigest()[:10]}"


def target_payload(args: HostTargetArgs) -> TargetPayload:
    """What destroy and status need: no secrets, so it may ride on a command line."""
    s = args.service
    return TargetPayload(
        app=s.app, state_dir=s.state_dir, mode=s.mode, supervisor=s.supervisor,
        instances=tuple(Instance(instance_name(s.app, p), p) for p in s.instance_ports),
    )


def deploy_payload(args: HostTargetArgs, binary_on_host: str, binary_sha256: str,
                   verify_value: str | None = None,
                   cdn_cidrs: Sequence[str] = ()) -> DeployPayload:
    """The deploy payload once the binary's sha256 (and any origin lock) is known."""
    s = args.service
    edge = args.edge
    if edge is not None and edge.locked:
        assert edge.verify_header and verify_value is not None, "the origin lock needs both"
        s = dataclasses.replace(s, origin_lock=OriginLock(edge.verify_header, verify_value,
                                                          edge.open_path))
    if cdn_cidrs:
        s = dataclasses.replace(
            s, trusted_proxies=tuple(dict.fromkeys((*s.trusted_proxies, *cdn_cidrs))))
    files = render_host_files(s)
    target = target_payload(args)
    return DeployPayload(
        app=target.app, state_dir=target.state_dir, mode=target.mode,
        supervisor=target.supervisor, instances=target.instances,
        release=Release(id=release_id(args.version, binary_sha256, args.env, args.secret_env),
                        binary=binary_on_host, sha256=binary_sha256),
        nginx=files.nginx, supervisord=files.supervisord, systemd=files.systemd,
        tls=args.tls,
        env={**args.env, **args.secret_env},
        secret_env_keys=tuple(sorted(args.secret_env)),
        secret_values=(verify_value,) if s.origin_lock and verify_value else (),
        ready_path=args.ready_path,
        ready_timeout_seconds=args.ready_timeout,
        keep_releases=args.keep_releases,
        install=args.install,
        name=s.system_name if s.mode == "system" else None,
        rollout=rollout(args),
    )


def rollout(args: HostTargetArgs) -> Rollout:
    """The release's part of the payload: candidates and where their requests are logged."""
    s, r = args.service, args.release
    if r.strategy == "rolling":
        return Rollout()
    return Rollout(
        strategy="canary" if r.strategy == "canary" else "blueGreen",
        candidates=tuple(Instance(instance_name(s.app, p), p) for p in s.candidate_ports),
        steps=r.steps if r.strategy == "canary" else (100,), bake_seconds=r.bake_seconds,
        max_error_rate=r.max_error_rate, max_p95_ms=r.max_p95_ms,
        min_requests=r.min_requests, access_log=access_log_path(s.state_dir),
        share_dir=candidate_share_dir(s.state_dir))


class HostTarget(pulumi.ComponentResource):
    """The service on one host: releases, N instances, nginx + TLS, rolling updates."""

    url: pulumi.Output[str]
    ca_cert: str | None
    state_dir: str
    deploy: pulumi.CustomResource
    args: HostTargetArgs

    def __init__(self, name: str, args: HostTargetArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gin-deploy:host:HostTarget", name, None, opts)
        s = args.service
        self.args = args
        self.state_dir = s.state_dir
        conn = HostConnection(name, self, args.ssh, staging_dir=args.staging_dir)

        ready = conn.prepare_staging()
        # On the host the agent is <stateDir>/bin/hostctl.py; uploads keep that name too.
        agent_path, agent_deps = conn.stage_file("agent", args.agent_path, "hostctl.py",
                                                 args.agent_sha256, ready)
        binary_path, binary_deps = conn.stage_file("binary", args.binary_path, "app",
                                                   args.binary_sha256, ready)

        edge = args.edge

        def payload(values: list[Any]) -> str:
            sha, verify_value, cdn_cidrs = values
            return serialise(deploy_payload(args, binary_path, sha, verify_value,
                                            cdn_cidrs or ()))

        stdin: pulumi.Output[str] = pulumi.Output.all(
            args.binary_sha256,
            edge.verify_value if edge is not None else None,
            edge.cdn_cidrs if edge is not None else None,
        ).apply(payload)
        if args.secret_env or (edge is not None and edge.locked):
            # App secrets, or the origin lock's value in the nginx site.
            stdin = pulumi.Output.secret(stdin)
        sudo = "sudo -n " if s.mode == "system" and args.ssh is not None \
            and args.ssh.user != "root" else ""
        agent = f"{sudo}{conn.python} {shlex.quote(agent_path)}"
        # destroy needs no secrets: its payload rides on the command line.
        destroy_payload = base64.b64encode(serialise(target_payload(args)).encode()).decode()
        self.deploy = conn.run(
            "deploy",
            create=f"{agent} deploy",
            delete=f"echo {destroy_payload} | base64 -d | {agent} destroy",
            stdin=stdin,
            depends_on=[*agent_deps, *binary_deps],
        )

        port = s.https_port
        url = f"https://{args.domain}{'' if port == 443 else f':{port}'}"
        # Resolves only once the deploy has finished, so consumers wait for it.
        self.url = self.deploy.id.apply(lambda _: url)
        self.ca_cert = f"{s.state_dir}/tls/ca.crt" if args.tls.mode == "self-signed" else None
        self.register_outputs({"url": self.url, "caCert": self.ca_cert,
                               "stateDir": s.state_dir})
