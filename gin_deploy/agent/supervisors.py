"""How the instances run: supervisord (its own in user mode, the host's in system mode) or
systemd template units, behind one interface the rolling restart uses.

An instance's supervisord command is
``<python3> <stateDir>/bin/hostctl.py run --state <stateDir> --port <port> --name <name>``:
``run`` reads ``current/env.json``, sets PORT, BIND_ADDR=127.0.0.1 and INSTANCE_ID and
execs ``current/app``, so program definitions never change between releases. With
systemd the template unit ``<app>@.service`` (instance = port) uses
``ExecStart=<stateDir>/current/app`` and ``EnvironmentFile=<stateDir>/current/app.env``.
"""

from __future__ import annotations

import glob
import http.client
import os
import re
import signal
import socket
import subprocess
import xmlrpc.client
from collections.abc import Sequence
from typing import Any, ClassVar

from gin_deploy.agent import system_files
from gin_deploy.agent.files import LOG_TAIL_LINES, read_text, tail_lines, write_file
from gin_deploy.agent.layout import Layout, load_state
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import (
    SUPERVISOR_CONF_DIR,
    SYSTEMD_UNIT_DIR,
    DeployPayload,
    Instance,
    SupervisordFiles,
    SystemdFiles,
    TargetPayload,
)
from gin_deploy.agent.processes import (
    pid_alive,
    read_pid,
    run_cmd,
    start_daemon,
    stop_pid,
    tool,
    wait_until,
    which,
)
from gin_deploy.agent.system_files import legacy_name

STOP_TIMEOUT = 60.0


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

    def __init__(self, target: TargetPayload, layout: Layout, conf_dir: str,
                 name: str | None = None) -> None:
        self.target = target
        self.layout = layout
        self.conf_dir = conf_dir  # system mode: where the programs file / unit goes
        self.name = name  # system mode: the files' stem (None: the names of old deploys)

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
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__()
        self.path = path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        path, timeout = self.path, self.timeout

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(path)
                self.sock = sock

        return Conn("localhost")


