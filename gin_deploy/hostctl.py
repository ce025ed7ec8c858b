#!/usr/bin/env python3
"""gin-deploy host agent: installs and runs one Gin app stack on the host it runs on.

The Pulumi program copies this single file to the host and runs

    python3 hostctl.py <command> [options]  < payload.json

Standard library only (Python >= 3.9). ``cryptography`` is used for the
self-signed CA when importable, otherwise the ``openssl`` CLI. Progress goes to
stderr as ``hostctl: ...`` lines, the result to stdout as one JSON object.
Errors exit 1 with one message saying what failed and what to do. Values of
the env keys listed in ``secretEnvKeys`` are never printed (any output that
might quote them, such as log tails, is redacted).

Commands
    deploy        (payload) install a release, TLS, supervisor, rolling restart, nginx
    destroy       (payload: app, stateDir, mode, supervisor, instances) remove everything
    status        (payload, or --state DIR) current release and instance readiness
    run           --state DIR --port P --name N: exec the current release (supervisord program)
    reload-nginx  --state DIR: validate and reload this target's nginx (certbot deploy hook)
    renew         --state DIR [--force]: certbot renew (ACME targets); --force renews now
                  (certbot --force-renewal) even when the certificate is not due
    renew-loop    --state DIR --interval-seconds N: renew forever, every N seconds

Layout under ``stateDir`` (the Pulumi side renders configs with these paths):

    .gin-deploy                  marker: this directory belongs to gin-deploy
    .lock                        flock held by deploy/destroy/renew
    state.json                   what the last deploy did (mode, releases, instances, ...)
    bin/hostctl.py               copy of this agent (supervisord programs run it)
    releases/<id>/app            the release binary (0755)
    releases/<id>/env.json       the app environment, secrets included (0600)
    releases/<id>/app.env        systemd EnvironmentFile (0600, systemd only)
    current -> releases/<id>     relative symlink, switched atomically
    tls/server.crt, server.key   stable paths nginx uses (symlinks the agent maintains)
    tls/ca.crt, tls/ca.key       self-signed CA (10 years, created once; key 0600)
    tls/self-signed/             leaf issued by that CA for the domains + 127.0.0.1
    acme/{config,work,logs}      certbot directories; acme/ca-bundle.pem if caBundle was given
    logs/                        logs; an instance's logs are logs/<instance name>.* (e.g.
                                 hello-gin-9080.log, hello-gin-9080.err.log), quoted when it
                                 fails; logs/nginx-error.log
    nginx/nginx.conf             user mode: the standalone nginx.conf (payload nginx.main); it
                                 must ``include <stateDir>/nginx/site.conf;`` and set
                                 ``pid <stateDir>/nginx/nginx.pid;`` and not ``daemon off``
    nginx/site.conf              the site (payload nginx.site)
    nginx/temp/                  nginx temp paths
    supervisor/supervisord.conf  user mode: payload supervisord.main; pidfile
                                 <stateDir>/supervisor/supervisord.pid, socket
                                 <stateDir>/supervisor/supervisor.sock, includes programs.conf
    supervisor/programs.conf     payload supervisord.programs: one [program:<instance name>]
                                 per instance (optionally in a [group:...])

An instance's supervisord command is
``<python3> <stateDir>/bin/hostctl.py run --state <stateDir> --port <port> --name <name>``:
``run`` reads ``current/env.json``, sets PORT, BIND_ADDR=127.0.0.1 and INSTANCE_ID and
execs ``current/app``, so program definitions never change between releases. With
systemd the template unit ``<app>@.service`` (instance = port) uses
``ExecStart=<stateDir>/current/app`` and ``EnvironmentFile=<stateDir>/current/app.env``.

Payload: as the Pulumi side sends it (app, stateDir, mode, supervisor, release, env,
secretEnvKeys, instances, readyPath, readyTimeoutSeconds, keepReleases, nginx, supervisord,
systemd, tls, install). Optional extras: nginx.settleSeconds, nginx.confDir,
supervisord.confDir, systemd.unitDir; systemd.envFile may be omitted, and the agent then
renders app.env from env itself (PORT and BIND_ADDR are left to the unit).

Rolling restarts are paced so nginx's passive health check (max_fails/fail_timeout of the
upstream servers in the site, nginx's defaults when absent, or nginx.settleSeconds) has taken
a restarted instance back before the next one goes down; otherwise every upstream could be
marked failed at once and nginx would answer 502.

Set HOSTCTL_NO_CRYPTOGRAPHY=1 to force the openssl CLI path (tests).

System mode puts the site in ``/etc/nginx/conf.d/gin-deploy-<app>.conf``, the programs in
``/etc/supervisor/conf.d/gin-deploy-<app>.conf`` and the unit in
``/etc/systemd/system/<app>@.service`` (overridable: nginx.confDir, supervisord.confDir,
systemd.unitDir).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import fcntl
import glob
import hashlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

PREFIX = "hostctl:"
MARKER = ".gin-deploy"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
LOG_TAIL_LINES = 20
UNIT_OWNED_ENV = frozenset({"PORT", "BIND_ADDR"})
CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE_DAYS = 30
DAEMON_START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOMAIN_RE = re.compile(r"(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
# System directories a state dir must never be (destroy removes the state dir).
_FORBIDDEN_STATE_DIRS = frozenset(
    ["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
     "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/tmp"]
)


class HostError(Exception):
    """A failure to report to the caller: one message, exit code 1."""


# --------------------------------------------------------------------------- output


_secrets: list[str] = []


def set_secrets(values: Sequence[str]) -> None:
    """Remember secret values so every message we print has them masked."""
    _secrets[:] = sorted({v for v in values if v}, key=len, reverse=True)


def redact(text: str) -> str:
    for value in _secrets:
        text = text.replace(value, "***")
    return text


def log(message: str) -> None:
    print(f"{PREFIX} {redact(message)}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(redact(json.dumps(result, sort_keys=True)), flush=True)


# --------------------------------------------------------------------------- payload


@dataclass(frozen=True)
class Instance:
    name: str
    port: int


@dataclass(frozen=True)
class Release:
    id: str
    binary: str
    sha256: str


@dataclass(frozen=True)
class TlsSpec:
    mode: str  # "self-signed" | "acme"
    domains: tuple[str, ...]
    email: str = ""
    server: str = ""
    ca_bundle: str | None = None
    webroot: str = ""


@dataclass(frozen=True)
class NginxSpec:
    http_port: int
    https_port: int
    site: str
    main: str = ""
    conf_dir: str = "/etc/nginx/conf.d"
    settle_seconds: float | None = None  # None: derived from the site's upstream servers


@dataclass(frozen=True)
class SupervisordSpec:
    programs: str
    main: str = ""
    conf_dir: str = "/etc/supervisor/conf.d"


@dataclass(frozen=True)
class SystemdSpec:
    unit: str
    env_file: str | None  # None: the agent renders app.env from the payload env
    unit_dir: str = "/etc/systemd/system"


@dataclass(frozen=True)
class Payload:
    app: str
    state_dir: str
    mode: str  # "user" | "system"
    supervisor: str  # "supervisord" | "systemd"
    instances: tuple[Instance, ...]
    release: Release | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_env_keys: tuple[str, ...] = ()
    ready_path: str = "/readyz"
    ready_timeout: float = 30.0
    keep_releases: int = 5
    nginx: NginxSpec | None = None
    supervisord: SupervisordSpec | None = None
    systemd: SystemdSpec | None = None
    tls: TlsSpec | None = None
    install: bool = False


class _Fields:
    """Typed access to a JSON object that collects every problem with a field path."""

    def __init__(self, data: Any, where: str, errors: list[str]) -> None:
        self.where = where
        self.errors = errors
        if not isinstance(data, dict):
            self.fail("", "must be a JSON object")
            data = {}
        self.data: dict[str, Any] = data

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> None:
        name = self.path(key) if key else (self.where or "payload")
        self.errors.append(f"{name} {problem}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(self, key: str, default: str | None = None, *, allow_empty: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if default is None:
                self.fail(key, "is required")
                return ""
            return default
        if not isinstance(value, str) or (not value and not allow_empty):
            self.fail(key, "must be a non-empty string")
            return ""
        return value

    def choice(self, key: str, choices: Sequence[str], default: str | None = None) -> str:
        value = self.text(key, default)
        if value and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def abspath(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        if value and (not value.startswith("/") or "\0" in value or "\n" in value):
            self.fail(key, f"must be an absolute path (got {value!r})")
        return os.path.normpath(value) if value else value

    def local_path(self, key: str) -> str:
        """A path on this host; relative ones are taken from the working directory (over
        SSH: the login user's home, where files are staged)."""
        value = self.text(key)
        if value and ("\0" in value or "\n" in value):
            self.fail(key, f"must be a path (got {value!r})")
        return os.path.abspath(value) if value else value

    def integer(self, key: str, default: int | None = None, lo: int = 0, hi: int = 2**31) -> int:
        value = self.data.get(key, default)
        if value is None:
            self.fail(key, "is required")
            return lo
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(key, f"must be an integer in {lo}..{hi} (got {value!r})")
            return lo
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            self.fail(key, f"must be a number in {lo:g}..{hi:g} (got {value!r})")
            return default
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
            return default
        return value

    def obj(self, key: str, required: bool = False) -> _Fields | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        return _Fields(value, self.path(key), self.errors)

    def items(self, key: str, required: bool = True) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return []
        if not isinstance(value, list):
            self.fail(key, "must be a list")
            return []
        return value


def _parse_instances(f: _Fields, errors: list[str]) -> tuple[Instance, ...]:
    out: list[Instance] = []
    raw = f.items("instances")
    if not raw and "instances" in f.data:
        f.fail("instances", "must not be empty")
    for i, item in enumerate(raw):
        g = _Fields(item, f"instances[{i}]", errors)
        name = g.text("name")
        if name and not _NAME_RE.fullmatch(name):
            g.fail("name", f"must match [A-Za-z0-9][A-Za-z0-9_.-]* (got {name!r})")
        out.append(Instance(name=name, port=g.integer("port", lo=1, hi=65535)))
    if len({i.name for i in out}) != len(out):
        f.fail("instances", "must have unique names")
    if len({i.port for i in out}) != len(out):
        f.fail("instances", "must have unique ports")
    return tuple(out)


def _small_payload(f: _Fields, base: Payload) -> Payload:
    """destroy/status: only the directories of system files (and readyPath) beyond the base."""
    ready_path = f.text("readyPath", "/readyz")
    sd = f.obj("systemd")
    unit_dir = sd.abspath("unitDir", "/etc/systemd/system") if sd else None
    sup = f.obj("supervisord")
    sup_dir = sup.abspath("confDir", "/etc/supervisor/conf.d") if sup else None
    ng = f.obj("nginx")
    nginx_dir = ng.abspath("confDir", "/etc/nginx/conf.d") if ng else None
    if f.errors:
        raise HostError("invalid payload: " + "; ".join(f.errors))
    return dataclasses.replace(
        base,
        ready_path=ready_path,
        systemd=SystemdSpec("", "", unit_dir) if unit_dir else None,
        supervisord=SupervisordSpec("", "", sup_dir) if sup_dir else None,
        nginx=NginxSpec(0, 0, "", "", nginx_dir) if nginx_dir else None,
    )


def parse_payload(data: Any, command: str) -> Payload:
    """Validate the payload of `command` (deploy, destroy, status); HostError lists problems."""
    errors: list[str] = []
    f = _Fields(data, "", errors)
    app = f.text("app")
    if app and not _NAME_RE.fullmatch(app):
        f.fail("app", f"must match [A-Za-z0-9][A-Za-z0-9_.-]* (got {app!r})")
    state_dir = f.abspath("stateDir")
    if state_dir in _FORBIDDEN_STATE_DIRS:
        f.fail("stateDir", f"must be a dedicated directory, not {state_dir}")
    mode = f.choice("mode", ("user", "system"))
    supervisor = f.choice("supervisor", ("supervisord", "systemd"))
    if mode == "user" and supervisor == "systemd":
        f.fail("supervisor", "systemd needs mode system (user mode runs its own supervisord)")
    instances = _parse_instances(f, errors)
    if command != "deploy":
        return _small_payload(f, Payload(app=app, state_dir=state_dir, mode=mode,
                                         supervisor=supervisor, instances=instances))

    rel = f.obj("release", required=True)
    release = None
    if rel is not None:
        rid = rel.text("id")
        if rid and not _NAME_RE.fullmatch(rid):
            rel.fail("id", f"must match [A-Za-z0-9][A-Za-z0-9_.-]* (got {rid!r})")
        digest = rel.text("sha256").lower()
        if digest and not re.fullmatch(r"[0-9a-f]{64}", digest):
            rel.fail("sha256", "must be 64 hex digits")
        release = Release(id=rid, binary=rel.local_path("binary"), sha256=digest)

    env: dict[str, str] = {}
    raw_env = f.data.get("env", {})
    if not isinstance(raw_env, dict):
        f.fail("env", "must be an object of strings")
    else:
        for key, value in raw_env.items():
            if not _ENV_KEY_RE.fullmatch(key):
                f.fail("env", f"key {key!r} must match [A-Za-z_][A-Za-z0-9_]*")
            elif not isinstance(value, str) or "\0" in value:
                f.fail(f"env.{key}", "must be a string without NUL")
            else:
                env[key] = value
    secret_keys = f.items("secretEnvKeys", required=False)
    if not all(isinstance(k, str) for k in secret_keys):
        f.fail("secretEnvKeys", "must be a list of strings")
        secret_keys = []
    set_secrets([env[k] for k in secret_keys if k in env])

    ready_path = f.text("readyPath", "/readyz")
    if ready_path and not ready_path.startswith("/"):
        f.fail("readyPath", "must start with /")
    ready_timeout = f.number("readyTimeoutSeconds", 30.0, 0.5, 3600)
    keep = f.integer("keepReleases", 5, lo=1, hi=1000)

    nginx: NginxSpec | None = None
    n = f.obj("nginx", required=True)
    if n is not None:
        nginx = NginxSpec(
            http_port=n.integer("httpPort", lo=1, hi=65535),
            https_port=n.integer("httpsPort", lo=1, hi=65535),
            site=n.text("site"),
            main=n.text("main") if mode == "user" else n.text("main", "", allow_empty=True),
            conf_dir=n.abspath("confDir", "/etc/nginx/conf.d"),
            settle_seconds=(n.number("settleSeconds", 0.0, 0, 600) if n.has("settleSeconds")
                            else None),
        )
        if nginx.http_port == nginx.https_port:
            n.fail("httpsPort", "must differ from httpPort")

    supervisord: SupervisordSpec | None = None
    systemd: SystemdSpec | None = None
    if supervisor == "supervisord":
        s = f.obj("supervisord", required=True)
        if s is not None:
            supervisord = SupervisordSpec(
                programs=s.text("programs"),
                main=s.text("main") if mode == "user" else s.text("main", "", allow_empty=True),
                conf_dir=s.abspath("confDir", "/etc/supervisor/conf.d"),
            )
            defined = set(re.findall(r"^\s*\[program:([^\]\s]+)\]", supervisord.programs, re.M))
            for inst in instances:
                if supervisord.programs and inst.name not in defined:
                    s.fail("programs", f"has no [program:{inst.name}] section for that instance")
    elif supervisor == "systemd":
        s = f.obj("systemd", required=True)
        if s is not None:
            env_file = s.data.get("envFile")
            if env_file is not None and not isinstance(env_file, str):
                s.fail("envFile", "must be a string or null")
                env_file = None
            if env_file is None:
                bad = [k for k, v in env.items() if "\n" in v or "\r" in v]
                if bad:
                    f.fail("env", f"values of {', '.join(bad)} contain newlines, which a systemd "
                                  "EnvironmentFile cannot hold")
            systemd = SystemdSpec(unit=s.text("unit"), env_file=env_file,
                                  unit_dir=s.abspath("unitDir", "/etc/systemd/system"))

    tls = None
    t = f.obj("tls", required=True)
    if t is not None:
        tmode = t.choice("mode", ("self-signed", "acme"))
        domains = t.items("domains")
        if not domains or not all(isinstance(d, str) and d for d in domains):
            t.fail("domains", "must be a non-empty list of host names")
            domains = []
        for d in domains:
            if not (_DOMAIN_RE.fullmatch(d) or _is_ip(d)):
                t.fail("domains", f"has an invalid name {d!r}")
        if tmode == "acme":
            ca_bundle = t.data.get("caBundle")
            if ca_bundle is not None and not (isinstance(ca_bundle, str) and
                                              "BEGIN CERTIFICATE" in ca_bundle):
                t.fail("caBundle", "must be PEM text or null")
            tls = TlsSpec(tmode, tuple(domains), email=t.text("email"), server=t.text("server"),
                          ca_bundle=ca_bundle, webroot=t.abspath("webroot"))
        else:
            tls = TlsSpec(tmode, tuple(domains))

    install = f.flag("install", False)
    if errors:
        raise HostError("invalid payload: " + "; ".join(errors))
    return Payload(
        app=app, state_dir=state_dir, mode=mode, supervisor=supervisor, instances=instances,
        release=release, env=env, secret_env_keys=tuple(secret_keys), ready_path=ready_path,
        ready_timeout=ready_timeout, keep_releases=keep, nginx=nginx, supervisord=supervisord,
        systemd=systemd, tls=tls, install=install,
    )


def read_payload(stream: Any) -> Any:
    text = stream.read()
    if not text.strip():
        raise HostError("no JSON payload on stdin; pipe the payload into hostctl.py")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HostError(f"payload on stdin is not valid JSON: {exc}") from None


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Every path of one target, all under state_dir."""

    state_dir: str

    def p(self, *parts: str) -> str:
        return os.path.join(self.state_dir, *parts)

    marker = property(lambda self: self.p(MARKER))
    lock = property(lambda self: self.p(".lock"))
    state_file = property(lambda self: self.p("state.json"))
    bin_dir = property(lambda self: self.p("bin"))
    agent = property(lambda self: self.p("bin", "hostctl.py"))
    releases = property(lambda self: self.p("releases"))
    current = property(lambda self: self.p("current"))
    logs = property(lambda self: self.p("logs"))
    tls = property(lambda self: self.p("tls"))
    server_crt = property(lambda self: self.p("tls", "server.crt"))
    server_key = property(lambda self: self.p("tls", "server.key"))
    ca_crt = property(lambda self: self.p("tls", "ca.crt"))
    ca_key = property(lambda self: self.p("tls", "ca.key"))
    self_signed = property(lambda self: self.p("tls", "self-signed"))
    acme = property(lambda self: self.p("acme"))
    acme_ca_bundle = property(lambda self: self.p("acme", "ca-bundle.pem"))
    nginx_dir = property(lambda self: self.p("nginx"))
    nginx_conf = property(lambda self: self.p("nginx", "nginx.conf"))
    nginx_site = property(lambda self: self.p("nginx", "site.conf"))
    nginx_pid = property(lambda self: self.p("nginx", "nginx.pid"))
    nginx_temp = property(lambda self: self.p("nginx", "temp"))
    nginx_error_log = property(lambda self: self.p("logs", "nginx-error.log"))
    supervisor_dir = property(lambda self: self.p("supervisor"))
    supervisord_conf = property(lambda self: self.p("supervisor", "supervisord.conf"))
    programs_conf = property(lambda self: self.p("supervisor", "programs.conf"))
    supervisor_sock = property(lambda self: self.p("supervisor", "supervisor.sock"))
    supervisord_pid = property(lambda self: self.p("supervisor", "supervisord.pid"))

    def acme_dir(self, kind: str) -> str:
        return self.p("acme", kind)

    def release_dir(self, rid: str) -> str:
        return self.p("releases", rid)

    def release_app(self, rid: str) -> str:
        return self.p("releases", rid, "app")

    def release_env(self, rid: str) -> str:
        return self.p("releases", rid, "env.json")

    def release_app_env(self, rid: str) -> str:
        return self.p("releases", rid, "app.env")


def load_state(layout: Layout) -> dict[str, Any]:
    try:
        with open(layout.state_file, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(layout: Layout, state: dict[str, Any]) -> None:
    write_file(layout.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644)


# --------------------------------------------------------------------------- files


def write_file(path: str, data: str | bytes, mode: int = 0o644) -> bool:
    """Atomically write `data` with `mode`; return False when it was already so."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            if fh.read() == raw and (st.st_mode & 0o7777) == mode:
                return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)
    return True


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def atomic_symlink(target: str, link: str) -> None:
    """Point `link` at `target` in one rename, so readers never see it missing."""
    tmp = f"{link}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError as exc:
        os.unlink(tmp)
        raise HostError(f"cannot replace {link}: {exc}; remove it by hand") from None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tail_lines(path: str, n: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-n:]


