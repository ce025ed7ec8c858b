"""Files that projects ship in their Go modules (CRDs, Helm charts), fetched with
`go mod download` into the Go module cache: pinned by version, never committed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def go_module_dir(module: str, version: str, workdir: Path) -> Path:
    """The module's directory in the Go module cache, downloading it if needed."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed (needed to fetch the pinned CRDs as Go modules)")
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    done = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=workdir,
                          check=False)
    info = json.loads(done.stdout or "{}")
    assert done.returncode == 0 and "Dir" in info, f"go mod download {module}@{version}: " \
        f"{info.get('Error') or done.stderr}"
    return Path(info["Dir"])
