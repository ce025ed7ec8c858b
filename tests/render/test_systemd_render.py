"""systemd renderer: unit text, `systemd-analyze verify`/`security`, and EnvironmentFile parsing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.render.systemd import SystemdService, render_env_file, render_template_unit
from tests.render.conftest import find_tool, require_tool

MAX_EXPOSURE = 2.0
P = "/srv/hello-gin"


def make_service(**overrides: Any) -> SystemdService:
    fields: dict[str, Any] = {
        "name": "hello-gin",
        "description": "hello-gin API",
        "exec_start": f"{P}/current/app",
        "working_directory": f"{P}/current",
        "environment_file": f"{P}/env/app.env",
    }
    fields.update(overrides)
    return SystemdService(**fields)


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# ---------------------------------------------------------------- pure rendering


def test_unit_runs_one_instance_per_port() -> None:
    s = make_service(description="hello-gin 100% API")
    lines = settings(render_template_unit(s))
    assert s.unit_name == "hello-gin@.service"
    assert "Description=hello-gin 100%% API (port %i)" in lines
    assert f"ExecStart={P}/current/app" in lines
    assert f"WorkingDirectory={P}/current" in lines
    assert f"EnvironmentFile={P}/env/app.env" in lines
    assert "Environment=PORT=%i BIND_ADDR=127.0.0.1" in lines
    assert "Type=exec" in lines
    assert "WantedBy=multi-user.target" in lines


def test_unit_stops_gracefully_and_restarts_with_limits() -> None:
    s = make_service(
        timeout_stop_s=33, restart_sec_s=2, start_limit_interval_s=120, start_limit_burst=4
    )
    lines = settings(render_template_unit(s))
    for line in (
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        "TimeoutStopSec=33",
        "Restart=on-failure",
        "RestartSec=2",
        "StartLimitIntervalSec=120",
        "StartLimitBurst=4",
    ):
        assert line in lines
    # StartLimit* belong to [Unit]; in [Service] systemd ignores them.
    unit_section = render_template_unit(s).split("[Service]")[0]
    assert "StartLimitBurst=4" in unit_section


def test_unit_is_sandboxed() -> None:
    lines = settings(render_template_unit(make_service()))
    for line in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "SystemCallArchitectures=native",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "UMask=0077",
        "DevicePolicy=closed",
    ):
        assert line in lines
    assert not [line for line in lines if line.startswith("IPAddress")]
    assert not [line for line in lines if line.startswith(("LogsDirectory", "ReadOnlyPaths"))]


def test_ip_allow_list_denies_everything_else() -> None:
    lines = settings(
        render_template_unit(make_service(ip_address_allow=("localhost", "10.0.0.0/8")))
    )
    assert "IPAddressDeny=any" in lines
    assert "IPAddressAllow=localhost 10.0.0.0/8" in lines


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "ProtectHome=yes"),
        ({"exec_start": "/home/deploy/hello-gin/current/app"}, "ProtectHome=read-only"),
        ({"environment_file": "/root/hello-gin.env"}, "ProtectHome=read-only"),
        ({"read_only_paths": ("/home/deploy/shared",)}, "ProtectHome=read-only"),
        ({"working_directory": "/homestead/app"}, "ProtectHome=yes"),
    ],
)
def test_protect_home_follows_the_paths(overrides: dict[str, Any], expected: str) -> None:
    assert expected in settings(render_template_unit(make_service(**overrides)))


@pytest.mark.parametrize(
    "log_directory", ["hello-gin", "/var/log/hello-gin", "/var/log/hello-gin/"]
)
def test_log_directory_becomes_a_logs_directory(log_directory: str) -> None:
    s = make_service(log_directory=log_directory, read_only_paths=("/etc/ssl", "/srv/shared"))
    lines = settings(render_template_unit(s))
    assert "LogsDirectory=hello-gin" in lines
    assert "LogsDirectoryMode=0750" in lines
    assert "ReadOnlyPaths=/etc/ssl /srv/shared" in lines


def test_env_file_quotes_like_systemd_expects() -> None:
    text = render_env_file({"B": 'a"b\\c`d$e', "A": "plain", "EMPTY": "", "TAB": "x\ty"})
    assert text.splitlines() == [
        "# Generated by gin-deploy; local edits are overwritten.",
        'A="plain"',
        'B="a\\"b\\\\c\\`d\\$e"',
        'EMPTY=""',
        'TAB="x\ty"',
    ]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "hello@gin"}, "name"),
        ({"name": ""}, "name"),
        ({"description": " "}, "description"),
        ({"description": "two\nlines"}, "description"),
        ({"description": "trailing\\"}, "description"),
        ({"exec_start": "app"}, "exec_start"),
        ({"exec_start": "/srv/app --flag"}, "exec_start"),
        ({"working_directory": "/srv/$HOME"}, "working_directory"),
        ({"environment_file": "-/srv/env"}, "environment_file"),
        ({"read_only_paths": ("relative",)}, "read_only_paths"),
        ({"read_only_paths": "/etc"}, "read_only_paths"),
        ({"log_directory": "/srv/log"}, "log_directory"),
        ({"log_directory": "../etc"}, "log_directory"),
        ({"log_directory": "a b"}, "log_directory"),
        ({"timeout_stop_s": 0}, "timeout_stop_s"),
        ({"restart_sec_s": -1}, "restart_sec_s"),
        ({"start_limit_interval_s": 0}, "start_limit_interval_s"),
        ({"start_limit_burst": 0}, "start_limit_burst"),
        ({"ip_address_allow": ()}, "ip_address_allow"),
        ({"ip_address_allow": "localhost"}, "ip_address_allow"),
        ({"ip_address_allow": ("10.0.0.1/8",)}, "ip_address_allow"),
        ({"ip_address_allow": ("everywhere",)}, "ip_address_allow"),
    ],
)
def test_service_validation_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        make_service(**overrides)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRET": "a\nb"}, r"^env\[SECRET\]: .*newline"),
        ({"SECRET": "a\rb"}, r"^env\[SECRET\]: .*newline"),
        ({"SECRET": "a\x00b"}, r"^env\[SECRET\]: .*NUL"),
        ({"SECRET": "a\x1bb"}, r"^env\[SECRET\]: .*control"),
        ({"1ABC": "x"}, r"^env: key '1ABC'"),
        ({"A-B": "x"}, r"^env: key 'A-B'"),
        ({"": "x"}, r"^env: key ''"),
        ({"PORT": "80"}, r"^env\[PORT\]: .*set by the unit"),
        ({"BIND_ADDR": "::1"}, r"^env\[BIND_ADDR\]: .*set by the unit"),
        ({"N": 5}, r"^env\[N\]: value must be a string"),
    ],
)
def test_env_file_validation_names_the_key(env: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_env_file(env)


def test_env_file_reserved_keys_can_be_changed() -> None:
    assert 'PORT="80"' in render_env_file({"PORT": "80"}, reserved=())


# ---------------------------------------------------------------- systemd-analyze


def install_instance(tmp_path: Path, s: SystemdService, port: int = 9080) -> Path:
    """Write the template and an instance symlink to it; return the instance path."""
    template = tmp_path / s.unit_name
    template.write_text(render_template_unit(s))
    instance = tmp_path / f"{s.name}@{port}.service"
    instance.symlink_to(template.name)
    return instance


def service_in(tmp_path: Path, **overrides: Any) -> SystemdService:
    """A service whose binary, directory and env file exist under tmp_path."""
    release = tmp_path / "current"
    release.mkdir(exist_ok=True)
    binary = release / "app"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    env = tmp_path / "app.env"
    env.write_text(render_env_file({"GIN_MODE": "release"}))
    env.chmod(0o600)
    fields: dict[str, Any] = {
        "exec_start": str(binary),
        "working_directory": str(release),
        "environment_file": str(env),
    }
    fields.update(overrides)
    return make_service(**fields)


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze")
    return subprocess.run(
        [tool, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
    )


@pytest.mark.host
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"log_directory": "hello-gin", "read_only_paths": ("/etc/ssl",)},
        {"ip_address_allow": ("localhost",), "description": "hello 100% gin"},
    ],
    ids=["defaults", "logs-readonly", "ip-allow"],
)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, overrides: dict[str, Any]) -> None:
    instance = install_instance(tmp_path, service_in(tmp_path, **overrides))
    result = analyze("verify", "--man=no", str(instance), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and unparsable values, but names the file.
    assert "hello-gin@" not in result.stderr, result.stderr


@pytest.mark.host
def test_systemd_analyze_verify_catches_breakage(tmp_path: Path) -> None:
    """The check above can fail: a missing binary is an error, a typo a complaint."""
    s = service_in(tmp_path)
    instance = install_instance(tmp_path, s)
    template = tmp_path / s.unit_name
    template.write_text(template.read_text().replace("LockPersonality=", "LockPersonalty="))
    Path(s.exec_start).unlink()
    result = analyze("verify", "--man=no", str(instance), cwd=tmp_path)
    assert result.returncode != 0
    assert "is not executable" in result.stderr
    assert "Unknown key" in result.stderr and "LockPersonalty" in result.stderr


def exposure(tmp_path: Path, s: SystemdService) -> float:
    instance = install_instance(tmp_path, s)
    result = analyze("security", "--offline=true", "--no-pager", str(instance), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


@pytest.mark.host
def test_security_exposure_is_low(tmp_path: Path) -> None:
    default = exposure(tmp_path / "default", service_in(_mkdir(tmp_path / "default")))
    locked = exposure(
        tmp_path / "locked",
        service_in(_mkdir(tmp_path / "locked"), name="locked", ip_address_allow=("localhost",)),
    )
    assert default <= MAX_EXPOSURE
    assert locked < default  # the IP allow-list is the remaining knob


@pytest.mark.host
def test_security_threshold_gate(tmp_path: Path) -> None:
    """systemd-analyze itself enforces the bound (threshold is exposure x 10)."""
    instance = install_instance(tmp_path, service_in(tmp_path))
    threshold = str(int(MAX_EXPOSURE * 10))
    ok = analyze(
        "security", "--offline=true", f"--threshold={threshold}", str(instance), cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stdout[-400:]
    too_strict = analyze("security", "--offline=true", "--threshold=1", str(instance), cwd=tmp_path)
    assert too_strict.returncode != 0


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# ---------------------------------------------------------------- EnvironmentFile parsing

TRICKY_VALUES = {
    "QUOTES": "say \"hi\" and 'bye'",
    "BACKSLASH": "C:\\path\\n\\\\end\\",
    "BACKTICK": "`id`",
    "SPACES": "  padded  ",
    "HASH": "#not a comment ;nor this",
    "EQUALS": "a=b=c",
    "PCT": "100%i %h",
    "UNICODE": "héllo wörld ✓",
    "TAB": "a\tb",
    "EMPTY": "",
}
DOLLAR_VALUES = {"DOLLAR": "$HOME ${PATH} $(id) $", "PASSWORD": "p@$$w0rd"}


@pytest.mark.host
def test_env_file_reads_back_in_a_posix_shell(tmp_path: Path) -> None:
    """systemd documents EnvironmentFile quoting as POSIX double-quote rules; sh must agree."""
    sh = shutil.which("sh") or pytest.skip("sh is not installed")
    values = {**TRICKY_VALUES, **DOLLAR_VALUES}
    env_file = tmp_path / "app.env"
    env_file.write_text(render_env_file(values))
    script = (
        'set -a; . "$1"; for k in '
        + " ".join(values)
        + '; do eval "printf \'%s\\0\' \\"\\$$k\\""; done'
    )
    result = subprocess.run(
        [sh, "-c", script, "sh", str(env_file)],
        capture_output=True,
        timeout=10,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    assert result.stdout.decode().split("\0")[:-1] == list(values.values())


ENV_GENERATOR = "30-systemd-environment-d-generator"


@pytest.mark.host
def test_env_file_parsed_by_systemd(tmp_path: Path) -> None:
    """systemd's own env-file parser (via the environment.d generator) reads the same values.

    The generator runs the parser used for EnvironmentFile= and prints each
    assignment back, re-quoted with the same rules. Values with '$' are left
    out: environment.d (unlike EnvironmentFile=) expands variables. So is the
    tab, which the generator prints back as a C escape sh would not decode.
    """
    values = {k: v for k, v in TRICKY_VALUES.items() if "\t" not in v}
    generator = find_tool(
        ENV_GENERATOR,
        "/usr/lib/systemd/user-environment-generators",
        "/lib/systemd/user-environment-generators",
    )
    if generator is None:
        pytest.skip(f"{ENV_GENERATOR} is not installed")
    sh = shutil.which("sh") or pytest.skip("sh is not installed")
    (tmp_path / "environment.d").mkdir()
    (tmp_path / "environment.d" / "50-app.conf").write_text(render_env_file(values))
    result = subprocess.run(
        [generator],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        env={"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    # Decode the generator's (shell-quoted) output with sh, then compare.
    printed = [line for line in result.stdout.splitlines() if line.split("=")[0] in values]
    (tmp_path / "printed.env").write_text("\n".join(printed) + "\n")
    script = (
        'set -a; . "$1"; for k in '
        + " ".join(values)
        + '; do eval "printf \'%s\\0\' \\"\\$$k\\""; done'
    )
    decoded = subprocess.run(
        [sh, "-c", script, "sh", str(tmp_path / "printed.env")],
        capture_output=True,
        timeout=10,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert decoded.stdout.decode().split("\0")[:-1] == list(values.values())


@pytest.mark.host
def test_renew_units_verify_and_name_the_state_dir(tmp_path: Path) -> None:
    """System-mode ACME targets renew through this timer (issue 16.3)."""
    from gin_deploy.render.systemd import render_renew_units

    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    command = f"{python} {tmp_path}/state/bin/hostctl.py renew --state {tmp_path}/state"
    units = render_renew_units("gin-deploy-p-s-app-renew", "certbot renew for app", command)
    (tmp_path / "gin-deploy-p-s-app-renew.service").write_text(units.service)
    timer = tmp_path / "gin-deploy-p-s-app-renew.timer"
    timer.write_text(units.timer)
    result = analyze("verify", "--man=no", str(timer), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "renew" not in result.stderr, result.stderr
    assert "OnCalendar=*-*-* 00,12:00:00" in units.timer and "Persistent=true" in units.timer
    # the agent recognises both as this target's files by the header and the state dir
    for text in (units.service, units.timer):
        assert text.startswith("# Generated by gin-deploy") and f"{tmp_path}/state/" in text
