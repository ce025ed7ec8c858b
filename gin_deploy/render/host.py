"""Every file a host target needs, rendered from plain values.

The nginx site (and, in user mode, the standalone nginx.conf around it), then either
supervisord's main config and programs or the systemd template unit. The result is the
files part of the agent's payload (gin_deploy.agent.payload), so what is rendered here is
exactly what the host receives. Pure: the HostTarget component calls it with values it
has resolved, tests and the benchmark with their own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from gin_deploy.agent.payload import NginxFiles, SupervisordFiles, SystemdFiles
from gin_deploy.render import nginx, supervisor, systemd

# How often an ACME target under supervisord (no timer there) runs certbot renew.
RENEW_INTERVAL_S = 12 * 3600
# The app's umask under supervisord: whatever it creates is its own only.
APP_UMASK = "077"


@dataclass(frozen=True)
class OriginLock:
    """Behind a CDN: only requests carrying `header: value` reach the app (else 403);
    `open_path` (the health check's, which cannot send headers) stays open."""

    header: str
    value: str
    open_path: str | None = None


@dataclass(frozen=True)
class HostService:
    """One app on one host, as its configuration files describe it."""

    app: str
    stack: str
    target: str
    state_dir: str
    mode: Literal["user", "system"]
    supervisor: Literal["supervisord", "systemd"]
    instance_ports: tuple[int, ...]
    http_port: int
    https_port: int
    server_names: tuple[str, ...]
    trusted_proxies: tuple[str, ...] = ()
    hsts_max_age: int = 63072000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    acme: bool = False  # serve the HTTP-01 challenge and keep certbot renewing
    shutdown_timeout: int = 10  # the app's drain time, seconds
    write_timeout: int = 30     # the longest the app may take to answer, seconds
    origin_lock: OriginLock | None = None
    project: str = ""  # with stack and app, names the host's system files
    # canary/blueGreen: where a new release starts beside the instances (its own ports,
    # programs or units running the `candidate` link, never started by the supervisor).
    candidate_ports: tuple[int, ...] = ()

    @property
    def system_name(self) -> str:
        """The stem of every file outside the state dir (system mode): project + stack + app,
        so two stacks on one host never share one."""
        parts = (self.project, self.stack, self.app)
        return "gin-deploy-" + "-".join(re.sub(r"[^A-Za-z0-9_.]", "_", p) for p in parts if p)

    @property
    def account(self) -> str:
        """System mode with supervisord: the unprivileged account the app runs as (a name
        of at most 32 characters, unique per system_name)."""
        app = re.sub(r"[^a-z0-9_-]", "-", self.app.lower())[:18]
        return f"gd-{app}-{hashlib.sha256(self.system_name.encode()).hexdigest()[:8]}"

    @property
    def group(self) -> str:
        """supervisord's group of the instances (the host's supervisord holds every
        target's programs in system mode)."""
        return self.system_name if self.mode == "system" else self.app


@dataclass(frozen=True)
class HostFiles:
    nginx: NginxFiles
    supervisord: SupervisordFiles | None
    systemd: SystemdFiles | None


def instance_name(app: str, port: int) -> str:
    return f"{app}-{port}"


def access_log_path(state_dir: str) -> str:
    """nginx's JSON access log: a release's requests are judged from it."""
    return str(PurePosixPath(state_dir) / "logs" / "nginx-access.log")


def candidate_share_dir(state_dir: str) -> str:
    """Where the agent puts the files that send requests to a release's candidates."""
    return str(PurePosixPath(state_dir) / "nginx" / "candidate-share")


def candidate_group(group: str) -> str:
    """supervisord: the group of a release's candidates, after the instances' group."""
    return f"{group}-candidates"


def candidate_unit_name(stem: str) -> str:
    """systemd: the candidates' template unit, `<stem>-candidate@<port>.service`, after
    the instances' `<stem>@.service` (the payload's system name)."""
    return f"{stem}-candidate"


def render_host_files(s: HostService,
                      upstreams: tuple[nginx.UpstreamServer, ...] = ()) -> HostFiles:
    """The nginx, supervisord or systemd files for `s`; behind a CDN the nginx site holds
    the origin lock's value, so a payload carrying these files must then be a secret.
    `upstreams`: a fleet's balancer proxies to these (its hosts), not to instances."""
    sd = PurePosixPath(s.state_dir)
    lock = s.origin_lock
    system = s.mode == "system"
    site = nginx.NginxSite(
        # The host's nginx holds every site's upstream and log format in one namespace.
        name=s.system_name if system else s.app,
        server_names=s.server_names,
        upstreams=upstreams or tuple(nginx.UpstreamServer(f"127.0.0.1:{p}")
                                     for p in s.instance_ports),
        candidate_upstreams=tuple(nginx.UpstreamServer(f"127.0.0.1:{p}")
                                  for p in s.candidate_ports),
        candidate_share_dir=candidate_share_dir(s.state_dir) if s.candidate_ports else None,
        tls_certificate=str(sd / "tls" / "server.crt"),
        tls_certificate_key=str(sd / "tls" / "server.key"),
        access_log=access_log_path(s.state_dir),
        error_log=str(sd / "logs" / "nginx-error.log"),
        http_port=s.http_port,
        https_port=s.https_port,
        trusted_proxies=s.trusted_proxies,
        # nginx waits for an answer as long as the app may take to give one.
        proxy_read_timeout_s=s.write_timeout,
        hsts_max_age=s.hsts_max_age,
        hsts_include_subdomains=s.hsts_include_subdomains,
        hsts_preload=s.hsts_preload,
        acme_webroot=str(sd / "acme" / "webroot") if s.acme else None,
        origin_verify_header=lock.header if lock else None,
        origin_verify_value=lock.value if lock else None,
        origin_verify_exempt_paths=(lock.open_path,) if lock and lock.open_path else (),
    )
    nginx_files = NginxFiles(
        http_port=s.http_port,
        https_port=s.https_port,
        site=nginx.render_site(site),
        main=nginx.render_main_config(
            site_include=str(sd / "nginx" / "site.conf"),
            pid_file=str(sd / "nginx" / "nginx.pid"),
            error_log=str(sd / "logs" / "nginx-error.log"),
            temp_dir=str(sd / "nginx" / "temp"),
        ) if s.mode == "user" else None,
    )
    # Stop waits exceed the app's drain so a stop never cuts a request short.
    stop_wait = s.shutdown_timeout + 5
    if s.supervisor == "systemd":
        def unit(name: str, link: str, what: str) -> str:
            return systemd.render_template_unit(systemd.SystemdService(
                name=name,
                description=f"{s.app} {what}(gin-deploy {s.stack}/{s.target}) on port %i",
                exec_start=str(sd / link / "app"),
                working_directory=str(sd / link),
                environment_file=str(sd / link / "app.env"),
                timeout_stop_s=stop_wait + 5,
            ))
        # The candidates' unit has the instances' sandbox; only the link it runs differs.
        candidate = unit(candidate_unit_name(s.system_name), "candidate", "candidate ") \
            if s.candidate_ports else None
        renew = systemd.render_renew_units(
            f"{s.system_name}-renew", f"certbot renew for {s.app} (gin-deploy {s.stack}/"
            f"{s.target})", f"/usr/bin/env python3 {sd}/bin/hostctl.py renew --state {sd}",
        ) if s.acme else None
        return HostFiles(nginx_files, None, SystemdFiles(
            unit=unit(s.app, "current", ""), candidate_unit=candidate,
            renew_service=renew.service if renew else None,
            renew_timer=renew.timer if renew else None))
    return HostFiles(nginx_files, _supervisord_files(s, sd, stop_wait), None)


def _supervisord_files(s: HostService, sd: PurePosixPath, stop_wait: int) -> SupervisordFiles:
    # Programs run the agent, which execs the current release: they never change
    # between releases (see gin_deploy/agent/supervisors.py).
    agent = str(sd / "bin" / "hostctl.py")
    system = s.mode == "system"

    def program(port: int, candidate: bool) -> supervisor.SupervisorProgram:
        name = instance_name(s.app, port)
        return supervisor.SupervisorProgram(
            name=name,
            command=f"/usr/bin/env python3 {agent} run --state {sd} --port {port} "
                    f"--name {name}" + (" --release candidate" if candidate else ""),
            directory=str(sd),
            stdout_log=str(sd / "logs" / f"{name}.log"),
            stderr_log=str(sd / "logs" / f"{name}.err.log"),
            stop_wait_s=stop_wait,
            # The host's supervisord runs as root: never the app (nor its candidates).
            user=s.account if system else None,
            umask=APP_UMASK if system else None,
            autostart=not candidate,
        )

    programs = [program(p, False) for p in s.instance_ports]
    if s.acme:
        # supervisord keeps the renewal loop alive (as root in system mode: certbot's files
        # and nginx's reload need it; the loop is our agent, not the app).
        programs.append(supervisor.SupervisorProgram(
            name=f"{s.system_name if system else s.app}-certbot-renew",
            command=f"/usr/bin/env python3 {agent} renew-loop --state {sd} "
                    f"--interval-seconds {RENEW_INTERVAL_S}",
            directory=str(sd),
            stdout_log=str(sd / "logs" / "certbot-renew.log"),
            stderr_log=str(sd / "logs" / "certbot-renew.err.log"),
        ))
    main = supervisor.render_main_config(
        state_dir=str(sd),
        socket_file=str(sd / "supervisor" / "supervisor.sock"),
        pid_file=str(sd / "supervisor" / "supervisord.pid"),
        log_file=str(sd / "logs" / "supervisord.log"),
        include=str(sd / "supervisor" / "programs.conf"),
    ) if s.mode == "user" else None
    text = supervisor.render_programs(s.group, tuple(programs))
    if s.candidate_ports:
        # Candidates run the `candidate` link, only while a release is judged: the agent
        # starts and stops them, supervisord never does by itself. A group of their own:
        # adding a program to a group makes `supervisorctl update` restart all of it.
        text += "\n" + supervisor.render_programs(
            candidate_group(s.group), tuple(program(p, True) for p in s.candidate_ports))
    return SupervisordFiles(programs=text, main=main, user=s.account if system else None)