@contextlib.contextmanager
def state_lock(layout: Layout) -> Iterator[None]:
    """Hold <stateDir>/.lock; fail at once when another operation holds it."""
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise HostError(
                f"another gin-deploy operation holds {layout.lock}; wait for it to finish "
                "and retry"
            ) from None
        yield
    finally:
        os.close(fd)


def ensure_state_dir(layout: Layout) -> None:
    """Create the state dir, refusing to take over a non-empty directory that is not ours."""
    d = layout.state_dir
    if os.path.isdir(d) and os.listdir(d) and not os.path.exists(layout.marker):
        raise HostError(
            f"stateDir {d} exists, is not empty and has no {MARKER} marker; "
            "choose an empty or new directory"
        )
    os.makedirs(d, mode=0o755, exist_ok=True)
    if not os.path.exists(layout.marker):
        write_file(layout.marker, "gin-deploy state directory; destroy removes it\n")
    for sub in (layout.bin_dir, layout.releases, layout.logs, layout.tls):
        os.makedirs(sub, mode=0o755, exist_ok=True)


# --------------------------------------------------------------------------- processes


def which(name: str) -> str | None:
    """Find a tool on PATH, in the sbin dirs (often missing for non-root) or beside python."""
    extra = [*SBIN_DIRS, os.path.dirname(os.path.abspath(sys.executable))]
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *extra])
    return shutil.which(name, path=path)


