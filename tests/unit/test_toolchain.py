"""The Pulumi toolchain pins and installer, and gin-deploy's own language host (no network)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi_command
import pytest
from pulumi.runtime.proto import language_pb2

ROOT = Path(__file__).resolve().parents[2]
# The stand-in language host is toolchain, not product: a script under tools/.
_spec = importlib.util.spec_from_file_location(
    "pulumi_language_python", ROOT / "tools" / "langhost" / "pulumi_language_python.py")
assert _spec is not None and _spec.loader is not None
langhost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(langhost)
SCRIPT = ROOT / "scripts" / "install-pulumi.sh"


def read_versions() -> dict[str, str]:
    lines = (ROOT / "tools" / "versions.env").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    assert all(len(pair) == 2 for pair in pairs), pairs
    return dict(pairs)


PULUMI_PINS = {"PULUMI_CLI_VERSION", "PULUMI_SDK_VERSION", "PULUMI_LANGHOST_VERSION",
               "PULUMI_COMMAND_VERSION"}
KUBERNETES_PINS = {"KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION",
                   "PULUMI_KUBERNETES_PROVIDER_VERSION", "PULUMI_KUBERNETES_PROVIDER_MODULE"}
KUBERNETES_SCRIPT = ROOT / "scripts" / "install-kubernetes.sh"


def test_versions_env_has_exactly_the_pins_the_install_scripts_read() -> None:
    versions = read_versions()
    assert set(versions) == PULUMI_PINS | KUBERNETES_PINS
    for key, value in versions.items():
        pattern = (r"v\d+\.\d+\.\d+-(\d+\.)?\d{14}-[0-9a-f]{12}"  # a Go pseudo-version
                   if key == "PULUMI_KUBERNETES_PROVIDER_MODULE" else r"\d+\.\d+\.\d+")
        assert re.fullmatch(pattern, value), (key, value)


def test_pulumi_pins_match_the_python_requirements() -> None:
    versions = read_versions()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"pulumi=={versions['PULUMI_SDK_VERSION']}" in deps
    assert f"pulumi-command=={versions['PULUMI_COMMAND_VERSION']}" in deps
    # What is installed, and the provider version the Python package asks the engine for.
    assert importlib.metadata.version("pulumi") == versions["PULUMI_SDK_VERSION"]
    plugin = json.loads((Path(pulumi_command.__file__).parent / "pulumi-plugin.json").read_text())
    assert plugin == {"resource": True, "name": "command",
                      "version": versions["PULUMI_COMMAND_VERSION"]}


def test_the_cli_is_at_least_as_new_as_the_sdk() -> None:
    """The CLI accepts older SDKs (no lockstep), not newer ones: an SDK may need engine features
    that an older CLI lacks."""
    versions = read_versions()
    cli, sdk = (tuple(map(int, versions[key].split("."))) for key in
                ("PULUMI_CLI_VERSION", "PULUMI_SDK_VERSION"))
    assert cli >= sdk, versions


def test_install_script_is_valid_strict_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert os.access(SCRIPT, os.X_OK)
    # Only tools/versions.env writes versions (comments may name one as an example).
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for key in PULUMI_PINS:
        assert read_versions()[key] not in code, key


def test_install_script_help_needs_no_network() -> None:
    out = subprocess.run([str(SCRIPT), "--help"], check=True, capture_output=True, text=True)
    assert "--retry" in out.stdout and "tools/versions.env" in out.stdout
    # The whole header comment, up to its last line.
    assert out.stdout.rstrip().endswith('export PATH="$PWD/.tools/bin:$PATH"'), out.stdout


def test_kubernetes_install_script_is_valid_strict_bash_and_writes_no_version() -> None:
    subprocess.run(["bash", "-n", str(KUBERNETES_SCRIPT)], check=True)
    text = KUBERNETES_SCRIPT.read_text()
    assert "set -euo pipefail" in text and os.access(KUBERNETES_SCRIPT, os.X_OK)
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for key in KUBERNETES_PINS:
        assert read_versions()[key] not in code, key
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert setup.index("install-pulumi.sh\"") < setup.index("install-kubernetes.sh\"")


def _cache_dirs(script: Path, versions: str, tmp_path: Path) -> dict[str, str]:
    """An install script's cache directories, listed from a copy of tools/ (no network)."""
    copy = tmp_path / f"repo-{len(list(tmp_path.iterdir()))}"
    (copy / "scripts").mkdir(parents=True)
    shutil.copytree(ROOT / "tools", copy / "tools")
    (copy / "tools" / "versions.env").write_text(versions)
    shutil.copy(script, copy / "scripts")
    arg = "--print-cache-dirs" if script == KUBERNETES_SCRIPT else "--print-cache-dir"
    out = subprocess.run([str(copy / "scripts" / script.name), arg], check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}).stdout
    if script != KUBERNETES_SCRIPT:
        return {"pulumi": out.strip()}
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_each_cache_key_covers_only_its_own_pins(tmp_path: Path) -> None:
    """Bumping one piece rebuilds that piece only; the Pulumi CLI ignores Kubernetes pins."""
    text = (ROOT / "tools" / "versions.env").read_text()
    kwok_bumped = re.sub(r"^KWOK_VERSION=.*$", "KWOK_VERSION=9.9.9", text, flags=re.M)
    before = _cache_dirs(KUBERNETES_SCRIPT, text, tmp_path)
    after = _cache_dirs(KUBERNETES_SCRIPT, kwok_bumped, tmp_path)
    assert set(before) == {"kubernetes", "etcd", "kwok", "pulumi-kubernetes"}
    assert {piece for piece in before if before[piece] != after[piece]} == {"kwok"}
    assert _cache_dirs(SCRIPT, text, tmp_path) == _cache_dirs(SCRIPT, kwok_bumped, tmp_path)
    # The SDK (and the stand-in language host, which is not cached) never rebuild the CLI.
    for key in ("PULUMI_SDK_VERSION", "PULUMI_LANGHOST_VERSION"):
        bumped = re.sub(rf"^{key}=.*$", f"{key}=9.9.9", text, flags=re.M)
        assert _cache_dirs(SCRIPT, text, tmp_path) == _cache_dirs(SCRIPT, bumped, tmp_path), key
    for key in ("PULUMI_CLI_VERSION", "PULUMI_COMMAND_VERSION"):
        bumped = re.sub(rf"^{key}=.*$", f"{key}=9.9.9", text, flags=re.M)
        assert _cache_dirs(SCRIPT, text, tmp_path) != _cache_dirs(SCRIPT, bumped, tmp_path), key
    cli_bumped = re.sub(r"^PULUMI_CLI_VERSION=.*$", "PULUMI_CLI_VERSION=9.9.9", text, flags=re.M)
    assert "/pulumi-v9.9.9_" in _cache_dirs(SCRIPT, cli_bumped, tmp_path)["pulumi"]


