"""Render supervisord configuration for running N app instances as the deploy user.

Security and robustness choices, briefly:

* supervisord runs unprivileged; its control socket is a unix socket with
  mode 0700, so only the deploy user can start or stop programs, and no TCP
  control port exists. The umask is 027 so logs are not world-readable.
* Programs are stopped with SIGTERM to the whole process group and given
  ``stop_wait_s`` (longer than the app's drain timeout) before SIGKILL, which
  also goes to the whole group, so no orphan survives a restart.
* Only plain, non-secret environment variables belong in this file; it is
  readable by anything that can read the config. Values are validated for the
  quirks of supervisord's parser: ``%`` is escaped (it expands ``%(name)s``),
  and values that its key=value tokenizer would corrupt are rejected instead of
  being silently mangled (a value may not contain both quote characters or
  start/end with one, nothing may contain " ;" or " #", which start an
  inline comment, nor the literal text ``%(here)s``, which supervisord
  substitutes even when escaped).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from gin_deploy.agent.names import ENV_NAME_PATTERN, is_env_name
from gin_deploy.render._jinja import (
    check_int,
    check_no_control,
    check_safe_path,
    make_environment,
)

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_BYTE_SIZE = re.compile(r"[0-9]+(?:KB|MB|GB)?")
# configparser (as supervisord sets it up) cuts a value at ';' or '#' after whitespace.
_INLINE_COMMENT = re.compile(r"\s[;#]")


def _escape_percent(value: str) -> str:
    """supervisord %-expands most values (%(here)s, %(ENV_X)s); keep literal '%'."""
    return value.replace("%", "%%")


def _check_ini_value(field: str, value: str) -> None:
    check_no_control(field, value)
    if _INLINE_COMMENT.search(value):
        raise ValueError(f"{field}: {value!r} must not contain whitespace before ';' or '#'")
    # supervisord substitutes this text before any %-unescaping, so it cannot be escaped.
    if "%(here)s" in value:
        raise ValueError(f"{field}: {value!r} must not contain the text '%(here)s'")


def _quote_env_value(key: str, value: str) -> str:
    """Quote one value for supervisord's `environment=` (a non-POSIX shlex split)."""
    field = f"environment[{key}]"
    _check_ini_value(field, value)
    # supervisord strips every quote character from both ends of the token.
    if value and (value[0] in "'\"" or value[-1] in "'\""):
        raise ValueError(f"{field}: value must not start or end with a quote character")
    if '"' not in value:
        quoted = f'"{value}"'
    elif "'" not in value:
        quoted = f"'{value}'"
    else:
        raise ValueError(f"{field}: value must not contain both ' and \"")
    return _escape_percent(quoted)


