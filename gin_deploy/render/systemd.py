"""Render a hardened systemd template unit (one instance per port) and its EnvironmentFile.

Security choices, briefly:

* ``DynamicUser=yes``: each instance runs as a transient UID that owns
  nothing on disk, so a compromised app can read only world-readable files
  and write nowhere but its private /tmp (and the optional logs directory).
  The release directory must therefore be world-readable, while the
  EnvironmentFile can stay root-only (0600): systemd reads it before
  dropping privileges, which is where secrets belong.
* The rest is the usual sandbox: no capabilities, no new privileges, a
  read-only OS, hidden /home, private /tmp and /dev, no kernel tunables,
  modules, logs, clock or hostname changes, only inet/unix sockets, the
  ``@system-service`` syscall set minus ``@privileged`` and ``@resources``
  (denied calls fail with EPERM rather than killing the process, because the
  Go runtime probes a few of them at start), no W+X memory, umask 0077.
* ``ProtectHome`` is ``yes`` unless one of the unit's paths is under /home,
  /root or /run/user, in which case it becomes ``read-only`` (such a path
  must also be traversable by an unprivileged user for DynamicUser to work).
* Network egress is not restricted by default (``ip_address_allow=None``): a
  real service usually calls databases or APIs, and an IP allow-list that
  silently drops those is worse than none. The unit scores well below 2.0 in
  ``systemd-analyze security`` without it; ``ip_address_allow=("localhost",)``
  adds ``IPAddressDeny=any`` and lowers it further for an app that only
  answers nginx on loopback.
* ``PORT`` and ``BIND_ADDR`` are set by the unit. systemd lets an
  EnvironmentFile override ``Environment=``, so render_env_file refuses
  those keys by default.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from gin_deploy.agent.names import ENV_NAME_PATTERN, is_env_name
from gin_deploy.render._jinja import (
    check_int,
    check_no_control,
    check_safe_path,
    make_environment,
)

# Set by the unit from the instance name; an EnvironmentFile would override them.
UNIT_OWNED_ENV_KEYS = frozenset({"PORT", "BIND_ADDR"})

_UNIT_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_LOGS_DIR = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
_HOME_PREFIXES = ("/home/", "/root/", "/run/user/")
_IP_ALLOW_KEYWORDS = frozenset({"localhost", "link-local", "multicast", "any"})


def _unit_escape(value: str) -> str:
    """Escape systemd specifiers ('%i', '%h', ...) so text stays literal."""
    return value.replace("%", "%%")


@dataclass(frozen=True)
class SystemdService:
    """A `<name>@.service` template; the instance name (%i) is the port."""

    name: str  # unit is "<name>@.service"
    description: str
    exec_start: str  # absolute path of the binary, e.g. <state>/current/app
    working_directory: str
    environment_file: str  # absolute path; loaded with EnvironmentFile= (may be root-only)
    read_only_paths: tuple[str, ...] = ()
    # A name under /var/log (or an absolute path below it) for LogsDirectory=;
    # with DynamicUser that is the only kind of log directory the app can write.
    log_directory: str | None = None
    timeout_stop_s: int = 20  # above the app's drain (SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT)
    restart_sec_s: int = 1
    # Additions beyond the original interface:
    ip_address_allow: tuple[str, ...] | None = None  # None: no IP filtering (see module doc)
    start_limit_interval_s: int = 60  # at most start_limit_burst starts within this window
    start_limit_burst: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _UNIT_NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} must match [A-Za-z0-9_.:-]+ (no '@')")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ValueError("description: must be non-empty")
        check_no_control("description", self.description)
        if "\\" in self.description:
            raise ValueError("description: must not contain backslashes")

        for field in ("exec_start", "working_directory", "environment_file"):
            check_safe_path(field, getattr(self, field))
        if isinstance(self.read_only_paths, str):
            raise ValueError("read_only_paths: expected a sequence of paths, not a string")
        object.__setattr__(self, "read_only_paths", tuple(self.read_only_paths))
        for path in self.read_only_paths:
            check_safe_path("read_only_paths", path)

        if self.log_directory is not None:
            rel = self.log_directory
            if rel.startswith("/"):
                if not rel.startswith("/var/log/"):
                    raise ValueError(
                        "log_directory: with DynamicUser only a systemd-managed directory "
                        "under /var/log is writable; give a name or /var/log/<name>"
                    )
                rel = rel.removeprefix("/var/log/").rstrip("/")
            if not _LOGS_DIR.fullmatch(rel) or ".." in rel.split("/"):
                raise ValueError(f"log_directory: {self.log_directory!r} is not a valid name")

        check_int("timeout_stop_s", self.timeout_stop_s, minimum=1)
        check_int("restart_sec_s", self.restart_sec_s, minimum=0)
        check_int("start_limit_interval_s", self.start_limit_interval_s, minimum=1)
        check_int("start_limit_burst", self.start_limit_burst, minimum=1)

        if self.ip_address_allow is not None:
            if isinstance(self.ip_address_allow, str):
                raise ValueError("ip_address_allow: expected a sequence, not a string")
            object.__setattr__(self, "ip_address_allow", tuple(self.ip_address_allow))
            if not self.ip_address_allow:
                raise ValueError(
                    "ip_address_allow: an empty allow-list would cut the app off from nginx; "
                    "use None for no filtering"
                )
            for item in self.ip_address_allow:
                if item in _IP_ALLOW_KEYWORDS:
                    continue
                try:
                    ipaddress.ip_network(item, strict=True)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"ip_address_allow: {item!r} is not a CIDR or one of "
                        f"{sorted(_IP_ALLOW_KEYWORDS)}"
                    ) from None

    @property
    def unit_name(self) -> str:
        return f"{self.name}@.service"

    @property
    def logs_directory(self) -> str | None:
        """log_directory relative to /var/log, as LogsDirectory= wants it."""
        if self.log_directory is None:
            return None
        return self.log_directory.removeprefix("/var/log/").rstrip("/")

    @property
    def protect_home(self) -> str:
        paths = (
            self.exec_start,
            self.working_directory,
            self.environment_file,
            *self.read_only_paths,
        )
        under_home = any((p + "/").startswith(_HOME_PREFIXES) for p in paths)
        return "read-only" if under_home else "yes"


_ENV = make_environment({"unit_escape": _unit_escape})


def render_template_unit(s: SystemdService) -> str:
    """The text of `<s.name>@.service`; start instances as `<s.name>@<port>.service`."""
    return _ENV.get_template("systemd_unit.service.j2").render(s=s)


def _env_file_quote(value: str) -> str:
    # Inside double quotes systemd (like sh) unescapes exactly \" \\ \` \$.
    escaped = re.sub(r'(["\\`$])', r"\\\1", value)
    return f'"{escaped}"'


def render_env_file(
    env: Mapping[str, str], *, reserved: Collection[str] = UNIT_OWNED_ENV_KEYS
) -> str:
    """An EnvironmentFile= body, one KEY="value" per line, in sorted key order.

    Keys in ``reserved`` (PORT and BIND_ADDR by default, which the unit sets
    per instance) are rejected because the file would silently override them.
    """
    lines = ["# Generated by gin-deploy; local edits are overwritten."]
    for key in sorted(env):
        value = env[key]
        if not is_env_name(key):
            raise ValueError(f"env: key {key!r} must match {ENV_NAME_PATTERN}")
        if key in reserved:
            raise ValueError(f"env[{key}]: is set by the unit itself and must not be overridden")
        if not isinstance(value, str):
            raise ValueError(f"env[{key}]: value must be a string, got {type(value).__name__}")
        # A newline would end the assignment (and could inject another one).
        if "\n" in value or "\r" in value or "\x00" in value:
            raise ValueError(f"env[{key}]: value must not contain newlines or NUL")
        check_no_control(f"env[{key}]", value.replace("\t", " "))
        lines.append(f"{key}={_env_file_quote(value)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RenewUnits:
    service: str
    timer: str


def render_renew_units(name: str, description: str, exec_start: str) -> RenewUnits:
    """`<name>.service` (oneshot, as root: certbot's files and nginx's reload need it) and
    `<name>.timer` twice a day with a random delay; certbot renews only what is due."""
    if not _UNIT_NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} must match [A-Za-z0-9_.:-]+")
    check_no_control("description", description)
    check_no_control("exec_start", exec_start)
    head = "# Generated by gin-deploy; local edits are overwritten.\n"
    service = (
        f"{head}[Unit]\nDescription={_unit_escape(description)}\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        f"[Service]\nType=oneshot\nExecStart={_unit_escape(exec_start)}\n"
        "NoNewPrivileges=yes\nPrivateTmp=yes\nUMask=0077\n"
    )
    timer = (
        f"{head}# Starts {name}.service: {_unit_escape(exec_start)}\n"
        f"[Unit]\nDescription={_unit_escape(description)} (timer)\n\n"
        "[Timer]\nOnCalendar=*-*-* 00,12:00:00\nRandomizedDelaySec=1h\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return RenewUnits(service, timer)