def tool(name: str) -> str:
    found = which(name)
    if not found:
        raise HostError(f"{name} not found on host; install it or set install: true")
    return found


def run_cmd(
    args: Sequence[str],
    what: str,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived command with captured output; HostError quoting it on failure."""
    try:
        proc = subprocess.run(
            list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=env, timeout=timeout, check=False,
        )
    except FileNotFoundError:
        raise HostError(f"{args[0]} not found on host; install it or set install: true") from None
    except subprocess.TimeoutExpired:
        raise HostError(f"{what} did not finish within {timeout:g}s ({' '.join(args)})") from None
    if check and proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise HostError(f"{what} failed (exit {proc.returncode}): {output or 'no output'}")
    return proc


def start_daemon(args: Sequence[str], what: str, timeout: float = DAEMON_START_TIMEOUT) -> None:
    """Run a self-daemonizing server. Its output goes to a file, never to our pipes, so the
    caller (pulumi over SSH) is not kept waiting by the daemon holding stdout open."""
    with tempfile.TemporaryFile(mode="w+") as out:
        try:
            proc = subprocess.run(
                list(args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise HostError(f"{what} did not return within {timeout:g}s; it must daemonize "
                            "(no 'daemon off' / 'nodaemon=true' in its config)") from None
        out.seek(0)
        output = out.read().strip()
    if proc.returncode != 0:
        raise HostError(f"{what} failed to start (exit {proc.returncode}): {output}")


def read_pid(path: str) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        pid = int(text.strip())
    except ValueError:
        return None
    return pid if pid > 0 else None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    stat = read_text(f"/proc/{pid}/stat")
    return not (stat and stat.rsplit(")", 1)[-1].split()[:1] == ["Z"])


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_pid(pid: int, sig: int, what: str, timeout: float) -> None:
    """Send `sig`, wait; escalate to SIGTERM then SIGKILL."""
    for s, t in ((sig, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, s)
        if wait_until(lambda: not pid_alive(pid), t):
            return
        log(f"{what} (pid {pid}) still running; sending {signal.Signals(s).name}")


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, exe, cmdline) for every process we can see."""
    table: dict[int, tuple[int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = read_text(f"/proc/{pid}/stat")
        if not stat:
            continue
        try:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = ""
        table[pid] = (ppid, exe, cmdline)
    return table


def children_of(pid: int) -> list[int]:
    return [p for p, (ppid, _exe, _cmd) in _proc_table().items() if ppid == pid]


def target_processes(layout: Layout) -> list[int]:
    """Processes belonging to this target (its binaries, its nginx/supervisord and children)."""
    table = _proc_table()
    me = os.getpid()
    ancestors = set()
    p = me
    while p in table and p not in ancestors:
        ancestors.add(p)
        p = table[p][0]
    prefix = layout.state_dir.rstrip("/") + "/"
    needles = (layout.nginx_conf, layout.supervisord_conf, f"--state {layout.state_dir} ",
               f"--state {layout.state_dir}/ ")
    roots = set()
    for pid, (_ppid, exe, cmdline) in table.items():
        if pid in ancestors:
            continue
        if exe.startswith(prefix) or any(n in cmdline + " " for n in needles):
            roots.add(pid)
    # Add descendants (nginx workers, app children).
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _exe, _cmd) in table.items():
            if ppid in found and pid not in found and pid not in ancestors:
                found.add(pid)
                changed = True
    return sorted(found)


def kill_processes(pids: Sequence[int]) -> None:
    """SIGTERM `pids`, then SIGKILL whatever is still alive after 5 seconds."""
    for pid in pids:
        log(f"stopping leftover process {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not any(pid_alive(p) for p in pids), 5.0):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 5.0)


# --------------------------------------------------------------------------- network


def port_free(port: int) -> bool:
    """True when nothing listens on `port` (checked on 127.0.0.1 and 0.0.0.0)."""
    for host in ("127.0.0.1", "0.0.0.0"):  # noqa: S104 - probing, not serving
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def instance_url(inst: Instance, path: str) -> str:
    return f"http://127.0.0.1:{inst.port}{path}"


def probe(url: str, timeout: float = 1.0) -> bool:
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if probe(url, timeout=min(1.0, max(0.1, deadline - time.monotonic()))):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


# --------------------------------------------------------------------------- preflight


APT_PACKAGES = {
    "nginx": "nginx",
    "supervisord": "supervisor",
    "supervisorctl": "supervisor",
    "certbot": "certbot",
    "openssl": "openssl",
}


def have_cryptography() -> bool:
    if os.environ.get("HOSTCTL_NO_CRYPTOGRAPHY"):
        return False
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def required_tools(payload: Payload) -> list[str]:
    tools = ["nginx"]
    if payload.supervisor == "supervisord":
        tools += ["supervisord", "supervisorctl"]
    else:
        tools.append("systemctl")
    if payload.tls and payload.tls.mode == "acme":
        tools.append("certbot")
    if not have_cryptography():
        tools.append("openssl")
    return tools


def ensure_tools(payload: Payload) -> None:
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


def check_ports(ports: Sequence[tuple[int, str]]) -> None:
    busy = [f"{port} ({what})" for port, what in ports if not port_free(port)]
    if busy:
        raise HostError(f"port {', '.join(busy)} already in use on the host; stop what uses it "
                        "or choose other ports")


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class CertInfo:
    sans: frozenset[str]  # "DNS:name" / "IP:addr"
    not_after: datetime.datetime  # UTC, aware


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def wanted_sans(domains: Sequence[str]) -> frozenset[str]:
    sans = {("IP:" if _is_ip(d) else "DNS:") + d.lower().rstrip(".") for d in domains}
    sans.add("IP:127.0.0.1")
    return frozenset(sans)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - runs on Python 3.9


class CertTool:
    """Creates the self-signed CA and leaf certificates."""

    def create_ca(self, cert: str, key: str, common_name: str) -> None:
        raise NotImplementedError

    def create_leaf(self, ca_cert: str, ca_key: str, cert: str, key: str,
                    sans: frozenset[str], days: int) -> None:
        raise NotImplementedError

    def inspect(self, cert: str) -> CertInfo:
        raise NotImplementedError


class CryptographyCertTool(CertTool):
    def create_ca(self, cert: str, key: str, common_name: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        pkey = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _utcnow()
        ski = x509.SubjectKeyIdentifier.from_public_key(pkey.public_key())
        crt = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(pkey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(pkey, hashes.SHA256())
        )
        write_file(key, pkey.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
        write_file(cert, crt.public_bytes(serialization.Encoding.PEM), 0o644)

    def create_leaf(self, ca_cert: str, ca_key: str, cert: str, key: str,
                    sans: frozenset[str], days: int) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        with open(ca_cert, "rb") as fh:
            ca = x509.load_pem_x509_certificate(fh.read())
        with open(ca_key, "rb") as fh:
            ca_pkey = serialization.load_pem_private_key(fh.read(), password=None)
        pkey = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for san in sorted(sans):
            kind, _, value = san.partition(":")
            if kind == "IP":
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            else:
                names.append(x509.DNSName(value))
        first = next((s.partition(":")[2] for s in sorted(sans) if s.startswith("DNS:")),
                     "localhost")
        now = _utcnow()
        crt = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
            .issuer_name(ca.subject).public_key(pkey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pkey.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(ca_pkey, hashes.SHA256())  # type: ignore[arg-type]
        )
        write_file(key, pkey.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
        write_file(cert, crt.public_bytes(serialization.Encoding.PEM), 0o644)

    def inspect(self, cert: str) -> CertInfo:
        from cryptography import x509

        with open(cert, "rb") as fh:
            crt = x509.load_pem_x509_certificate(fh.read())
        sans: set[str] = set()
        try:
            ext = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans.update("DNS:" + n.lower() for n in ext.get_values_for_type(x509.DNSName))
            sans.update("IP:" + str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            pass
        not_after = getattr(crt, "not_valid_after_utc", None)  # cryptography >= 42
        if not_after is None:
            not_after = crt.not_valid_after.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017
        return CertInfo(frozenset(sans), not_after)


class OpensslCertTool(CertTool):
    """Fallback when cryptography is not importable: the openssl CLI (1.1.1 or newer)."""

    def _cnf(self, workdir: str, cn: str, sans: frozenset[str] = frozenset()) -> str:
        alt = ",".join(f"{'IP' if s.startswith('IP:') else 'DNS'}:{s.partition(':')[2]}"
                       for s in sorted(sans)) or "DNS:localhost"
        text = (
            "[req]\ndistinguished_name = dn\nprompt = no\n"
            f"[dn]\nCN = {cn}\n"
            "[ca_ext]\nbasicConstraints = critical,CA:TRUE,pathlen:0\n"
            "keyUsage = critical,digitalSignature,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "[leaf_ext]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = {alt}\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n"
        )
        path = os.path.join(workdir, "openssl.cnf")
        write_file(path, text, 0o600)
        return path

    def _genkey(self, path: str) -> None:
        openssl = tool("openssl")
        run_cmd([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", path], "openssl genpkey")
        os.chmod(path, 0o600)

    def create_ca(self, cert: str, key: str, common_name: str) -> None:
        openssl = tool("openssl")
        with tempfile.TemporaryDirectory() as tmp:
            cnf = self._cnf(tmp, common_name)
            tkey, tcrt = os.path.join(tmp, "ca.key"), os.path.join(tmp, "ca.crt")
            self._genkey(tkey)
            run_cmd([openssl, "req", "-x509", "-new", "-key", tkey, "-sha256", "-days",
                     str(CA_DAYS), "-config", cnf, "-extensions", "ca_ext", "-out", tcrt],
                    "openssl req (CA)")
            with open(tkey, "rb") as fh:
                write_file(key, fh.read(), 0o600)
            with open(tcrt, "rb") as fh:
                write_file(cert, fh.read(), 0o644)

    def create_leaf(self, ca_cert: str, ca_key: str, cert: str, key: str,
                    sans: frozenset[str], days: int) -> None:
        openssl = tool("openssl")
        first = next((s.partition(":")[2] for s in sorted(sans) if s.startswith("DNS:")),
                     "localhost")
        with tempfile.TemporaryDirectory() as tmp:
            cnf = self._cnf(tmp, first, sans)
            tkey, csr, tcrt = (os.path.join(tmp, n) for n in ("leaf.key", "leaf.csr", "leaf.crt"))
            self._genkey(tkey)
            run_cmd([openssl, "req", "-new", "-key", tkey, "-config", cnf, "-out", csr],
                    "openssl req (leaf)")
            serial = "0x" + os.urandom(16).hex()
            run_cmd([openssl, "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                     "-set_serial", serial, "-days", str(days), "-sha256", "-extfile", cnf,
                     "-extensions", "leaf_ext", "-out", tcrt], "openssl x509 (leaf)")
            with open(tkey, "rb") as fh:
                write_file(key, fh.read(), 0o600)
            with open(tcrt, "rb") as fh:
                write_file(cert, fh.read(), 0o644)

    def inspect(self, cert: str) -> CertInfo:
        openssl = tool("openssl")
        out = run_cmd([openssl, "x509", "-in", cert, "-noout", "-enddate", "-ext",
                       "subjectAltName"], "openssl x509 (inspect)").stdout
        m = re.search(r"notAfter=(.+)", out)
        if not m:
            raise HostError(f"cannot read the expiry of {cert}")
        not_after = datetime.datetime.strptime(m.group(1).strip(), "%b %d %H:%M:%S %Y %Z")
        sans: set[str] = set()
        for item in re.findall(r"(DNS:[^,\s]+|IP Address:[^,\s]+)", out):
            kind, _, value = item.partition(":")
            sans.add(("IP:" if kind.startswith("IP") else "DNS:") + value.lower())
        return CertInfo(frozenset(sans),
                        not_after.replace(tzinfo=datetime.timezone.utc))  # noqa: UP017


def cert_tool() -> CertTool:
    return CryptographyCertTool() if have_cryptography() else OpensslCertTool()


def _fingerprint(path: str) -> str:
    return sha256_file(path) if os.path.exists(path) else ""


def ensure_self_signed(layout: Layout, app: str, domains: Sequence[str],
                       certs: CertTool | None = None) -> tuple[str, str, bool]:
    """Make sure the CA and a current leaf exist; return (cert, key, reissued)."""
    certs = certs or cert_tool()
    os.makedirs(layout.self_signed, exist_ok=True)
    if not (os.path.exists(layout.ca_crt) and os.path.exists(layout.ca_key)):
        log("creating the self-signed CA")
        certs.create_ca(layout.ca_crt, layout.ca_key,
                        f"gin-deploy {app} CA {base64.b32encode(os.urandom(5)).decode()}")
    cert = os.path.join(layout.self_signed, "server.crt")
    key = os.path.join(layout.self_signed, "server.key")
    meta_path = os.path.join(layout.self_signed, "issued-by.sha256")
    sans = wanted_sans(domains)
    reason = ""
    if not (os.path.exists(cert) and os.path.exists(key)):
        reason = "no leaf certificate yet"
    elif (read_text(meta_path) or "").strip() != _fingerprint(layout.ca_crt):
        reason = "the CA changed"
    else:
        info = certs.inspect(cert)
        if info.sans != sans:
            reason = "the domain set changed"
        elif info.not_after - _utcnow() < datetime.timedelta(days=RENEW_BEFORE_DAYS):
            reason = f"it expires within {RENEW_BEFORE_DAYS} days"
    if reason:
        log(f"issuing a self-signed certificate for {', '.join(sorted(sans))} ({reason})")
        certs.create_leaf(layout.ca_crt, layout.ca_key, cert, key, sans, LEAF_DAYS)
        write_file(meta_path, _fingerprint(layout.ca_crt) + "\n")
    return cert, key, bool(reason)


def point_tls(layout: Layout, cert: str, key: str) -> bool:
    """Point the stable server.crt/server.key at cert/key; True when that changed something."""
    changed = False
    for link, target in ((layout.server_crt, cert), (layout.server_key, key)):
        rel = os.path.relpath(target, os.path.dirname(link))
        try:
            current = os.readlink(link)
        except OSError:
            current = None
        if current != rel:
            atomic_symlink(rel, link)
            changed = True
    return changed


def acme_live(layout: Layout, domains: Sequence[str]) -> tuple[str, str]:
    live = os.path.join(layout.acme_dir("config"), "live", domains[0])
    return os.path.join(live, "fullchain.pem"), os.path.join(live, "privkey.pem")


def certbot_common(layout: Layout) -> list[str]:
    return [
        "--config-dir", layout.acme_dir("config"),
        "--work-dir", layout.acme_dir("work"),
        "--logs-dir", layout.acme_dir("logs"),
        "--non-interactive",
        "--deploy-hook", f"{sys.executable} {layout.agent} reload-nginx --state "
                         f"{layout.state_dir}",
    ]


def certbot_env(layout: Layout) -> dict[str, str]:
    env = dict(os.environ)
    if os.path.exists(layout.acme_ca_bundle):
        env["REQUESTS_CA_BUNDLE"] = layout.acme_ca_bundle
    return env


def acme_obtain(layout: Layout, tls: TlsSpec) -> None:
    certbot = tool("certbot")
    for kind in ("config", "work", "logs"):
        os.makedirs(layout.acme_dir(kind), mode=0o700, exist_ok=True)
    args = [certbot, "certonly", "--webroot", "-w", tls.webroot]
    for d in tls.domains:
        args += ["-d", d]
    args += ["--cert-name", tls.domains[0], "--server", tls.server, "--email", tls.email,
             "--agree-tos", "--keep-until-expiring", "--expand", *certbot_common(layout)]
    log(f"requesting an ACME certificate for {', '.join(tls.domains)} from {tls.server}")
    run_cmd(args, "certbot certonly", env=certbot_env(layout), timeout=600)


# --------------------------------------------------------------------------- nginx


class Nginx:
    """This target's nginx: validate a site, put it in place, start or reload."""

    def __init__(self, layout: Layout, spec: NginxSpec | None) -> None:
        self.layout = layout
        self.spec = spec

    def binary(self) -> str:
        return tool("nginx")

    def running(self) -> bool:
        raise NotImplementedError

    def check(self, site: str, main: str) -> None:
        """Validate the full configuration with this site; HostError quoting nginx -t."""
        raise NotImplementedError

    def apply(self, site: str, main: str) -> bool:
        """Validate then install the config; start or reload. True when it changed."""
        raise NotImplementedError

    def reload(self) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError

    def master_pid(self) -> int | None:
        raise NotImplementedError

    def signal_reload(self, command: list[str]) -> None:
        """Run `nginx -s reload` and wait until only workers with the new configuration accept
        connections, so a finished deploy means the new config is live. (The master starts
        new workers first; an old one stops accepting when it retitles itself
        "worker process is shutting down".)"""
        master = self.master_pid()
        before = set(children_of(master)) if master else set()
        run_cmd(command, "nginx -s reload")
        if not master:
            return

        def switched() -> bool:
            table = _proc_table()
            fresh = [p for p, (ppid, _e, _c) in table.items() if ppid == master and p not in before]
            old_accepting = [p for p in before if p in table and
                             table[p][2].rstrip().endswith("worker process")]
            return bool(fresh) and not old_accepting

        if not wait_until(switched, 10):
            log("warning: nginx had not switched to new workers 10s after the reload; "
                f"see {self.layout.nginx_error_log}")


class UserNginx(Nginx):
    """nginx run by the deploy user with its own config under <stateDir>/nginx."""

    def base(self, conf: str | None = None) -> list[str]:
        lay = self.layout
        return [self.binary(), "-p", lay.nginx_dir + "/", "-c", conf or lay.nginx_conf,
                "-e", lay.nginx_error_log]

    def pid(self) -> int | None:
        pid = read_pid(self.layout.nginx_pid)
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def master_pid(self) -> int | None:
        return self.pid()

    def staged_main(self, main: str, staged_site: str) -> str:
        pattern = re.compile(r"(\binclude\s+)" + re.escape(self.layout.nginx_site) + r"(\s*;)")
        staged, count = pattern.subn(lambda m: m.group(1) + staged_site + m.group(2), main)
        if count == 0:
            raise HostError(f"nginx.main must contain 'include {self.layout.nginx_site};' "
                            "(the agent validates the site through it)")
        return staged

    def test(self, conf: str) -> None:
        proc = run_cmd([*self.base(conf), "-t"], "nginx -t", check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise HostError(f"nginx rejected the new configuration (nginx -t): {output}; "
                            "the running nginx keeps its previous configuration")

    @contextlib.contextmanager
    def staged(self, site: str, main: str) -> Iterator[None]:
        """Write site.conf.staged and nginx.conf.staged (including the staged site), validate
        them with nginx -t, and remove them again when done."""
        lay = self.layout
        os.makedirs(lay.nginx_temp, exist_ok=True)
        os.makedirs(lay.logs, exist_ok=True)
        staged_site = lay.nginx_site + ".staged"
        staged_conf = lay.nginx_conf + ".staged"
        try:
            write_file(staged_site, site)
            write_file(staged_conf, self.staged_main(main, staged_site))
            self.test(staged_conf)
            yield
        finally:
            for p in (staged_site, staged_conf):
                with contextlib.suppress(OSError):
                    os.unlink(p)

    def check(self, site: str, main: str) -> None:
        with self.staged(site, main):
            pass

    def apply(self, site: str, main: str) -> bool:
        lay = self.layout
        with self.staged(site, main):
            changed = read_text(lay.nginx_site) != site or read_text(lay.nginx_conf) != main
            write_file(lay.nginx_site, site)
            write_file(lay.nginx_conf, main)
        if not self.running():
            log("starting nginx")
            start_daemon(self.base(), "nginx")
            if not wait_until(self.running, 10):
                raise HostError(f"nginx did not write {lay.nginx_pid} after starting; see "
                                f"{lay.nginx_error_log}")
            return True
        if changed:
            log("reloading nginx")
            self.signal_reload([*self.base(), "-s", "reload"])
        return changed

    def validate(self) -> None:
        self.test(self.layout.nginx_conf)

    def reload(self) -> None:
        if not self.running():
            log("nginx is not running; nothing to reload")
            return
        self.validate()
        self.signal_reload([*self.base(), "-s", "reload"])

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            log(f"stopping nginx (pid {pid})")
            stop_pid(pid, signal.SIGQUIT, "nginx", 15.0)

    def remove(self) -> None:
        self.stop()


class SystemNginx(Nginx):
    """The host's nginx; our site is one file in its conf.d."""

    PID_FILE = "/run/nginx.pid"

    @property
    def site_path(self) -> str:
        conf_dir = self.spec.conf_dir if self.spec else "/etc/nginx/conf.d"
        return os.path.join(conf_dir, f"gin-deploy-{self.app}.conf")

    def __init__(self, layout: Layout, spec: NginxSpec | None, app: str) -> None:
        super().__init__(layout, spec)
        self.app = app

    def running(self) -> bool:
        return pid_alive(read_pid(self.PID_FILE))

    def master_pid(self) -> int | None:
        pid = read_pid(self.PID_FILE)
        return pid if pid_alive(pid) else None

    def test(self) -> None:
        proc = run_cmd([self.binary(), "-t"], "nginx -t", check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise HostError(f"nginx rejected the new configuration (nginx -t): {output}; "
                            "the running nginx keeps its previous configuration")

    def _try(self, site: str, keep: bool) -> None:
        # The system nginx.conf includes conf.d/*.conf, so the site is validated in place
        # (under our lock); the previous file is back before anything could load a bad one.
        path = self.site_path
        old = read_text(path)
        write_file(path, site)
        try:
            self.test()
        except HostError:
            keep = False
            raise
        finally:
            if not keep:
                if old is None:
                    os.unlink(path)
                else:
                    write_file(path, old)

    def check(self, site: str, main: str) -> None:
        if read_text(self.site_path) != site:
            self._try(site, keep=False)

    def apply(self, site: str, main: str) -> bool:
        if read_text(self.site_path) == site and self.running():
            return False
        self._try(site, keep=True)
        self.reload_or_start()
        return True

    def reload_or_start(self) -> None:
        if self.running():
            log("reloading the system nginx")
            self.signal_reload([self.binary(), "-s", "reload"])
        elif os.path.isdir("/run/systemd/system") and which("systemctl"):
            log("starting the system nginx")
            run_cmd([tool("systemctl"), "start", "nginx"], "systemctl start nginx")
        else:
            log("starting the system nginx")
            start_daemon([self.binary()], "nginx")

    def reload(self) -> None:
        if self.running():
            self.test()
            self.signal_reload([self.binary(), "-s", "reload"])

    def remove(self) -> None:
        if os.path.exists(self.site_path):
            os.unlink(self.site_path)
            log(f"removed {self.site_path}")
            if self.running():
                try:
                    self.reload()
                except HostError as exc:
                    log(f"warning: could not reload nginx after removing the site: {exc}")


def make_nginx(layout: Layout, mode: str, app: str, spec: NginxSpec | None) -> Nginx:
    return UserNginx(layout, spec) if mode == "user" else SystemNginx(layout, spec, app)


# --------------------------------------------------------------------------- supervisors


def supervisor_groups(programs: str) -> dict[str, str]:
    """Program name -> group name, from the [group:x] programs= lines."""
    groups: dict[str, str] = {}
    section: str | None = None
    value: str | None = None

    def flush() -> None:
        if section and value is not None:
            for name in value.split(","):
                if name.strip():
                    groups[name.strip()] = section

    for line in programs.splitlines():
        stripped = line.strip()
        if value is not None and line[:1].isspace() and stripped:
            value += "," + stripped
            continue
        flush()
        value = None
        m = re.fullmatch(r"\[([^\]]+)\]", stripped)
        if m:
            head = m.group(1)
            section = head.split(":", 1)[1].strip() if head.startswith("group:") else None
            continue
        m = re.match(r"programs\s*[=:]\s*(.*)", stripped)
        if section and m:
            value = m.group(1)
    flush()
    return groups


class Supervisor:
    """Strategy for running the instances: supervisord (user or system) or systemd."""

    kind = ""

    def __init__(self, payload: Payload, layout: Layout) -> None:
        self.payload = payload
        self.layout = layout

    def daemon_running(self) -> bool:
        return True

    def running_instances(self) -> set[str]:
        raise NotImplementedError

    def apply(self) -> bool:
        """Write the configuration and make the supervisor load it; True when the definition of
        the instances changed in a way that needs a restart."""
        raise NotImplementedError

    def start(self, inst: Instance) -> None:
        raise NotImplementedError

    def restart(self, inst: Instance) -> None:
        raise NotImplementedError

    def wait_running(self, inst: Instance, timeout: float) -> bool:
        """Wait until the supervisor itself considers the instance started."""
        return True

    def stop(self, inst: Instance) -> None:
        raise NotImplementedError

    def destroy(self, instances: Sequence[Instance]) -> None:
        raise NotImplementedError

    def log_files(self, inst: Instance) -> list[str]:
        """logs/<name>.* (not rotated backups such as <name>.log.1)."""
        pattern = os.path.join(glob.escape(self.layout.logs), glob.escape(inst.name) + ".*")
        return sorted(p for p in glob.glob(pattern) if not re.search(r"\.\d+$", p))

    def log_tail(self, inst: Instance) -> str:
        sections = []
        for path in self.log_files(inst):
            lines = tail_lines(path)
            if lines:
                sections.append(f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(sections)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        path = self.path

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(10)
                sock.connect(path)
                self.sock = sock

        return Conn("localhost")


def unix_xmlrpc(path: str) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to a supervisord unix control socket."""
    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(path))


class SupervisordBase(Supervisor):
    kind = "supervisord"
    UP = ("RUNNING", "STARTING")

    def ctl(self) -> list[str]:
        raise NotImplementedError

    def programs_text(self) -> str:
        return self.payload.supervisord.programs if self.payload.supervisord else ""

    def full_name(self, inst: Instance, groups: dict[str, str] | None = None) -> str:
        if groups is None:
            groups = supervisor_groups(read_text(self.programs_path()) or self.programs_text())
        group = groups.get(inst.name)
        return f"{group}:{inst.name}" if group else inst.name

    def programs_path(self) -> str:
        raise NotImplementedError

    def status(self) -> dict[str, tuple[str, int | None]]:
        """name -> (state, pid) for every program supervisord knows."""
        proc = run_cmd([*self.ctl(), "status"], "supervisorctl status", check=False, timeout=30)
        out: dict[str, tuple[str, int | None]] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            name = parts[0].split(":")[-1]
            m = re.search(r"\bpid (\d+)", line)
            out[name] = (parts[1], int(m.group(1)) if m else None)
        return out

    def running_instances(self) -> set[str]:
        if not self.daemon_running():
            return set()
        return {n for n, (state, _pid) in self.status().items() if state in self.UP}

    # Errors that still leave the process in the wanted state.
    HARMLESS: ClassVar[dict[str, tuple[str, ...]]] = {
        "stop": ("(not running)",), "start": ("(already started)",),
        "restart": ("(not running)",)}

    def _action(self, action: str, inst: Instance) -> None:
        """supervisorctl start/stop/restart; start and restart return once the process is
        RUNNING (past startsecs), or fail with supervisord's reason (spawn error, ...)."""
        name = self.full_name(inst)
        proc = run_cmd([*self.ctl(), action, name], f"supervisorctl {action}",
                       check=False, timeout=STOP_TIMEOUT + 30)
        output = (proc.stdout + proc.stderr).strip()
        errors = [ln for ln in output.splitlines() if "ERROR" in ln and
                  not any(h in ln for h in self.HARMLESS[action])]
        done = (action == "stop" or (action == "start" and "already started" in output) or
                any(ln.rstrip().endswith(": started") for ln in output.splitlines()))
        if errors or not done:
            raise HostError(f"supervisorctl {action} {name} failed: {output or 'no output'}")

    def start(self, inst: Instance) -> None:
        self._action("start", inst)

    def wait_running(self, inst: Instance, timeout: float) -> bool:
        # STARTING lasts `startsecs`; a crash in that window would otherwise go unnoticed.
        return wait_until(lambda: self.status().get(inst.name, ("", None))[0] == "RUNNING",
                          timeout, 0.2)

    def restart(self, inst: Instance) -> None:
        self._action("restart", inst)

    def stop(self, inst: Instance) -> None:
        self._action("stop", inst)

    def reread_update(self) -> None:
        ctl = self.ctl()
        run_cmd([*ctl, "reread"], "supervisorctl reread", timeout=60)
        run_cmd([*ctl, "update"], "supervisorctl update", timeout=STOP_TIMEOUT + 60)

    def log_tail(self, inst: Instance) -> str:
        text = super().log_tail(inst)
        if text or not self.daemon_running():
            return text
        proc = run_cmd([*self.ctl(), "tail", "-2000", self.full_name(inst)],
                       "supervisorctl tail", check=False)
        lines = proc.stdout.splitlines()[-LOG_TAIL_LINES:]
        return f"--- supervisorctl tail {self.full_name(inst)} ---\n" + "\n".join(lines)


class UserSupervisord(SupervisordBase):
    """A supervisord of our own, run by the deploy user."""

    def ctl(self) -> list[str]:
        return [tool("supervisorctl"), "-c", self.layout.supervisord_conf]

    def programs_path(self) -> str:
        return self.layout.programs_conf

    def daemon_pid(self) -> int | None:
        pid = read_pid(self.layout.supervisord_pid)
        return pid if pid_alive(pid) else None

    def status(self) -> dict[str, tuple[str, int | None]]:
        # Straight over the control socket: a supervisorctl process per poll is slow on a
        # busy host. Falls back to supervisorctl when the socket does not answer.
        try:
            rpc: Any = unix_xmlrpc(self.layout.supervisor_sock)
            infos: list[dict[str, Any]] = rpc.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return super().status()
        return {str(i["name"]): (str(i["statename"]), int(i["pid"]) or None) for i in infos}

    def daemon_running(self) -> bool:
        return self.daemon_pid() is not None

    def responsive(self) -> bool:
        proc = run_cmd([*self.ctl(), "pid"], "supervisorctl pid", check=False, timeout=10)
        return proc.stdout.strip().isdigit()

    def apply(self) -> bool:
        lay = self.layout
        spec = self.payload.supervisord
        assert spec is not None
        os.makedirs(lay.supervisor_dir, exist_ok=True)
        os.makedirs(lay.logs, exist_ok=True)
        programs_changed = write_file(lay.programs_conf, spec.programs)
        main_changed = write_file(lay.supervisord_conf, spec.main)
        if not self.daemon_running():
            log("starting supervisord")
            start_daemon([tool("supervisord"), "-c", lay.supervisord_conf], "supervisord")
            if not wait_until(self.responsive, 15, 0.2):
                raise HostError(f"supervisord did not answer on {lay.supervisor_sock} after "
                                f"starting; see its log under {lay.logs}")
        elif main_changed:
            log("warning: supervisord.conf changed; it takes effect when supervisord restarts")
        known = self.status()
        if programs_changed or any(i.name not in known for i in self.payload.instances):
            self.reread_update()
        return False

    def destroy(self, instances: Sequence[Instance]) -> None:
        pid = self.daemon_pid()
        if not pid:
            return
        log(f"shutting down supervisord (pid {pid}) and its programs")
        run_cmd([*self.ctl(), "shutdown"], "supervisorctl shutdown", check=False, timeout=30)
        if not wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT, 0.2):
            stop_pid(pid, signal.SIGTERM, "supervisord", 10)


class SystemSupervisord(SupervisordBase):
    """The host's supervisord; our programs are one file in its conf.d."""

    def ctl(self) -> list[str]:
        return [tool("supervisorctl")]

    def programs_path(self) -> str:
        conf_dir = (self.payload.supervisord.conf_dir if self.payload.supervisord
                    else "/etc/supervisor/conf.d")
        return os.path.join(conf_dir, f"gin-deploy-{self.payload.app}.conf")

    def daemon_running(self) -> bool:
        proc = run_cmd([*self.ctl(), "pid"], "supervisorctl pid", check=False, timeout=10)
        return proc.stdout.strip().isdigit()

    def apply(self) -> bool:
        if not self.daemon_running():
            raise HostError("the system supervisord is not running (supervisorctl cannot reach "
                            "it); start it, e.g. systemctl start supervisor")
        write_file(self.programs_path(), self.programs_text())
        self.reread_update()
        return False

    def destroy(self, instances: Sequence[Instance]) -> None:
        path = self.programs_path()
        if os.path.exists(path):
            os.unlink(path)
            log(f"removed {path}")
            if self.daemon_running():
                self.reread_update()


class Systemd(Supervisor):
    """A template unit <app>@.service; the instance is the port."""

    kind = "systemd"

    def unit_dir(self) -> str:
        return self.payload.systemd.unit_dir if self.payload.systemd else "/etc/systemd/system"

    def unit_path(self) -> str:
        return os.path.join(self.unit_dir(), f"{self.payload.app}@.service")

    def unit(self, inst: Instance) -> str:
        return f"{self.payload.app}@{inst.port}.service"

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cmd([tool("systemctl"), *args], f"systemctl {' '.join(args)}", check=check,
                       timeout=STOP_TIMEOUT + 30)

    def running_instances(self) -> set[str]:
        running = set()
        for inst in self.payload.instances:
            proc = self.systemctl("is-active", "--quiet", self.unit(inst), check=False)
            if proc.returncode == 0:
                running.add(inst.name)
        return running

    def apply(self) -> bool:
        spec = self.payload.systemd
        assert spec is not None
        changed = write_file(self.unit_path(), spec.unit)
        if changed:
            log(f"wrote {self.unit_path()}")
        self.systemctl("daemon-reload")
        previous = load_state(self.layout).get("instances") or []
        wanted = {i.port for i in self.payload.instances}
        for old in previous:
            try:
                inst = Instance(str(old["name"]), int(old["port"]))
            except (KeyError, TypeError, ValueError):
                continue
            if inst.port not in wanted:
                log(f"removing instance {inst.name}")
                self.systemctl("disable", "--now", self.unit(inst), check=False)
        for inst in self.payload.instances:
            self.systemctl("enable", self.unit(inst))
        return changed

    def start(self, inst: Instance) -> None:
        self.systemctl("start", self.unit(inst))

    def restart(self, inst: Instance) -> None:
        self.systemctl("restart", self.unit(inst))

    def stop(self, inst: Instance) -> None:
        self.systemctl("stop", self.unit(inst), check=False)

    def destroy(self, instances: Sequence[Instance]) -> None:
        if not which("systemctl"):
            return
        for inst in instances:
            self.systemctl("disable", "--now", self.unit(inst), check=False)
        if os.path.exists(self.unit_path()):
            os.unlink(self.unit_path())
            log(f"removed {self.unit_path()}")
        self.systemctl("daemon-reload", check=False)

    def log_tail(self, inst: Instance) -> str:
        text = super().log_tail(inst)
        journalctl = which("journalctl")
        if text or not journalctl:
            return text
        proc = run_cmd([journalctl, "-u", self.unit(inst), "-n", str(LOG_TAIL_LINES),
                        "--no-pager", "-o", "cat"], "journalctl", check=False)
        return f"--- journalctl -u {self.unit(inst)} ---\n{proc.stdout.strip()}"


def make_supervisor(payload: Payload, layout: Layout) -> Supervisor:
    if payload.supervisor == "systemd":
        return Systemd(payload, layout)
    if payload.mode == "user":
        return UserSupervisord(payload, layout)
    return SystemSupervisord(payload, layout)


# --------------------------------------------------------------------------- releases


def current_release(layout: Layout) -> str | None:
    """The id `current` points at, if it points at an existing release."""
    try:
        target = os.readlink(layout.current)
    except OSError:
        return None
    rid = os.path.basename(target.rstrip("/"))
    return rid if os.path.isdir(layout.release_dir(rid)) else None


def switch_current(layout: Layout, rid: str) -> None:
    atomic_symlink(os.path.join("releases", rid), layout.current)
    log(f"current -> releases/{rid}")


def install_release(payload: Payload, layout: Layout) -> bool:
    """Put the binary and env files in releases/<id>; True when any file changed."""
    rel = payload.release
    assert rel is not None
    rdir = layout.release_dir(rel.id)
    app = layout.release_app(rel.id)
    changed = False
    if os.path.exists(app) and sha256_file(app) == rel.sha256:
        pass
    else:
        if os.path.exists(app):
            raise HostError(f"release {rel.id} already exists with a different binary; "
                            "release ids must change when the binary changes")
        if not os.path.isfile(rel.binary):
            raise HostError(f"staged binary {rel.binary} does not exist; upload it first")
        actual = sha256_file(rel.binary)
        if actual != rel.sha256:
            raise HostError(f"staged binary {rel.binary} has sha256 {actual}, expected "
                            f"{rel.sha256}; upload it again")
        os.makedirs(rdir, mode=0o755, exist_ok=True)
        tmp = f"{app}.tmp-{os.getpid()}"
        shutil.copyfile(rel.binary, tmp)
        os.chmod(tmp, 0o755)  # noqa: S103 - an executable
        if sha256_file(tmp) != rel.sha256:
            os.unlink(tmp)
            raise HostError(f"copy of {rel.binary} to {app} is corrupt; check the disk")
        os.replace(tmp, app)
        log(f"installed release {rel.id}")
        changed = True
    env_json = json.dumps(payload.env, indent=2, sort_keys=True) + "\n"
    changed |= write_file(layout.release_env(rel.id), env_json, 0o600)
    if payload.systemd is not None:
        env_file = payload.systemd.env_file
        if env_file is None:
            env_file = render_env_file(payload.env)
        changed |= write_file(layout.release_app_env(rel.id), env_file, 0o600)
    os.utime(rdir)  # recently deployed releases are kept longest
    return changed


def render_env_file(env: dict[str, str]) -> str:
    """A systemd EnvironmentFile; PORT and BIND_ADDR are left to the unit."""
    lines = ["# Generated by gin-deploy; secrets included, keep it 0600."]
    for key in sorted(env):
        if key in UNIT_OWNED_ENV:
            continue
        value = re.sub(r'([\\"`$])', r"\\\1", env[key])
        lines.append(f'{key}="{value}"')
    return "\n".join(lines) + "\n"


def releases_to_prune(layout: Layout, keep: int, protect: Sequence[str | None]) -> list[str]:
    """Release ids beyond the `keep` newest, never one in `protect`."""
    try:
        names = [n for n in os.listdir(layout.releases)
                 if os.path.isdir(layout.release_dir(n)) and not n.startswith(".")]
    except OSError:
        return []
    names.sort(key=lambda n: (os.stat(layout.release_dir(n)).st_mtime, n), reverse=True)
    keep_set = set(names[:keep]) | {p for p in protect if p}
    return [n for n in names if n not in keep_set]


def prune_releases(layout: Layout, keep: int, protect: Sequence[str | None]) -> list[str]:
    pruned = releases_to_prune(layout, keep, protect)
    for rid in pruned:
        shutil.rmtree(layout.release_dir(rid), ignore_errors=True)
        log(f"pruned release {rid}")
    return pruned


# --------------------------------------------------------------------------- deploy


def _nginx_seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    if not m:
        return 10.0
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def nginx_settle_seconds(site: str) -> float:
    """How long nginx may keep an instance marked failed after its restart: the largest
    fail_timeout of the upstream servers that count failures (nginx defaults max_fails=1,
    fail_timeout=10s). nginx's passive health check keeps a server out for that long even
    if it is back sooner, so restarting the next one earlier could leave no live upstream."""
    settle = 0.0
    for block in re.findall(r"\bupstream\s+[^\s{]+\s*\{(.*?)\}", site, re.S):
        for server in re.findall(r"^\s*server\s+([^;]*);", block, re.M):
            params = dict(p.split("=", 1) for p in server.split()[1:] if "=" in p)
            if params.get("max_fails", "1") == "0" or "backup" in server.split()[1:]:
                continue
            settle = max(settle, _nginx_seconds(params.get("fail_timeout", "10s")))
    return settle


class Pacer:
    """Spaces instance restarts so nginx has taken the previous instance back before the next
    one goes down. The deadline is kept in a file so back-to-back deploys respect it too."""

    MARGIN = 0.5

    def __init__(self, path: str, settle: float) -> None:
        self.path = path
        self.settle = settle

    def wait(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                until = float(fh.read().strip() or 0)
        except (OSError, ValueError):
            return
        delay = min(until - time.time(), self.settle + self.MARGIN)
        if delay > 0:
            log(f"waiting {delay:.1f}s for nginx to take the last restarted instance back")
            time.sleep(delay)

    def restarted(self) -> None:
        if self.settle > 0:
            with contextlib.suppress(OSError):
                write_file(self.path, f"{time.time() + self.settle + self.MARGIN:.3f}\n")


@dataclass
class Target:
    """One deploy target: its payload, paths, supervisor strategy and nginx."""

    payload: Payload
    layout: Layout
    supervisor: Supervisor
    nginx: Nginx
    pacer: Pacer

    @classmethod
    def create(cls, payload: Payload) -> Target:
        layout = Layout(payload.state_dir)
        spec = payload.nginx
        settle = 0.0
        if spec is not None:
            settle = (spec.settle_seconds if spec.settle_seconds is not None
                      else nginx_settle_seconds(spec.site))
        return cls(payload, layout, make_supervisor(payload, layout),
                   make_nginx(layout, payload.mode, payload.app, payload.nginx),
                   Pacer(layout.p(".settle-until"), settle))

    def url(self, inst: Instance) -> str:
        return instance_url(inst, self.payload.ready_path)

    def ready(self, inst: Instance) -> bool:
        return probe(self.url(inst))

    def diagnostics(self, inst: Instance) -> str:
        return self.supervisor.log_tail(inst) or (
            f"(no log files {inst.name}.* in {self.layout.logs})")

    def failure(self, inst: Instance, problem: str, outcome: str, logs: str) -> HostError:
        return HostError(f"instance {inst.name} ({self.url(inst)}) {problem}; {outcome}\n{logs}")


def preflight(target: Target) -> None:
    payload = target.payload
    ensure_tools(payload)
    ports: list[tuple[int, str]] = []
    running = target.supervisor.running_instances() if target.supervisor.daemon_running() \
        else set()
    for inst in payload.instances:
        if inst.name not in running:
            ports.append((inst.port, f"instance {inst.name}"))
    if payload.nginx and not target.nginx.running():
        ports += [(payload.nginx.http_port, "nginx http"), (payload.nginx.https_port,
                                                            "nginx https")]
    check_ports(ports)


def install_agent(layout: Layout) -> None:
    me = os.path.abspath(__file__)
    if os.path.exists(layout.agent) and os.path.samefile(me, layout.agent):
        return
    with open(me, "rb") as fh:
        if write_file(layout.agent, fh.read(), 0o755):
            log(f"installed agent at {layout.agent}")


def prepare_tls(target: Target) -> tuple[bool, bool]:
    """Make the stable cert paths valid. Returns (changed, acme_pending)."""
    payload, layout = target.payload, target.layout
    tls = payload.tls
    assert tls is not None
    if tls.mode == "self-signed":
        cert, key, reissued = ensure_self_signed(layout, payload.app, tls.domains)
        return point_tls(layout, cert, key) or reissued, False
    os.makedirs(layout.acme, mode=0o755, exist_ok=True)
    if tls.ca_bundle:
        write_file(layout.acme_ca_bundle, tls.ca_bundle)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(layout.acme_ca_bundle)
    os.makedirs(os.path.join(tls.webroot, ".well-known", "acme-challenge"), mode=0o755,
                exist_ok=True)
    fullchain, privkey = acme_live(layout, tls.domains)
    state = load_state(layout)
    have = os.path.exists(fullchain) and os.path.exists(privkey)
    same_domains = state.get("acmeDomains") == list(tls.domains)
    if have:
        changed = point_tls(layout, fullchain, privkey)
        return changed, not same_domains
    # Until the ACME certificate exists nginx serves a temporary self-signed one.
    cert, key, reissued = ensure_self_signed(layout, payload.app, tls.domains)
    return point_tls(layout, cert, key) or reissued, True


def finish_acme(target: Target) -> None:
    payload, layout = target.payload, target.layout
    tls = payload.tls
    assert tls is not None
    acme_obtain(layout, tls)
    fullchain, privkey = acme_live(layout, tls.domains)
    if not os.path.exists(fullchain):
        raise HostError(f"certbot finished but {fullchain} does not exist; see "
                        f"{layout.acme_dir('logs')}")
    point_tls(layout, fullchain, privkey)
    state = load_state(layout)
    state["acmeDomains"] = list(tls.domains)
    save_state(layout, state)
    target.nginx.reload()


def rollout(target: Target, new: str, prev: str | None, force: bool) -> bool:
    """Restart the instances one by one onto `new`; roll back on failure. True if restarted."""
    payload, layout, sup = target.payload, target.layout, target.supervisor
    first = prev is None
    running = sup.running_instances()
    if prev == new and not force:
        todo = [i for i in payload.instances if not (i.name in running and target.ready(i))]
        if not todo:
            log(f"release {new} is already current and every instance is ready")
            return False
        log(f"release {new} is current; restarting instances that are not ready: "
            f"{', '.join(i.name for i in todo)}")
    else:
        todo = list(payload.instances)
        if not first and prev != new:
            switch_current(layout, new)
    done: list[Instance] = []
    for inst in todo:
        done.append(inst)
        problem = ""
        try:
            if first and inst.name in running:
                log(f"waiting for {inst.name}")
            elif first:
                log(f"starting {inst.name}")
                sup.start(inst)
            else:
                target.pacer.wait()
                log(f"restarting {inst.name}")
                sup.restart(inst)
        except HostError as exc:
            problem = f"failed to start: {exc}"
        deadline = time.monotonic() + payload.ready_timeout
        if not problem and not wait_ready(target.url(inst), payload.ready_timeout):
            problem = f"was not ready within {payload.ready_timeout:g}s"
        if not problem and not sup.wait_running(inst, max(1.0, deadline - time.monotonic())):
            problem = f"was not RUNNING under {sup.kind} within {payload.ready_timeout:g}s"
        if not first:
            target.pacer.restarted()
        if not problem:
            log(f"{inst.name} is ready")
            continue
        log(f"{inst.name} {problem}")
        logs = target.diagnostics(inst)  # before anything restarts it again
        if first:
            for other in payload.instances:
                with contextlib.suppress(HostError):
                    sup.stop(other)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(layout.current)
            outcome = "no previous release to roll back to; instances stopped"
        elif prev == new:
            outcome = f"release {new} stays current"
        else:
            assert prev is not None
            outcome = rollback(target, prev, done)
        raise target.failure(inst, problem, outcome, logs)
    return True


def rollback(target: Target, prev: str, restarted: Sequence[Instance]) -> str:
    """Point current back at `prev` and restart `restarted` on it; describe the outcome."""
    log(f"rolling back to release {prev}")
    switch_current(target.layout, prev)
    not_ready = []
    for inst in restarted:
        target.pacer.wait()
        log(f"restarting {inst.name} on release {prev}")
        try:
            target.supervisor.restart(inst)
        except HostError as exc:
            log(f"rollback: {exc}")
        if not wait_ready(target.url(inst), target.payload.ready_timeout):
            not_ready.append(inst.name)
        target.pacer.restarted()
    outcome = f"rolled back to release {prev}"
    if not_ready:
        outcome += f" (but {', '.join(not_ready)} did not become ready again)"
    return outcome


def deploy(payload: Payload) -> dict[str, Any]:
    target = Target.create(payload)
    layout = target.layout
    rel, tls, nginx = payload.release, payload.tls, payload.nginx
    assert rel is not None and tls is not None and nginx is not None
    ensure_state_dir(layout)
    with state_lock(layout):
        preflight(target)
        install_agent(layout)
        content_changed = install_release(payload, layout)
        prior = load_state(layout)
        prev = current_release(layout)
        tls_changed, acme_pending = prepare_tls(target)
        # Validate the nginx configuration before touching any instance.
        target.nginx.check(nginx.site, nginx.main)
        if prev is None:
            switch_current(layout, rel.id)  # instances started by the supervisor need it
        unit_changed = target.supervisor.apply()
        force = unit_changed or (content_changed and prev == rel.id)
        restarted = rollout(target, rel.id, prev, force)
        nginx_changed = target.nginx.apply(nginx.site, nginx.main)
        if tls_changed and not nginx_changed:
            target.nginx.reload()
        if acme_pending:
            finish_acme(target)
        previous = prev if prev != rel.id else prior.get("previous")
        state = load_state(layout)  # finish_acme may have added to it
        state.update({
            "app": payload.app, "mode": payload.mode, "supervisor": payload.supervisor,
            "current": rel.id, "previous": previous, "readyPath": payload.ready_path,
            "instances": [{"name": i.name, "port": i.port} for i in payload.instances],
            "tlsMode": tls.mode,
            "nginxConfDir": nginx.conf_dir,
        })
        save_state(layout, state)
        prune_releases(layout, payload.keep_releases, (rel.id, previous))
        changed = restarted or nginx_changed or tls_changed or content_changed
        return {
            "release": rel.id,
            "previous": previous,
            "changed": bool(changed),
            "instances": [{"name": i.name, "port": i.port, "ready": target.ready(i)}
                          for i in payload.instances],
            "caCert": layout.ca_crt if os.path.exists(layout.ca_crt) else None,
        }


# --------------------------------------------------------------------------- destroy, status


def destroy(payload: Payload) -> dict[str, Any]:
    target = Target.create(payload)
    layout = target.layout
    exists = os.path.isdir(layout.state_dir)
    if exists and os.listdir(layout.state_dir) and not os.path.exists(layout.marker):
        raise HostError(f"stateDir {layout.state_dir} has no {MARKER} marker; refusing to "
                        "delete a directory gin-deploy did not create")
    lock: contextlib.AbstractContextManager[None] = (
        state_lock(layout) if exists else contextlib.nullcontext())
    with lock:
        instances = list(payload.instances)
        for old in load_state(layout).get("instances") or []:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                inst = Instance(str(old["name"]), int(old["port"]))
                if all(i.port != inst.port for i in instances):
                    instances.append(inst)
        target.supervisor.destroy(instances)
        target.nginx.remove()
        if exists:
            kill_processes(target_processes(layout))
        if exists:
            shutil.rmtree(layout.state_dir)
            log(f"removed {layout.state_dir}")
    return {"destroyed": True, "stateDir": layout.state_dir, "existed": exists}


def status_from_state(state_dir: str) -> Payload:
    layout = Layout(os.path.normpath(state_dir))
    state = load_state(layout)
    if not state:
        raise HostError(f"no state in {layout.state_file}; deploy first or pass a payload")
    data = {
        "app": state.get("app"), "stateDir": layout.state_dir, "mode": state.get("mode"),
        "supervisor": state.get("supervisor"), "instances": state.get("instances"),
        "readyPath": state.get("readyPath", "/readyz"),
    }
    return parse_payload(data, "status")


def status(payload: Payload) -> dict[str, Any]:
    target = Target.create(payload)
    return {
        "current": current_release(target.layout),
        "instances": [{"name": i.name, "port": i.port, "ready": target.ready(i)}
                      for i in payload.instances],
        "nginxRunning": target.nginx.running(),
    }


# --------------------------------------------------------------------------- run, nginx, renew


def run_instance(state_dir: str, port: int, name: str) -> None:
    """Exec the current release with its environment (a supervisord program)."""
    layout = Layout(os.path.normpath(state_dir))
    if not os.path.exists(layout.current):
        raise HostError(f"{layout.current} does not exist; deploy a release first")
    release_dir = os.path.realpath(layout.current)
    app = os.path.join(release_dir, "app")
    try:
        with open(os.path.join(release_dir, "env.json"), encoding="utf-8") as fh:
            app_env = json.load(fh)
    except (OSError, ValueError) as exc:
        raise HostError(f"cannot read {release_dir}/env.json: {exc}") from None
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in app_env.items()})
    env.update(PORT=str(port), BIND_ADDR="127.0.0.1", INSTANCE_ID=name)
    os.chdir(release_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(app, [app], env)  # noqa: S606 - exec of our own release binary


def nginx_for_state(state_dir: str) -> Nginx:
    layout = Layout(os.path.normpath(state_dir))
    state = load_state(layout)
    mode = state.get("mode", "user")
    conf_dir = state.get("nginxConfDir") or "/etc/nginx/conf.d"
    spec = NginxSpec(0, 0, "", "", conf_dir)
    return make_nginx(layout, mode, str(state.get("app", "")), spec)


def reload_nginx(state_dir: str) -> dict[str, Any]:
    nginx_for_state(state_dir).reload()
    return {"reloaded": True}


def renew(state_dir: str, force: bool = False) -> dict[str, Any]:
    layout = Layout(os.path.normpath(state_dir))
    if not os.path.isdir(layout.acme_dir("config")):
        log("no ACME certificates here; nothing to renew")
        return {"renewed": False}
    # certbot sleeps up to 8 minutes before a non-interactive renew (meant for cron jobs all
    # firing at the same minute); we hold the state lock meanwhile, which would block deploys.
    # renew-loop's schedule starts at the deploy, so hosts are spread out anyway.
    args = [tool("certbot"), "renew", *certbot_common(layout), "--no-random-sleep-on-renew"]
    if force:
        args.append("--force-renewal")
    with state_lock(layout):
        run_cmd(args, "certbot renew", env=certbot_env(layout), timeout=900)
    return {"renewed": True}


def renew_loop(state_dir: str, interval: float) -> None:
    log(f"renewing certificates every {interval:g}s")
    while True:
        time.sleep(interval)
        try:
            renew(state_dir)
        except HostError as exc:
            log(f"renew failed (will retry): {exc}")


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostctl.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("deploy", "destroy"):
        sub.add_parser(name, help=f"{name} (JSON payload on stdin)")
    st = sub.add_parser("status", help="status (JSON payload on stdin, or --state)")
    st.add_argument("--state")
    run = sub.add_parser("run", help="exec the current release (used by supervisord)")
    run.add_argument("--state", required=True)
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--name", required=True)
    sub.add_parser("reload-nginx").add_argument("--state", required=True)
    rn = sub.add_parser("renew")
    rn.add_argument("--state", required=True)
    rn.add_argument("--force", action="store_true",
                    help="renew even when not due (certbot --force-renewal)")
    loop = sub.add_parser("renew-loop")
    loop.add_argument("--state", required=True)
    loop.add_argument("--interval-seconds", type=float, default=43200.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            run_instance(args.state, args.port, args.name)
        elif args.command == "reload-nginx":
            emit(reload_nginx(args.state))
        elif args.command == "renew":
            emit(renew(args.state, force=args.force))
        elif args.command == "renew-loop":
            renew_loop(args.state, args.interval_seconds)
        elif args.command == "status" and args.state:
            emit(status(status_from_state(args.state)))
        else:
            payload = parse_payload(read_payload(sys.stdin), args.command)
            handler = {"deploy": deploy, "destroy": destroy, "status": status}[args.command]
            emit(handler(payload))
    except HostError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