def unix_xmlrpc(path: str, timeout: float = 10) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to a supervisord unix control socket."""
    return xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                     transport=_UnixTransport(path, timeout))


class SupervisordBase(Supervisor):
    kind = "supervisord"
    UP = ("RUNNING", "STARTING")

    def __init__(self, target: TargetPayload, layout: Layout, conf_dir: str,
                 files: SupervisordFiles | None, name: str | None = None) -> None:
        super().__init__(target, layout, conf_dir, name)
        self.files = files  # None for destroy and status

    def ctl(self) -> list[str]:
        raise NotImplementedError

    def programs_text(self) -> str:
        return self.files.programs if self.files else ""

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

    # supervisord's faults that leave the process as wanted (NOT_RUNNING, ALREADY_STARTED).
    _FAULT_HARMLESS: ClassVar[dict[str, int]] = {"stop": 70, "start": 60}

    def _action(self, action: str, inst: Instance) -> None:
        """Over the control socket (no supervisorctl process: instances start and stop in
        parallel on busy hosts); supervisorctl when the socket does not answer."""
        name = self.full_name(inst)
        steps = ("stop", "start") if action == "restart" else (action,)
        rpc: Any = unix_xmlrpc(self.layout.supervisor_sock, STOP_TIMEOUT + 30).supervisor
        try:
            for step in steps:
                try:
                    (rpc.stopProcess if step == "stop" else rpc.startProcess)(name, True)
                except xmlrpc.client.Fault as fault:
                    if fault.faultCode != self._FAULT_HARMLESS[step]:
                        raise
        except xmlrpc.client.Fault as fault:
            raise HostError(f"supervisord could not {action} {name}: "
                            f"{fault.faultString}") from None
        except (OSError, http.client.HTTPException):
            super()._action(action, inst)

    def responsive(self) -> bool:
        proc = run_cmd([*self.ctl(), "pid"], "supervisorctl pid", check=False, timeout=10)
        return proc.stdout.strip().isdigit()

    def apply(self) -> bool:
        lay = self.layout
        spec = self.files
        assert spec is not None and spec.main is not None  # user mode: checked by the payload
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
        if programs_changed or any(i.name not in known for i in self.target.instances):
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
    """The host's supervisord; our programs are one file in its conf.d, run as an
    unprivileged account of their own (SupervisordFiles.user)."""

    def ctl(self) -> list[str]:
        return [tool("supervisorctl")]

    def programs_path(self) -> str:
        return os.path.join(self.conf_dir, f"{self.name or legacy_name(self.target.app)}.conf")

    def legacy_path(self) -> str | None:
        old = os.path.join(self.conf_dir, f"{legacy_name(self.target.app)}.conf")
        return old if old != self.programs_path() else None

    def daemon_running(self) -> bool:
        proc = run_cmd([*self.ctl(), "pid"], "supervisorctl pid", check=False, timeout=10)
        return proc.stdout.strip().isdigit()

    def apply(self) -> bool:
        if not self.daemon_running():
            raise HostError("the system supervisord is not running (supervisorctl cannot reach "
                            "it); start it, e.g. systemctl start supervisor")
        changed = system_files.install(self.programs_path(), self.programs_text(), self.layout)
        legacy = self.legacy_path()
        # The old file defines the same programs: it goes in the same reread.
        moved = bool(legacy) and system_files.remove(str(legacy), self.layout)
        self.reread_update()
        return changed or moved

    def destroy(self, instances: Sequence[Instance]) -> None:
        removed = [system_files.remove(p, self.layout)
                   for p in (self.programs_path(), self.legacy_path()) if p]
        if any(removed) and self.daemon_running():
            self.reread_update()


class Systemd(Supervisor):
    """A template unit <name>@.service; the instance is the port. A release's candidates
    (canary, blueGreen) run <name>-candidate@.service, never enabled."""

    kind = "systemd"

    def __init__(self, target: TargetPayload, layout: Layout, conf_dir: str,
                 files: SystemdFiles | None, name: str | None = None,
                 candidates: Sequence[Instance] = ()) -> None:
        super().__init__(target, layout, conf_dir, name)
        self.files = files  # None for destroy and status
        self.candidates = tuple(candidates)

    @property
    def stem(self) -> str:
        return self.name or self.target.app

    @property
    def candidate_stem(self) -> str:
        return f"{self.stem}-candidate"

    def unit_path(self, stem: str | None = None) -> str:
        return os.path.join(self.conf_dir, f"{stem or self.stem}@.service")

    def unit(self, inst: Instance, stem: str | None = None) -> str:
        if stem is None and any(c.port == inst.port for c in self.candidates):
            stem = self.candidate_stem
        return f"{stem or self.stem}@{inst.port}.service"

    def legacy_stem(self) -> str | None:
        """The unit of a deploy from before names carried project and stack, if ours."""
        app = self.target.app
        if app == self.stem or not system_files.owned(self.unit_path(app), self.layout):
            return None
        return app

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cmd([tool("systemctl"), *args], f"systemctl {' '.join(args)}", check=check,
                       timeout=STOP_TIMEOUT + 30)

    def running_instances(self) -> set[str]:
        running = set()
        for inst in (*self.target.instances, *self.candidates):
            proc = self.systemctl("is-active", "--quiet", self.unit(inst), check=False)
            if proc.returncode == 0:
                running.add(inst.name)
        return running

    def apply(self) -> bool:
        spec = self.files
        assert spec is not None
        changed = system_files.install(self.unit_path(), spec.unit, self.layout)
        if changed:
            log(f"wrote {self.unit_path()}")
        candidate_unit = self.unit_path(self.candidate_stem)
        if spec.candidate_unit is not None and system_files.install(
                candidate_unit, spec.candidate_unit, self.layout):
            log(f"wrote {candidate_unit}")
        legacy = self.legacy_stem()
        if legacy:
            # Same ports: the old instances stop before the new ones start (one short gap).
            log(f"moving {legacy}@.service to {self.stem}@.service")
            for inst in self.target.instances:
                self.systemctl("disable", "--now", self.unit(inst, legacy), check=False)
            system_files.remove(self.unit_path(legacy), self.layout)
            changed = True
        self.systemctl("daemon-reload")
        previous = load_state(self.layout).get("instances") or []
        wanted = {i.port for i in self.target.instances}
        for old in previous:
            try:
                inst = Instance(str(old["name"]), int(old["port"]))
            except (KeyError, TypeError, ValueError):
                continue
            if inst.port not in wanted:
                log(f"removing instance {inst.name}")
                self.systemctl("disable", "--now", self.unit(inst), check=False)
        for inst in self.target.instances:
            self.systemctl("enable", self.unit(inst))
        self.apply_renew_timer(spec.renew_service, spec.renew_timer)
        return changed

    def renew_paths(self) -> tuple[str, str]:
        base = os.path.join(self.conf_dir, f"{self.stem}-renew")
        return f"{base}.service", f"{base}.timer"

    def apply_renew_timer(self, renew_service: str | None, renew_timer: str | None) -> None:
        """ACME: the timer that runs `hostctl.py renew` (certbot's own timer never sees our
        private --config-dir); without them, remove ours. A fleet's balancer has only this."""
        service, timer = self.renew_paths()
        timer_unit = os.path.basename(timer)
        if renew_service and renew_timer:
            changed = system_files.install(service, renew_service, self.layout)
            changed |= system_files.install(timer, renew_timer, self.layout)
            if changed:
                self.systemctl("daemon-reload")
            self.systemctl("enable", "--now", timer_unit)
        elif system_files.owned(timer, self.layout):
            self.remove_renew_timer()
            self.systemctl("daemon-reload")

    def remove_renew_timer(self) -> None:
        service, timer = self.renew_paths()
        if system_files.owned(timer, self.layout):
            self.systemctl("disable", "--now", os.path.basename(timer), check=False)
        for path in (timer, service):
            system_files.remove(path, self.layout)

    def start(self, inst: Instance) -> None:
        self.systemctl("start", self.unit(inst))

    def restart(self, inst: Instance) -> None:
        self.systemctl("restart", self.unit(inst))

    def stop(self, inst: Instance) -> None:
        self.systemctl("stop", self.unit(inst), check=False)

    def destroy(self, instances: Sequence[Instance]) -> None:
        if not which("systemctl"):
            return
        self.remove_renew_timer()
        legacy = self.legacy_stem()
        for inst in instances:  # candidates (from the state) included: unit() tells apart
            self.systemctl("disable", "--now", self.unit(inst), check=False)
            if legacy:
                self.systemctl("disable", "--now", self.unit(inst, legacy), check=False)
        for stem in (self.stem, self.candidate_stem, legacy):
            if stem:
                system_files.remove(self.unit_path(stem), self.layout)
        self.systemctl("daemon-reload", check=False)

    def log_tail(self, inst: Instance) -> str:
        text = super().log_tail(inst)
        journalctl = which("journalctl")
        if text or not journalctl:
            return text
        proc = run_cmd([journalctl, "-u", self.unit(inst), "-n", str(LOG_TAIL_LINES),
                        "--no-pager", "-o", "cat"], "journalctl", check=False)
        return f"--- journalctl -u {self.unit(inst)} ---\n{proc.stdout.strip()}"


def make_supervisor(payload: TargetPayload, layout: Layout, conf_dir: str | None = None,
                    name: str | None = None,
                    candidates: Sequence[Instance] | None = None) -> Supervisor:
    """deploy passes its DeployPayload (the files, their directory and name); destroy and
    status a TargetPayload and the directory and name the last deploy used. `candidates`:
    a release's candidates when not the DeployPayload's (systemd names their units apart)."""
    deploy = payload if isinstance(payload, DeployPayload) else None
    if deploy:
        name = deploy.name
    if payload.supervisor == "systemd":
        unit = deploy.systemd if deploy else None
        if candidates is None:
            candidates = deploy.rollout.candidates if deploy else ()
        return Systemd(payload, layout, conf_dir or (unit.unit_dir if unit else
                                                     SYSTEMD_UNIT_DIR), unit, name,
                      candidates)
    programs = deploy.supervisord if deploy else None
    directory = conf_dir or (programs.conf_dir if programs else SUPERVISOR_CONF_DIR)
    if payload.mode == "user":
        return UserSupervisord(payload, layout, directory, programs)
    return SystemSupervisord(payload, layout, directory, programs, name)
