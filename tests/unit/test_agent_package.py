"""The host agent is a package of the standard library only, shipped to hosts as one
deterministic zip archive that runs under the name the supervisord programs use."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gin_deploy.agent import bundle
from tests.unit.harness import ROOT

AGENT = ROOT / "gin_deploy" / "agent"
MODULES = sorted(AGENT.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_agent_imports_only_the_standard_library_and_itself(path: Path) -> None:
    foreign = {name.split(".")[0] for name in imported_modules(path)
               if name.split(".")[0] not in sys.stdlib_module_names
               and not name.startswith("gin_deploy.agent")}
    # cryptography is optional on hosts: certs.py falls back to the openssl CLI.
    assert foreign <= ({"cryptography"} if path.name == "certs.py" else set())


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_agent_is_python_3_9_syntax_and_small(path: Path) -> None:
    ast.parse(path.read_text(), feature_version=(3, 9))
    assert len(path.read_text().splitlines()) < 600


def test_payload_hints_evaluate_on_python_3_9() -> None:
    """wire.load evaluates payload.py's type hints on the host; `X | Y` needs 3.10."""
    tree = ast.parse((AGENT / "payload.py").read_text())
    assert not [node for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "__future__"]
    pep604 = [ast.unparse(node.annotation) for node in ast.walk(tree)
              if isinstance(node, ast.AnnAssign)
              and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                      for n in ast.walk(node.annotation))]
    assert not pep604


def test_the_archive_is_deterministic_and_holds_only_sources() -> None:
    data = bundle.archive_bytes()
    assert data == bundle.archive_bytes()
    assert data.startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert names[:2] == ["__main__.py", "gin_deploy/__init__.py"]
    assert set(names[2:]) == {f"gin_deploy/agent/{p.name}" for p in MODULES}
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}


def test_the_archive_changes_exactly_when_the_code_does(tmp_path: Path) -> None:
    copy = tmp_path / "agent"
    shutil.copytree(AGENT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"stale")
    (copy / "notes.txt").write_text("not code")
    assert bundle.archive_bytes(str(copy)) == bundle.archive_bytes()
    (copy / "cli.py").write_text((copy / "cli.py").read_text() + "# changed\n")
    assert bundle.archive_bytes(str(copy)) != bundle.archive_bytes()


def test_build_writes_the_archive_and_returns_its_sha256(tmp_path: Path) -> None:
    path, sha = bundle.build(str(tmp_path))
    assert Path(path) == tmp_path / "hostctl.pyz"
    assert sha == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    mtime = Path(path).stat().st_mtime_ns
    assert bundle.build(str(tmp_path)) == (path, sha)
    assert Path(path).stat().st_mtime_ns == mtime  # untouched when unchanged


def test_the_archive_runs_alone_under_its_on_host_name(tmp_path: Path) -> None:
    agent = tmp_path / "bin" / "hostctl.py"
    agent.parent.mkdir()
    agent.write_bytes(bundle.archive_bytes())
    # -I: no site-packages, no PYTHONPATH, no working directory on sys.path.
    proc = subprocess.run([sys.executable, "-I", str(agent), "destroy"],
                          input=json.dumps({"app": "a", "stateDir": str(tmp_path / "gone"),
                                            "mode": "user", "supervisor": "supervisord",
                                            "instances": [{"name": "a-1", "port": 1000}]}),
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"destroyed": True, "existed": False,
                                       "stateDir": str(tmp_path / "gone")}


def test_stacks_deployed_before_the_package_can_still_be_destroyed(tmp_path: Path) -> None:
    # Their recorded delete command runs gin_deploy/hostctl.py.
    proc = subprocess.run([sys.executable, str(ROOT / "gin_deploy" / "hostctl.py"), "destroy"],
                          input=json.dumps({"app": "a", "stateDir": str(tmp_path / "gone"),
                                            "mode": "user", "supervisor": "supervisord",
                                            "instances": [{"name": "a-1", "port": 1000}]}),
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["destroyed"] is True
