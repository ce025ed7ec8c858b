"""The agent as one file: a zip archive of this package that `python3 FILE ...` runs.

Python runs a zip archive given by path whatever its extension, so on the host the
archive keeps the name the rendered supervisord programs use, <stateDir>/bin/hostctl.py.
The archive is deterministic (entries sorted, fixed timestamps and modes, stored rather
than compressed, no byte-code), so its sha256 changes only when the agent's code does:
the program uses it as the upload trigger.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

from gin_deploy.agent.files import write_file

ARCHIVE_NAME = "hostctl.pyz"
SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = b"import sys\n\nfrom gin_deploy.agent.cli import main\n\nsys.exit(main())\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def archive_bytes(package: str | None = None) -> bytes:
    """The archive built from the source files of this package (or a copy of it)."""
    package = package or os.path.dirname(os.path.abspath(__file__))
    # gin_deploy/__init__.py is written empty: the agent needs nothing else of gin_deploy.
    entries = {"__main__.py": MAIN, "gin_deploy/__init__.py": b""}
    for name in os.listdir(package):
        if name.endswith(".py"):
            with open(os.path.join(package, name), "rb") as fh:
                entries[f"gin_deploy/agent/{name}"] = fh.read()
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # Unix, whichever system builds it
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return buf.getvalue()


def running_archive() -> str | None:
    """The archive this agent runs from, or None when it runs from its source files."""
    archive = getattr(globals().get("__loader__"), "archive", None)
    return archive if isinstance(archive, str) else None


def agent_bytes() -> bytes:
    """What to install as <stateDir>/bin/hostctl.py: this very archive, or one built now."""
    archive = running_archive()
    if archive is None:
        return archive_bytes()
    with open(archive, "rb") as fh:
        return fh.read()


def build(out_dir: str) -> tuple[str, str]:
    """Write the archive to `out_dir` (only when it differs); return (path, sha256)."""
    data = archive_bytes()
    path = os.path.join(out_dir, ARCHIVE_NAME)
    write_file(path, data, 0o644)
    return path, hashlib.sha256(data).hexdigest()
