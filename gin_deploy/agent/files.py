"""Files the agent writes: atomically, idempotently, with the mode they must have."""

from __future__ import annotations

import contextlib
import hashlib
import os

from gin_deploy.agent.output import HostError

LOG_TAIL_LINES = 20


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

