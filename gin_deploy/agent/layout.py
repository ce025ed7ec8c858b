"""Where everything of one target lives on the host, and the lock that guards it.

Layout under ``stateDir`` (the program renders configs with these paths):

    .gin-deploy                  marker: this directory belongs to gin-deploy
    .lock                        flock held by deploy/destroy/renew (0600; holds the pid)
    state.json                   what the last deploy did (mode, releases, instances, ...; 0600)
    release.key                  HMAC key for release ids of releases with secrets (0600)
    bin/hostctl.py               the agent (one zip archive; supervisord programs run it)
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

System mode puts the site in ``/etc/nginx/conf.d/<name>.conf``, the programs in
``/etc/supervisor/conf.d/<name>.conf`` and the units in ``/etc/systemd/system/<name>@.service``
(and ``<name>-renew.service``/``.timer``), <name> being the payload's
``gin-deploy-<project>-<stack>-<app>`` (gin_deploy.agent.system_files). The directories
can be overridden (nginx.confDir, supervisord.confDir, systemd.unitDir); state.json
remembers them and the name for destroy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gin_deploy.agent.files import write_file
from gin_deploy.agent.output import HostError, log

MARKER = ".gin-deploy"


@dataclass(frozen=True)
class Layout:
    """Every path of one target, all under state_dir."""

    state_dir: str

    def p(self, *parts: str) -> str:
        return os.path.join(self.state_dir, *parts)

    marker = property(lambda self: self.p(MARKER))
    lock = property(lambda self: self.p(".lock"))
    state_file = property(lambda self: self.p("state.json"))
    release_key = property(lambda self: self.p("release.key"))
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
    write_file(layout.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600)



# How long an operation waits for another one to finish (seconds). An interrupted `pulumi
# up` may leave its agent running on the host (over SSH, or after its parent was killed):
# the next deploy waits for that rollout instead of failing while it completes.
LOCK_WAIT_ENV = "GIN_DEPLOY_LOCK_WAIT"
LOCK_WAIT_DEFAULT_S = 900
_LOCK_NOTICE_EVERY_S = 30.0


def _lock_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return "an unknown process"
    return f"pid {pid}" if pid.isdigit() else "an unknown process"


@contextlib.contextmanager
def state_lock(layout: Layout) -> Iterator[None]:
    """Hold <stateDir>/.lock, waiting (with a notice) while another operation holds it."""
    wait_s = float(os.environ.get(LOCK_WAIT_ENV) or LOCK_WAIT_DEFAULT_S)
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        next_notice = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                holder = _lock_holder(fd)
                now = time.monotonic()
                if now >= deadline:
                    raise HostError(
                        f"another gin-deploy operation ({holder}) holds {layout.lock} and did "
                        f"not finish within {wait_s:.0f}s; wait for it to finish and retry"
                    ) from None
                if now >= next_notice:
                    log(f"waiting for another gin-deploy operation ({holder}) holding "
                        f"{layout.lock} to finish")
                    next_notice = now + _LOCK_NOTICE_EVERY_S
                time.sleep(0.5)
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def destroy_lock(layout: Layout) -> contextlib.AbstractContextManager[None]:
    """The lock a destroy holds; refuses a non-empty stateDir gin-deploy did not create
    (no marker), and takes no lock where there is no stateDir left."""
    exists = os.path.isdir(layout.state_dir)
    if exists and os.listdir(layout.state_dir) and not os.path.exists(layout.marker):
        raise HostError(f"stateDir {layout.state_dir} has no {MARKER} marker; refusing to "
                        "delete a directory gin-deploy did not create")
    return state_lock(layout) if exists else contextlib.nullcontext()


def check_trusted_path(path: str) -> None:
    """Refuse a state dir others could swap under us: the dir and each parent must be a real
    directory (checked with lstat) owned by us or root and writable by nobody else; a
    sticky parent such as /tmp is fine (others cannot rename what we own in it)."""
    me = os.geteuid()
    parts = os.path.normpath(path).split(os.sep)[1:]
    current = os.sep
    for i, part in enumerate(["", *parts]):
        current = os.path.join(current, part) if part else current
        last = i == len(parts)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return  # created by us next, below a directory that passed
        if stat.S_ISLNK(st.st_mode) and not last:
            # The link sits in a directory that passed; where it points must pass too.
            check_trusted_path(os.path.join(os.path.realpath(current), *parts[i:]))
            return
        if not stat.S_ISDIR(st.st_mode):
            raise HostError(f"stateDir {path}: {current} is not a directory (a symlink or "
                            "file there could redirect the agent); remove it or choose "
                            "another stateDir")
        if st.st_uid not in (me, 0) or (last and st.st_uid != me):
            raise HostError(f"stateDir {path}: {current} is owned by uid {st.st_uid}, not by "
                            f"the deploying user (uid {me}){'' if last else ' or root'}; "
                            "another user could replace what the agent runs as "
                            f"uid {me}: fix its owner or choose another stateDir")
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and (last or not st.st_mode & stat.S_ISVTX):
            raise HostError(f"stateDir {path}: {current} is writable by group or others "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod go-w it or choose "
                            "another stateDir")


def ensure_state_dir(layout: Layout) -> None:
    """Create the state dir, refusing to take over a non-empty directory that is not ours
    or one another user could tamper with."""
    d = layout.state_dir
    check_trusted_path(d)
    if os.path.isdir(d) and os.listdir(d) and not os.path.exists(layout.marker):
        raise HostError(
            f"stateDir {d} exists, is not empty and has no {MARKER} marker; "
            "choose an empty or new directory"
        )
    os.makedirs(d, mode=0o755, exist_ok=True)
    check_trusted_path(d)  # makedirs may have raced with someone else creating it
    if not os.path.exists(layout.marker):
        write_file(layout.marker, "gin-deploy state directory; destroy removes it\n")
    for sub in (layout.bin_dir, layout.releases, layout.tls):
        os.makedirs(sub, mode=0o755, exist_ok=True)
    # Logs may quote requests and app output: readable by the deploying user only.
    os.makedirs(layout.logs, mode=0o700, exist_ok=True)
    os.chmod(layout.logs, 0o700)
