"""HostTarget: the service on a host (this machine or any VM) behind nginx with TLS.

The component renders every config file from plain values (gin_deploy.render),
then hands them with the binary to the host agent (gin_deploy/hostctl.py), which
installs the release, runs N instances under supervisord or systemd, restarts
them one at a time gated on readiness, rolls back on failure and reloads nginx
only after `nginx -t` passes. The same resources serve `connection: local` and
`connection: ssh`; only how files reach the host differs (HostConnection).
Behind edge routing nginx also answers the host's own name at the edge, and behind
a CDN it trusts CloudFront's client address and forwards only requests carrying
CloudFront's secret header (the deploy payload is then a Pulumi secret).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pulumi

from components.connection import HostConnection, SshEndpoint
from components.endpoint import EdgeOrigin
from gin_deploy.config import AppConfig, HostTargetConfig, TlsConfig
from gin_deploy.render import nginx, supervisor, systemd

AGENT_PATH = Path(__file__).resolve().parents[1] / "gin_deploy" / "hostctl.py"
RENEW_INTERVAL_S = 12 * 3600


@dataclass(frozen=True)
class HostTargetArgs:
    target: HostTargetConfig
    app: AppConfig
    domain: str
    tls: TlsConfig
    project: str
    stack: str
    version: str
    binary_path: str
    binary_sha256: pulumi.Input[str]
    project_dir: Path
    # Values of app.secretEnv by env name; passed to the host only as secrets.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    private_key: pulumi.Input[str] | None = None
    # Set by edge routing: extra names, and behind a CDN the origin lock.
    edge: EdgeOrigin | None = None


def default_state_dir(args: HostTargetArgs) -> str:
    t = args.target
    if t.state_dir:
        return str(Path(t.state_dir).expanduser()) if t.connection == "local" else t.state_dir
    leaf = f"{args.project}-{args.stack}-{t.name}"
    if t.mode == "system":
        return f"/srv/gin-deploy/{leaf}"
    if t.connection == "local":
        return str(Path("~/.local/state/gin-deploy").expanduser() / leaf)
    home = "/root" if t.user == "root" else f"/home/{t.user}"
    return f"{home}/.local/state/gin-deploy/{leaf}"


def instance_name(app: str, port: int) -> str:
    return f"{app}-{port}"


def server_names(args: HostTargetArgs) -> list[str]:
    """Names nginx and the certificate cover: the domain, localhost, edge names."""
    edge_names = args.edge.names if args.edge else ()
    return list(dict.fromkeys((args.domain, "localhost", *edge_names)))


def render_host_files(args: HostTargetArgs, state_dir: str,
                      origin_verify_value: str | None = None,
                      cdn_cidrs: Sequence[str] = ()) -> dict[str, Any]:
    """Every file the host needs, rendered from plain values.

    Without edge routing there are no secrets here; behind a CDN the nginx site holds
    the origin lock's value (`origin_verify_value`), so the payload must be a secret.
    """
    t, app, edge = args.target, args.app, args.edge
    sd = PurePosixPath(state_dir)
    acme = args.tls.mode == "acme"
    locked = edge is not None and edge.locked
    assert not locked or origin_verify_value is not None, "the origin lock needs its value"
    site = nginx.NginxSite(
        name=app.name,
        server_names=tuple(server_names(args)),
        upstreams=tuple(nginx.UpstreamServer(f"127.0.0.1:{p}") for p in t.instance_ports),
        tls_certificate=str(sd / "tls" / "server.crt"),
        tls_certificate_key=str(sd / "tls" / "server.key"),
        access_log=str(sd / "logs" / "nginx-access.log"),
        error_log=str(sd / "logs" / "nginx-error.log"),
        http_port=t.http_port,
        https_port=t.https_port,
        trusted_proxies=tuple(dict.fromkeys((*t.trusted_proxies, *cdn_cidrs))),
        hsts_max_age=args.tls.hsts.max_age,
        hsts_include_subdomains=args.tls.hsts.include_subdomains,
        hsts_preload=args.tls.hsts.preload,
        acme_webroot=str(sd / "acme" / "webroot") if acme else None,
        origin_verify_header=edge.verify_header if edge is not None and locked else None,
        origin_verify_value=origin_verify_value if locked else None,
        origin_verify_exempt_paths=(edge.open_path,)
        if edge is not None and locked and edge.open_path else (),
    )
    files: dict[str, Any] = {
        "nginx": {
            "httpPort": t.http_port,
            "httpsPort": t.https_port,
            "site": nginx.render_site(site),
            "main": nginx.render_main_config(
                site_include=str(sd / "nginx" / "site.conf"),
                pid_file=str(sd / "nginx" / "nginx.pid"),
                error_log=str(sd / "logs" / "nginx-error.log"),
                temp_dir=str(sd / "nginx" / "temp"),
            ) if t.mode == "user" else None,
        },
        "supervisord": None,
        "systemd": None,
    }
    # Stop waits exceed the app's drain so a stop never cuts a request short.
    stop_wait = app.shutdown_timeout + 5
    if t.supervisor == "supervisord":
        agent = str(sd / "bin" / "hostctl.py")
        programs = [
            supervisor.SupervisorProgram(
                name=instance_name(app.name, port),
                command=f"/usr/bin/env python3 {agent} run --state {sd} --port {port} "
                        f"--name {instance_name(app.name, port)}",
                directory=str(sd),
                stdout_log=str(sd / "logs" / f"{instance_name(app.name, port)}.log"),
                stderr_log=str(sd / "logs" / f"{instance_name(app.name, port)}.err.log"),
                stop_wait_s=stop_wait,
            )
            for port in t.instance_ports
        ]
        if acme and t.mode == "user":
            # No cron in user mode: supervisord keeps the renewal loop alive.
            programs.append(supervisor.SupervisorProgram(
                name=f"{app.name}-certbot-renew",
                command=f"/usr/bin/env python3 {agent} renew-loop --state {sd} "
                        f"--interval-seconds {RENEW_INTERVAL_S}",
                directory=str(sd),
                stdout_log=str(sd / "logs" / "certbot-renew.log"),
                stderr_log=str(sd / "logs" / "certbot-renew.err.log"),
            ))
        files["supervisord"] = {
            "main": supervisor.render_main_config(
                state_dir=str(sd),
                socket_file=str(sd / "supervisor" / "supervisor.sock"),
                pid_file=str(sd / "supervisor" / "supervisord.pid"),
                log_file=str(sd / "logs" / "supervisord.log"),
                include=str(sd / "supervisor" / "programs.conf"),
            ) if t.mode == "user" else None,
            "programs": supervisor.render_programs(app.name, tuple(programs)),
        }
    else:
        files["systemd"] = {
            "unit": systemd.render_template_unit(systemd.SystemdService(
                name=app.name,
                description=f"{app.name} (gin-deploy {args.stack}/{t.name}) on port %i",
                exec_start=str(sd / "current" / "app"),
                working_directory=str(sd / "current"),
                environment_file=str(sd / "current" / "app.env"),
                timeout_stop_s=stop_wait + 5,
            )),
        }
    return files


def app_env(app: AppConfig) -> dict[str, str]:
    """Plain env of every instance; nginx on loopback is its only trusted proxy."""
    env = {
        "GIN_MODE": "release",
        "SHUTDOWN_TIMEOUT": f"{app.shutdown_timeout}s",
        "TRUSTED_PROXIES": ",".join(app.trusted_proxies or ("127.0.0.1/32", "::1/128")),
    }
    env.update(app.env)
    return env


def release_id(version: str, binary_sha256: str, env: Mapping[str, str],
               secret_env: Mapping[str, str]) -> str:
    """Changes whenever the binary or any env value does; names the release dir."""
    digest = hashlib.sha256(binary_sha256.encode())
    digest.update(json.dumps([sorted(env.items()), sorted(secret_env.items())]).encode())
    safe_version = "".join(c if c.isalnum() or c in ".-_" else "_" for c in version)
    return f"{safe_version}-{digest.hexdigest()[:10]}"


class HostTarget(pulumi.ComponentResource):
    """The service on one host: releases, N instances, nginx + TLS, rolling updates."""

    url: pulumi.Output[str]
    ca_cert: str | None
    state_dir: str
    deploy: pulumi.CustomResource

    def __init__(self, name: str, args: HostTargetArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gin-deploy:host:HostTarget", name, None, opts)
        t = args.target
        self.state_dir = state_dir = default_state_dir(args)
        ssh = None
        if t.connection == "ssh":
            assert t.host and t.user and args.private_key is not None  # validated in config
            ssh = SshEndpoint(t.host, t.user, t.ssh_port, args.private_key)
        conn = HostConnection(
            name, self, ssh,
            staging_dir=f".cache/gin-deploy/{args.project}-{args.stack}-{t.name}",
        )

        ready = conn.prepare_staging()
        agent_sha = hashlib.sha256(AGENT_PATH.read_bytes()).hexdigest()
        agent_path, agent_deps = conn.stage_file("agent", str(AGENT_PATH), "hostctl.py",
                                                 agent_sha, ready)
        binary_path, binary_deps = conn.stage_file("binary", args.binary_path, "app",
                                                   args.binary_sha256, ready)

        edge = args.edge
        env = app_env(args.app)
        acme = args.tls.acme
        if args.tls.mode == "acme" and acme is not None:
            tls: dict[str, Any] = {
                "mode": "acme",
                "domains": list(dict.fromkeys(
                    (args.domain, *(edge.names if edge is not None else ())))),
                "email": acme.email,
                "server": acme.server,
                "caBundle": (args.project_dir / acme.ca_bundle).read_text()
                if acme.ca_bundle else None,
                "webroot": f"{state_dir}/acme/webroot",
                # http-01 | dns-01-route53 (certbot's Route 53 plugin: the agent's part).
                "challenge": acme.challenge,
            }
        else:
            tls = {"mode": "self-signed", "domains": server_names(args)}
        instances = [{"name": instance_name(args.app.name, p), "port": p}
                     for p in t.instance_ports]
        base = {
            "app": args.app.name,
            "stateDir": state_dir,
            "mode": t.mode,
            "supervisor": t.supervisor,
            "instances": instances,
        }

        def payload(values: list[Any]) -> str:
            sha, verify_value, cdn_cidrs = values
            files = render_host_files(args, state_dir, verify_value, cdn_cidrs or ())
            return json.dumps({
                **base,
                "release": {"id": release_id(args.version, sha, env, args.secret_env),
                            "binary": binary_path, "sha256": sha},
                "env": {**env, **args.secret_env},
                "secretEnvKeys": sorted(args.secret_env),
                "readyPath": args.app.ready_path,
                "readyTimeoutSeconds": t.ready_timeout,
                "keepReleases": t.keep_releases,
                "tls": tls,
                "install": t.install,
                **files,
            }, sort_keys=True)

        stdin: pulumi.Output[str] = pulumi.Output.all(
            args.binary_sha256,
            edge.verify_value if edge is not None else None,
            edge.cdn_cidrs if edge is not None else None,
        ).apply(payload)
        if args.secret_env or (edge is not None and edge.locked):
            # App secrets, or the origin lock's value in the nginx site.
            stdin = pulumi.Output.secret(stdin)
        sudo = "sudo -n " if t.mode == "system" and t.user not in (None, "root") \
            and not conn.is_local else ""
        agent = f"{sudo}{conn.python} {shlex.quote(agent_path)}"
        # destroy needs no secrets: its payload rides on the command line.
        destroy_payload = base64.b64encode(json.dumps(base, sort_keys=True).encode()).decode()
        self.deploy = conn.run(
            "deploy",
            create=f"{agent} deploy",
            delete=f"echo {destroy_payload} | base64 -d | {agent} destroy",
            stdin=stdin,
            depends_on=[*agent_deps, *binary_deps],
        )

        port = t.https_port
        host = "localhost" if t.connection == "local" and args.domain == "localhost" \
            else args.domain
        url = f"https://{host}{'' if port == 443 else f':{port}'}"
        # Resolves only once the deploy has finished, so consumers wait for it.
        self.url = self.deploy.id.apply(lambda _: url)
        self.ca_cert = f"{state_dir}/tls/ca.crt" if args.tls.mode == "self-signed" \
            else None
        self.register_outputs({"url": self.url, "caCert": self.ca_cert, "stateDir": state_dir})