def test_install_script_reads_each_pin_it_needs_by_name(tmp_path: Path) -> None:
    text = (ROOT / "tools" / "versions.env").read_text()
    for key in ("PULUMI_CLI_VERSION", "PULUMI_SDK_VERSION", "PULUMI_COMMAND_VERSION"):
        broken = re.sub(rf"^{key}=.*$", f"{key}=latest", text, flags=re.M)
        with pytest.raises(subprocess.CalledProcessError) as failed:
            _cache_dirs(SCRIPT, broken, tmp_path)
        assert f"{key} missing or malformed" in failed.value.stderr



# ---------------------------------------------------------------- langhost


@pytest.mark.parametrize(("argv", "expected"), [
    (["127.0.0.1:4000"], "127.0.0.1:4000"),
    (["--logtostderr", "-v=9", "--tracing", "http://t:9411", "127.0.0.1:4000"], "127.0.0.1:4000"),
    ([], ""),
])
def test_engine_address_is_the_last_positional_argument(argv: list[str], expected: str) -> None:
    assert langhost.engine_address(argv) == expected


def test_entry_point_resolution(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "main.py").write_text("")
    assert langhost.entry_point(tmp_path) == tmp_path / "__main__.py"
    assert langhost.entry_point(tmp_path, ".") == tmp_path / "__main__.py"
    assert langhost.entry_point(tmp_path, "src") == tmp_path / "src" / "__main__.py"
    assert langhost.entry_point(tmp_path, "main.py") == tmp_path / "main.py"
    assert langhost.entry_point(str(tmp_path), "missing.py") == tmp_path / "missing.py"