@dataclass(frozen=True)
class SupervisorProgram:
    """One app instance as a supervisord [program:x] section."""

    name: str  # e.g. "hello-gin-9080"
    command: str  # full command line, absolute paths; split like a shell, but no shell runs it
    directory: str
    stdout_log: str
    stderr_log: str  # the same path as stdout_log merges stderr into it (redirect_stderr)
    environment: tuple[tuple[str, str], ...] = ()  # plain, non-secret only
    stop_wait_s: int = 15  # must exceed the app's drain timeout (SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT)
    start_secs: int = 1  # must stay up this long to count as started
    log_max_bytes: str = "10MB"
    log_backups: int = 5
    user: str | None = None  # only meaningful when supervisord runs as root
    umask: str | None = None  # e.g. "077": files the program creates stay private
    # Additions beyond the original interface:
    start_retries: int = 3
    autostart: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} must match [A-Za-z0-9_.-]+")

        if not isinstance(self.command, str) or not self.command.strip():
            raise ValueError("command: must be a non-empty command line")
        _check_ini_value("command", self.command)
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise ValueError(f"command: {self.command!r} cannot be split: {exc}") from None
        if not argv or not argv[0].startswith("/"):
            raise ValueError(f"command: {self.command!r} must start with an absolute path")

        for field in ("directory", "stdout_log", "stderr_log"):
            check_safe_path(field, getattr(self, field))

        env = self.environment
        if isinstance(env, Mapping):
            env = tuple(env.items())
        object.__setattr__(self, "environment", tuple(tuple(pair) for pair in env))
        for pair in self.environment:
            if len(pair) != 2 or not all(isinstance(x, str) for x in pair):
                raise ValueError(f"environment: {pair!r} must be a (key, value) pair of strings")
            if not is_env_name(pair[0]):
                raise ValueError(f"environment: key {pair[0]!r} must match {ENV_NAME_PATTERN}")
            _quote_env_value(*pair)
        keys = [key for key, _ in self.environment]
        if len(set(keys)) != len(keys):
            raise ValueError("environment: keys must be unique")

        check_int("stop_wait_s", self.stop_wait_s, minimum=1)
        check_int("start_secs", self.start_secs, minimum=0)
        check_int("start_retries", self.start_retries, minimum=0)
        check_int("log_backups", self.log_backups, minimum=0)
        if not isinstance(self.log_max_bytes, str) or not _BYTE_SIZE.fullmatch(self.log_max_bytes):
            raise ValueError(
                f"log_max_bytes: {self.log_max_bytes!r} must look like 10MB, 500KB or 1GB"
            )
        if self.user is not None and (
            not isinstance(self.user, str) or not _USER.fullmatch(self.user)
        ):
            raise ValueError(f"user: {self.user!r} is not a valid user name")
        if self.umask is not None and not re.fullmatch(r"0?[0-7]{3}", str(self.umask)):
            raise ValueError(f"umask: {self.umask!r} must be an octal umask such as 077")

    @property
    def environment_value(self) -> str:
        """The `environment=` value: KEY="value",KEY2="value2"."""
        return ",".join(f"{k}={_quote_env_value(k, v)}" for k, v in self.environment)


_ENV = make_environment({"pct": _escape_percent})


def render_programs(group: str, programs: tuple[SupervisorProgram, ...]) -> str:
    """[group:<group>] programs=... plus one [program:x] section per program."""
    if not isinstance(group, str) or not _NAME.fullmatch(group):
        raise ValueError(f"group: {group!r} must match [A-Za-z0-9_.-]+")
    programs = tuple(programs)
    if not programs:
        raise ValueError("programs: at least one program is required")
    if not all(isinstance(p, SupervisorProgram) for p in programs):
        raise ValueError("programs: items must be SupervisorProgram instances")
    names = [p.name for p in programs]
    if len(set(names)) != len(names):
        raise ValueError("programs: names must be unique")
    return _ENV.get_template("supervisor_programs.conf.j2").render(group=group, programs=programs)


def render_main_config(
    *,
    state_dir: str,
    socket_file: str,
    pid_file: str,
    log_file: str,
    include: str,
    minfds: int = 256,
    minprocs: int = 64,
) -> str:
    """A standalone supervisord.conf for an unprivileged supervisord.

    ``include`` is a path or glob (relative ones are relative to the config
    file). ``state_dir`` must exist: supervisord checks childlogdir at start.
    ``minfds``/``minprocs`` are lowered from supervisord's 1024/200 so it
    starts under small ulimits; supervisord refuses to run below them.
    """
    for field, value in (
        ("state_dir", state_dir),
        ("socket_file", socket_file),
        ("pid_file", pid_file),
        ("log_file", log_file),
    ):
        check_safe_path(field, value)
    _check_ini_value("include", include)
    # supervisord splits `files` on whitespace.
    if not include or re.search(r"\s", include):
        raise ValueError(f"include: {include!r} must be one path or glob without whitespace")
    check_int("minfds", minfds, minimum=16)
    check_int("minprocs", minprocs, minimum=1)
    return _ENV.get_template("supervisord.conf.j2").render(
        state_dir=state_dir,
        socket_file=socket_file,
        pid_file=pid_file,
        log_file=log_file,
        include=include,
        minfds=minfds,
        minprocs=minprocs,
    )
