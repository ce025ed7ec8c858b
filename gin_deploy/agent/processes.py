"""Running tools and watching processes on the host."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from gin_deploy.agent.files import read_text
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.output import HostError, log

SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
DAEMON_START_TIMEOUT = 30.0


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


def proc_table() -> dict[int, tuple[int, str, str]]:
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
    return [p for p, (ppid, _exe, _cmd) in proc_table().items() if ppid == pid]


def target_processes(layout: Layout) -> list[int]:
    """Processes belonging to this target (its binaries, its nginx/supervisord and children)."""
    table = proc_table()
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