def test_program_environment_is_restored_and_project_modules_dropped(tmp_path: Path) -> None:
    (tmp_path / "tinymod_for_langhost.py").write_text("VALUE = 1\n")
    main = tmp_path / "__main__.py"
    cwd, path, argv = os.getcwd(), list(sys.path), list(sys.argv)
    with langhost.program_environment(main, ["a", "b"]):
        assert Path.cwd() == tmp_path
        assert sys.path[0] == str(tmp_path)
        assert sys.argv == [str(main), "a", "b"]
        import tinymod_for_langhost  # type: ignore[import-not-found]  # noqa: F401
    assert (os.getcwd(), sys.path, sys.argv) == (cwd, path, argv)
    assert "tinymod_for_langhost" not in sys.modules


def test_user_traceback_starts_at_the_program(tmp_path: Path) -> None:
    main = tmp_path / "__main__.py"
    main.write_text("def boom():\n    raise ValueError('boom')\nboom()\n")
    try:
        langhost.runpy.run_path(str(main))
    except ValueError:
        text = langhost.user_traceback(main)
    assert text.splitlines()[1] == f'  File "{main}", line 3, in <module>'
    assert "runpy" not in text and text.rstrip().endswith("ValueError: boom")


def test_langhost_pin_is_the_sdk_it_runs_on() -> None:
    """gin-deploy's language host builds on the SDK's private language server: bumping the SDK
    means proving the host again (tests/e2e/test_langhost.py) and then its pin."""
    versions = read_versions()
    assert versions["PULUMI_LANGHOST_VERSION"] == versions["PULUMI_SDK_VERSION"], (
        "the SDK pin moved: run tests/e2e/test_langhost.py with it, then set "
        "PULUMI_LANGHOST_VERSION in tools/versions.env to it")


def test_langhost_reports_its_pin_and_names_it_when_missing(tmp_path: Path) -> None:
    host = langhost.LanguageHost("127.0.0.1:1")
    assert host.GetPluginInfo(None, None).version == read_versions()["PULUMI_LANGHOST_VERSION"]
    versions = tmp_path / "versions.env"
    versions.write_text("PULUMI_SDK_VERSION=3.1.0\nPULUMI_LANGHOST_VERSION=3.0.0\n")
    assert langhost.pinned_version(versions) == "3.0.0"
    versions.write_text("PULUMI_SDK_VERSION=3.1.0\n")
    with pytest.raises(RuntimeError, match="PULUMI_LANGHOST_VERSION missing or malformed"):
        langhost.pinned_version(versions)


def test_plugin_info_and_minimal_rpcs() -> None:
    host = langhost.LanguageHost("127.0.0.1:1")
    assert not host.GetRequiredPackages(None, None).packages
    assert b"scripts/setup.sh" in next(iter(host.InstallDependencies(None, None))).stdout
    deps = host.GetProgramDependencies(None, None).dependencies
    assert {"pulumi", "pulumi-command"} <= {d.name.lower().replace("_", "-") for d in deps}
    assert not host.RuntimeOptionsPrompts(None, None).prompts


def test_run_plugin_streams_output_and_exit_code(tmp_path: Path) -> None:
    (tmp_path / "__main__.py").write_text(
        "import os, sys\nprint('out', sys.argv[1:], os.getcwd())\n"
        "print('err', os.environ['X'], file=sys.stderr)\nsys.exit(3)\n")
    request = language_pb2.RunPluginRequest(
        pwd=str(tmp_path.parent), args=["engine:1"], env=["X=y", f"PATH={os.environ['PATH']}"],
        info=language_pb2.ProgramInfo(root_directory=str(tmp_path),
                                      program_directory=str(tmp_path), entry_point="."))
    callbacks: list[Any] = []
    context = SimpleNamespace(add_callback=callbacks.append)
    replies = list(langhost.LanguageHost("").RunPlugin(request, context))
    stdout = b"".join(r.stdout for r in replies if r.WhichOneof("output") == "stdout")
    stderr = b"".join(r.stderr for r in replies if r.WhichOneof("output") == "stderr")
    assert stdout.decode() == f"out ['engine:1'] {tmp_path.parent}\n"
    assert stderr.decode() == "err y\n"
    assert replies[-1].WhichOneof("output") == "exitcode" and replies[-1].exitcode == 3
    assert len(callbacks) == 1
