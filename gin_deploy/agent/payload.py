"""What the program sends the agent, defined once.

`components/host.py` builds these dataclasses and `serialise`s them; the agent `parse`s
the JSON back into them with the same code (gin_deploy.agent.wire), so a renamed or
missing field is a type error where the payload is built and a clear "<path> is
required" / "is not a known field" where it is read.

deploy reads a `DeployPayload` on stdin; destroy and status a `TargetPayload` (which app,
where, how supervised, which instances), small enough to ride on the command line.
JSON keys are the field names in camelCase; `serialise` sorts them.

Fields marked omit_default are extras the program does not send (directories of system
files, nginx's settle time, a ready-made systemd EnvironmentFile); tests and hand-run
deploys may set them.

This module is imported by the hosts' Python (3.9+), where the type hints are evaluated:
unions are spelt Optional[...] / Union[...], not `X | Y`.
"""

import ipaddress
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypeVar, Union

from gin_deploy.agent.names import ENV_NAME_PATTERN, is_env_name
from gin_deploy.agent.wire import WireError, dump, load, meta

NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9_.-]*"
_NAME = re.compile(NAME_PATTERN)
_DOMAIN = re.compile(r"(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_SHA256 = re.compile("[0-9a-f]{64}")
# System directories a state dir must never be (destroy removes the state dir).
FORBIDDEN_STATE_DIRS = frozenset(
    ["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
     "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/tmp"]
)

# Where system mode puts its files unless a payload says otherwise.
NGINX_CONF_DIR = "/etc/nginx/conf.d"
SUPERVISOR_CONF_DIR = "/etc/supervisor/conf.d"
SYSTEMD_UNIT_DIR = "/etc/systemd/system"

Mode = Literal["user", "system"]
SupervisorKind = Literal["supervisord", "systemd"]
Strategy = Literal["rolling", "canary", "blueGreen"]


# --------------------------------------------------------------------------- checks


def _name(value: str) -> Optional[str]:
    return None if _NAME.fullmatch(value) else f"must match {NAME_PATTERN} (got {value!r})"


def _text(value: str) -> Optional[str]:
    return None if value else "must not be empty"


def _path(value: str) -> Optional[str]:
    return None if value and "\0" not in value and "\n" not in value else \
        f"must be a path (got {value!r})"


def _abs_path(value: str) -> Optional[str]:
    return _path(value) or (None if value.startswith("/") else
                            f"must be an absolute path (got {value!r})")


def _state_dir(value: str) -> Optional[str]:
    problem = _abs_path(value)
    if problem is None and os.path.normpath(value) in FORBIDDEN_STATE_DIRS:
        problem = f"must be a dedicated directory, not {os.path.normpath(value)}"
    return problem


_ACCOUNT = re.compile("[a-z_][a-z0-9_-]{0,31}")


def _account(value: Optional[str]) -> Optional[str]:
    if value is None or (_ACCOUNT.fullmatch(value) and value != "root"):
        return None
    return f"must be a system account name other than root (got {value!r})"


def _in(lo: float, hi: float) -> Any:
    def check(value: float) -> Optional[str]:
        return None if lo <= value <= hi else f"must be in {lo:g}..{hi:g} (got {value!r})"
    return check


def _sha256(value: str) -> Optional[str]:
    return None if _SHA256.fullmatch(value) else "must be 64 lowercase hex digits"


def _http_path(value: str) -> Optional[str]:
    return None if value.startswith("/") else f"must start with / (got {value!r})"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _domains(value: Sequence[str]) -> Optional[str]:
    if not value:
        return "must be a non-empty list of host names"
    bad = [d for d in value if not (_DOMAIN.fullmatch(d) or _is_ip(d))]
    return f"has an invalid name {bad[0]!r}" if bad else None


def _env(value: dict[str, str]) -> Optional[str]:
    bad = [k for k in value if not is_env_name(k)]
    if bad:
        return f"key {bad[0]!r} must match {ENV_NAME_PATTERN}"
    nul = [k for k, v in value.items() if "\0" in v]
    return f"value of {nul[0]} must not contain NUL" if nul else None


def _pem(value: str) -> Optional[str]:
    return None if "BEGIN CERTIFICATE" in value else "must be PEM text or null"


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Instance:
    name: str = field(metadata=meta(_name))
    port: int = field(metadata=meta(_in(1, 65535)))


@dataclass(frozen=True)
class Release:
    id: str = field(metadata=meta(_name))
    # On the host; a relative path starts at the login user's home (SSH staging).
    binary: str = field(metadata=meta(_path))
    sha256: str = field(metadata=meta(_sha256))


@dataclass(frozen=True)
class SelfSignedTls:
    """A per-target CA on the host issues the certificate."""

    domains: tuple[str, ...] = field(metadata=meta(_domains))
    mode: Literal["self-signed"] = "self-signed"


@dataclass(frozen=True)
class AcmeTls:
    """certbot gets the certificate from an ACME CA: HTTP-01 through nginx's webroot, or
    DNS-01 through Route 53 (certbot's dns-route53 plugin, the host's AWS credentials) when
    several targets or a CDN answer the domain and HTTP-01 would land anywhere."""

    domains: tuple[str, ...] = field(metadata=meta(_domains))
    email: str = field(metadata=meta(_text))
    server: str = field(metadata=meta(_text))
    webroot: str = field(metadata=meta(_abs_path))
    ca_bundle: Optional[str] = field(default=None, metadata=meta(_pem))  # trust for the CA
    challenge: Literal["http-01", "dns-01-route53"] = "http-01"
    mode: Literal["acme"] = "acme"


Tls = Union[SelfSignedTls, AcmeTls]


@dataclass(frozen=True)
class NginxFiles:
    http_port: int = field(metadata=meta(_in(1, 65535)))
    https_port: int = field(metadata=meta(_in(1, 65535)))
    site: str = field(metadata=meta(_text))
    # User mode: the standalone nginx.conf, which includes <stateDir>/nginx/site.conf.
    main: Optional[str] = None
    conf_dir: str = field(default=NGINX_CONF_DIR,
                          metadata=meta(_abs_path, omit_default=True))
    # A fleet host behind balancers: nginx listens on this (private) address only, on
    # http_port; https_port is not served there.
    listen_address: Optional[str] = field(default=None,
                                          metadata=meta(_text, omit_default=True))
    # None: derived from the site's upstream servers (their fail_timeout).
    settle_seconds: Optional[float] = field(default=None,
                                            metadata=meta(_in(0, 600), omit_default=True))

    def problems(self) -> list[tuple[str, str]]:
        if self.http_port == self.https_port:
            return [("httpsPort", "must differ from httpPort")]
        return []


@dataclass(frozen=True)
class SupervisordFiles:
    programs: str = field(metadata=meta(_text))  # one [program:<instance>] per instance
    main: Optional[str] = None  # user mode: our own supervisord.conf
    # System mode: the unprivileged account the programs run as (their user=); the agent
    # creates it. None: as the supervisord (user mode: the deploying user).
    user: Optional[str] = field(default=None, metadata=meta(_account, omit_default=True))
    conf_dir: str = field(default=SUPERVISOR_CONF_DIR,
                          metadata=meta(_abs_path, omit_default=True))


@dataclass(frozen=True)
class SystemdFiles:
    unit: str = field(metadata=meta(_text))  # the template unit <app>@.service
    # canary/blueGreen: <app>-candidate@.service, running the `candidate` link.
    candidate_unit: Optional[str] = field(default=None, metadata=meta(omit_default=True))
    # None: the agent renders app.env from the payload's env.
    env_file: Optional[str] = field(default=None, metadata=meta(omit_default=True))
    unit_dir: str = field(default=SYSTEMD_UNIT_DIR,
                          metadata=meta(_abs_path, omit_default=True))
    # ACME: <name>-renew.service and .timer, which run `hostctl.py renew` twice a day.
    renew_service: Optional[str] = field(default=None, metadata=meta(omit_default=True))
    renew_timer: Optional[str] = field(default=None, metadata=meta(omit_default=True))


@dataclass(frozen=True)
class Rollout:
    """How a new release replaces the serving one (the config's `release`, resolved).

    rolling: the instances restart in place, one at a time. canary and blueGreen: the
    release starts on `candidates` (ports of their own, programs running the `candidate`
    link) while the instances keep serving; nginx sends each step's percent of requests
    to them, and the step is judged from `accessLog` (gin_deploy.agent.canary)."""

    strategy: Strategy = "rolling"
    candidates: tuple[Instance, ...] = ()
    steps: tuple[int, ...] = (100,)
    bake_seconds: float = field(default=60.0, metadata=meta(_in(0, 86400)))
    max_error_rate: float = field(default=0.01, metadata=meta(_in(0, 1)))
    max_p95_ms: float = field(default=500.0, metadata=meta(_in(0.001, 3600000)))
    min_requests: int = field(default=100, metadata=meta(_in(0, 10**9)))
    # canary, blueGreen: nginx's JSON access log, and the directory whose files send
    # requests to the candidates (gin_deploy.agent.traffic)
    access_log: Optional[str] = field(default=None, metadata=meta(_abs_path))
    share_dir: Optional[str] = field(default=None, metadata=meta(_abs_path))

    def problems(self) -> list[tuple[str, str]]:
        out = []
        steps = self.steps
        if not steps or any(not 1 <= s <= 100 for s in steps) or list(steps) != sorted(
                set(steps)) or steps[-1] != 100:
            out.append(("steps", f"must be increasing percents ending at 100 (got "
                                 f"{list(steps)})"))
        if self.strategy != "rolling":
            if not self.candidates:
                out.append(("candidates", f"must not be empty with strategy {self.strategy}"))
            for key, value in (("accessLog", self.access_log), ("shareDir", self.share_dir)):
                if value is None:
                    out.append((key, f"is required with strategy {self.strategy}"))
        return out


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class TargetPayload:
    """One app on one host: what destroy and status need."""

    app: str = field(metadata=meta(_name))
    state_dir: str = field(metadata=meta(_state_dir))
    mode: Mode
    supervisor: SupervisorKind
    instances: tuple[Instance, ...]

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.mode == "user" and self.supervisor == "systemd":
            out.append(("supervisor",
                        "systemd needs mode system (user mode runs its own supervisord)"))
        if not self.instances:
            out.append(("instances", "must not be empty"))
        if len({i.name for i in self.instances}) != len(self.instances):
            out.append(("instances", "must have unique names"))
        if len({i.port for i in self.instances}) != len(self.instances):
            out.append(("instances", "must have unique ports"))
        return out


@dataclass(frozen=True)
class DeployPayload(TargetPayload):
    """Everything a deploy installs: the release, its env, the rendered files, TLS."""

    release: Release
    nginx: NginxFiles
    tls: Tls
    env: dict[str, str] = field(default_factory=dict, metadata=meta(_env))
    secret_env_keys: tuple[str, ...] = ()  # env keys whose values are never printed
    # Other secrets in the payload, never printed either (the origin lock in the nginx site).
    secret_values: tuple[str, ...] = field(default=(), metadata=meta(omit_default=True))
    ready_path: str = field(default="/readyz", metadata=meta(_http_path))
    ready_timeout_seconds: float = field(default=30.0, metadata=meta(_in(0.5, 3600)))
    keep_releases: int = field(default=5, metadata=meta(_in(1, 1000)))
    supervisord: Optional[SupervisordFiles] = None
    systemd: Optional[SystemdFiles] = None
    install: bool = False  # apt-get install missing tools (root only)
    # System mode: the stem of every file outside the state dir (project + stack + app);
    # None: the names of deploys before it existed (gin-deploy-<app>.conf, <app>@.service).
    name: Optional[str] = field(default=None, metadata=meta(_name, omit_default=True))
    # Left out while rolling (the default), so such payloads read as before.
    rollout: Rollout = field(default_factory=Rollout, metadata=meta(omit_default=True))

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        user = self.mode == "user"
        candidates = self.rollout.candidates
        if candidates:
            if len(candidates) != len(self.instances):
                out.append(("rollout.candidates", "must be as many as the instances"))
            taken = {i.port for i in self.instances} | {i.name for i in self.instances}
            if any(c.port in taken or c.name in taken for c in candidates):
                out.append(("rollout.candidates", "must not share a port or name with the "
                                                  "instances"))
            if len({c.port for c in candidates}) != len(candidates):
                out.append(("rollout.candidates", "must have unique ports"))
        if user and self.nginx.main is None:
            out.append(("nginx.main", "is required in user mode"))
        if self.supervisor == "supervisord":
            sup = self.supervisord
            if sup is None:
                out.append(("supervisord", "is required with supervisor supervisord"))
            else:
                if user and sup.main is None:
                    out.append(("supervisord.main", "is required in user mode"))
                defined = set(re.findall(r"^\s*\[program:([^\]\s]+)\]", sup.programs, re.M))
                out += [("supervisord.programs",
                         f"has no [program:{i.name}] section for that instance")
                        for i in (*self.instances, *candidates) if i.name not in defined]
        elif self.systemd is None:
            out.append(("systemd", "is required with supervisor systemd"))
        elif candidates and self.systemd.candidate_unit is None:
            out.append(("systemd.candidateUnit", "is required with rollout candidates"))
        elif self.systemd.env_file is None:
            bad = [k for k, v in self.env.items() if "\n" in v or "\r" in v]
            if bad:
                out.append(("env", f"values of {', '.join(bad)} contain newlines, which a "
                                   "systemd EnvironmentFile cannot hold"))
        return out


# --------------------------------------------------------------------------- JSON

P = TypeVar("P", bound=TargetPayload)


class PayloadError(ValueError):
    """The payload cannot be used; the message lists every problem with its field path."""


def serialise(payload: TargetPayload) -> str:
    """The payload as the agent reads it (keys sorted, so equal payloads are equal text)."""
    return json.dumps(dump(payload), sort_keys=True)


def parse(cls: type[P], text: str) -> P:
    """`text` as a `cls`; PayloadError("invalid payload: ...") names every bad field."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None
    try:
        return load(cls, data)
    except WireError as exc:
        raise PayloadError("invalid payload: " + "; ".join(exc.problems)) from None
