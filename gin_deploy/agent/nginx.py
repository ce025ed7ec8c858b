"""This target's nginx: validated with `nginx -t` before it is used, then started or
reloaded; user mode runs an nginx of its own, system mode puts a site in the host's.

Rolling restarts are paced so nginx's passive health check (max_fails/fail_timeout of the
upstream servers in the site, nginx's defaults when absent, or nginx.settleSeconds) has
taken a restarted instance back before the next one goes down; otherwise every upstream
could be marked failed at once and nginx would answer 502.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
from collections.abc import Iterator

from gin_deploy.agent import system_files
from gin_deploy.agent.files import read_text, write_file
from gin_deploy.agent.layout import Layout, load_state
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import NGINX_CONF_DIR
from gin_deploy.agent.processes import (
    children_of,
    pid_alive,
    proc_table,
    read_pid,
    run_cmd,
    start_daemon,
    stop_pid,
    tool,
    wait_until,
    which,
)
from gin_deploy.agent.system_files import legacy_name

# A site may hold the origin lock's secret; nginx's master reads it as its owner.
SITE_MODE = 0o600


class Nginx:
    """This target's nginx: validate a site, put it in place, start or reload."""

    def __init__(self, layout: Layout, conf_dir: str = NGINX_CONF_DIR) -> None:
        self.layout = layout
        self.conf_dir = conf_dir  # system mode: where the site goes

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
            table = proc_table()
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
            write_file(staged_site, site, SITE_MODE)
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
            write_file(lay.nginx_site, site, SITE_MODE)
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
    MAIN_CONF = "/etc/nginx/nginx.conf"

    def __init__(self, layout: Layout, conf_dir: str, app: str, name: str | None) -> None:
        super().__init__(layout, conf_dir)
        self.app = app
        self.name = name or legacy_name(app)

    @property
    def site_path(self) -> str:
        return os.path.join(self.conf_dir, f"{self.name}.conf")

    @property
    def legacy_path(self) -> str | None:
        """Where a deploy from before names carried project and stack put the site."""
        old = os.path.join(self.conf_dir, f"{legacy_name(self.app)}.conf")
        return old if old != self.site_path else None

    def running(self) -> bool:
        return pid_alive(read_pid(self.PID_FILE))

    def master_pid(self) -> int | None:
        pid = read_pid(self.PID_FILE)
        return pid if pid_alive(pid) else None

    def test(self, conf: str | None = None) -> None:
        proc = run_cmd([self.binary(), "-t", *(["-c", conf] if conf else [])], "nginx -t",
                       check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise HostError(f"nginx rejected the new configuration (nginx -t): {output}; "
                            "the running nginx keeps its previous configuration")

    def staged_test(self, site: str) -> None:
        """Validate the host's configuration as it will be with `site`, without putting the
        site where the running nginx could load it: a copy of nginx.conf whose include of
        conf.d reads a staged directory (the other sites linked, ours written)."""
        main = read_text(self.MAIN_CONF)
        if main is None:
            raise HostError(f"cannot read {self.MAIN_CONF}; is nginx installed?")
        stage = self.layout.p("nginx", "staged")
        pattern = re.compile(r"(\binclude\s+)" + re.escape(self.conf_dir.rstrip("/")) +
                             r"/\*\.conf(\s*;)")
        staged_main, count = pattern.subn(
            lambda m: m.group(1) + stage + "/*.conf" + m.group(2), main)
        if count == 0:
            raise HostError(f"{self.MAIN_CONF} has no 'include {self.conf_dir}/*.conf;': "
                            "the site would never be loaded; set nginx.confDir to the "
                            "directory it includes")
        # Relative includes in nginx.conf resolve against its directory: stage it there.
        staged_conf = os.path.join(os.path.dirname(self.MAIN_CONF),
                                   f".{self.name}.staged.conf")
        skip = {self.site_path, self.legacy_path}
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(stage, mode=0o700)
        try:
            for other in sorted(glob.glob(os.path.join(glob.escape(self.conf_dir), "*.conf"))):
                if other not in skip:
                    os.symlink(other, os.path.join(stage, os.path.basename(other)))
            write_file(os.path.join(stage, f"{self.name}.conf"), site, SITE_MODE)
            write_file(staged_conf, staged_main, 0o600)
            self.test(staged_conf)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(staged_conf)

    def current(self) -> bool:
        return self.legacy_path is None or not os.path.lexists(self.legacy_path)

    def check(self, site: str, main: str) -> None:
        if read_text(self.site_path) != site or not self.current():
            self.staged_test(site)

    def apply(self, site: str, main: str) -> bool:
        if read_text(self.site_path) == site and self.current() and self.running():
            return False
        self.staged_test(site)
        system_files.install(self.site_path, site, self.layout, SITE_MODE)
        if self.legacy_path:
            system_files.remove(self.legacy_path, self.layout)
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
        removed = [system_files.remove(p, self.layout)
                   for p in (self.site_path, self.legacy_path) if p]
        if any(removed) and self.running():
            try:
                self.reload()
            except HostError as exc:
                log(f"warning: could not reload nginx after removing the site: {exc}")


def make_nginx(layout: Layout, mode: str, app: str, conf_dir: str = NGINX_CONF_DIR,
               name: str | None = None) -> Nginx:
    return (UserNginx(layout, conf_dir) if mode == "user"
            else SystemNginx(layout, conf_dir, app, name))


def nginx_for_state(state_dir: str) -> Nginx:
    """The nginx of the target the last deploy left in `state_dir` (certbot's hook)."""
    layout = Layout(os.path.normpath(state_dir))
    state = load_state(layout)
    return make_nginx(layout, state.get("mode", "user"), str(state.get("app", "")),
                      state.get("nginxConfDir") or NGINX_CONF_DIR, state.get("systemName"))


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
