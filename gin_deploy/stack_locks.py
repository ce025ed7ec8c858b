"""Stale stack locks on a local (file://) backend: find them, explain them, clear them.

A `pulumi up` that is killed (kill -9, a closed laptop, a cancelled CI job) leaves its
lock file behind in the backend, and every later operation on that stack is refused
until someone finds `pulumi cancel`. On a file backend the lock names its holder's pid
and host, so when the holder was on this host and that process is gone, we can say
exactly that. Locks held by a live process, or by another host, are never touched:
only their holder knows whether the operation is still running.

    python -m gin_deploy.stack_locks --stack dev            # exit 3 when a stale lock blocks
    python -m gin_deploy.stack_locks --stack dev --clear    # remove only the stale ones
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

from gin_deploy.agent.processes import pid_alive


@dataclass(frozen=True)
class StackLock:
    path: Path
    pid: int
    hostname: str
    username: str
    timestamp: str

    @property
    def here(self) -> bool:
        return self.hostname == socket.gethostname()

    @property
    def stale(self) -> bool:
        """Held by a process of this host that no longer runs (or whose pid now belongs
        to something that is not pulumi)."""
        return self.here and not _pulumi_alive(self.pid)

    def describe(self) -> str:
        return f"pulumi pid {self.pid} on {self.hostname}, since {self.timestamp}"


def _pulumi_alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the signal check
    return b"pulumi" in cmdline


def file_backend_dir(backend_url: str) -> Path | None:
    """The directory of a file:// backend URL (query such as ?no_tmp_dir dropped)."""
    url = urlparse(backend_url)
    if url.scheme != "file":
        return None
    return Path(unquote(url.netloc + url.path)).expanduser()


def project_name(work_dir: Path) -> str:
    data = yaml.safe_load((work_dir / "Pulumi.yaml").read_text()) or {}
    return str(data.get("name", ""))


def find_locks(backend_url: str, project: str, stack: str) -> list[StackLock]:
    """The lock files of `stack` on a file backend ([] for other backends)."""
    root = file_backend_dir(backend_url)
    if root is None:
        return []
    dirs = [root / ".pulumi" / "locks" / "organization" / project / stack,
            root / ".pulumi" / "locks" / stack]          # project-scoped and legacy layouts
    locks = []
    for directory in dirs:
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
            try:
                data = json.loads(path.read_text())
                locks.append(StackLock(path, int(data["pid"]), str(data["hostname"]),
                                       str(data.get("username", "")),
                                       str(data.get("timestamp", ""))))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written or not a lock: leave it to pulumi
    return locks


def stale_message(stack: str, stale: list[StackLock]) -> str:
    holders = "; ".join(lock.describe() for lock in stale)
    return (f"stack {stack!r} is locked by an operation that is no longer running ({holders}): "
            f"it was interrupted. Clear the lock with `pulumi cancel --stack {stack} --yes` "
            f"(or rerun with --clear-stale-lock), then run `up` again: it converges.")


def clear(locks: list[StackLock]) -> None:
    """Remove exactly these lock files (and the backend's metadata files beside them)."""
    for lock in locks:
        for path in (lock.path, lock.path.with_name(lock.path.name + ".attrs")):
            path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    from gin_deploy import automation

    parser = argparse.ArgumentParser(prog="python -m gin_deploy.stack_locks",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", "-s", required=True)
    parser.add_argument("--clear", action="store_true", help="remove stale locks")
    args = parser.parse_args(argv)
    settings = automation.Settings()
    locks = find_locks(settings.env()["PULUMI_BACKEND_URL"], project_name(settings.work_dir),
                       args.stack)
    stale = [lock for lock in locks if lock.stale]
    if not stale:
        return 0
    if args.clear:
        clear(stale)
        print(f"cleared the stale lock of stack {args.stack!r} ("
              + "; ".join(lock.describe() for lock in stale) + ")", file=sys.stderr)
        return 0
    print(f"error: {stale_message(args.stack, stale)}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
