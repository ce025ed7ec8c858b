"""Files the agent writes: atomically, idempotently, with the mode they must have.

The agent often runs as root in directories others may share, so a write never opens a
path it did not just create: every file is written to a fresh temp file (mkstemp:
O_CREAT|O_EXCL|O_NOFOLLOW, unpredictable name) in the same directory and renamed over the
target, which replaces a planted symlink instead of following it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import tempfile

from gin_deploy.agent.output import HostError

LOG_TAIL_LINES = 20


def write_file(path: str, data: str | bytes, mode: int = 0o644) -> bool:
    """Atomically write `data` with `mode`; return False when it was already so."""
    raw = data.encode() if isinstance(data, str) else data
    if read_regular(path) == raw and stat.S_IMODE(os.lstat(path).st_mode) == mode:
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=os.path.dirname(path))
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def read_regular(path: str) -> bytes | None:
    """The content of `path` if it is a regular file (never through a symlink), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        return fh.read()


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def atomic_symlink(target: str, link: str) -> None:
    """Point `link` at `target` in one rename, so readers never see it missing."""
    # symlink() never follows or reuses an existing name; the suffix is unpredictable.
    tmp = f"{link}.tmp-{secrets.token_hex(8)}"
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

