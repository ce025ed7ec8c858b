"""supervisord renderer: text checks, parsing by the real supervisor package, and a live run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from gin_deploy.render.supervisor import SupervisorProgram, render_main_config, render_programs
from tests.render.conftest import find_tool

# Values that trip supervisord's parsers: commas and '=' (the key=value
# splitter), either quote character, '%' (expansion), ';'/'#' without a
# space before them (comments), spaces at the ends, and non-ASCII text.
TRICKY_ENV = (
    ("GIN_MODE", "release"),
    ("LIST", "a,b=c, d"),
    ("DQ", 'say "hi" now'),
    ("SQ", "it's fine"),
    ("PCT", "100%(host_node_name)s %% %"),
    ("SEMI", "a;b#c"),
    ("PAD", "  padded  "),
    ("EMPTY", ""),
    ("UNICODE", "héllo wörld"),
    ("URL", "https://user:pw@example.com:8443/a?b=c&d=e"),
)

P = "/srv/hello-gin"


def make_program(**overrides: Any) -> SupervisorProgram:
    fields: dict[str, Any] = {
        "name": "hello-gin-9080",
        "command": f"{P}/current/app",
        "directory": f"{P}/current",
        "stdout_log": f"{P}/log/9080.out.log",
        "stderr_log": f"{P}/log/9080.err.log",
    }
    fields.update(overrides)
    return SupervisorProgram(**fields)


def section(text: str, name: str) -> dict[str, str]:
    """key=value pairs of one [name] section (comments dropped)."""
    match = text.split(f"[{name}]\n", 1)[1].split("\n[", 1)[0]
    pairs = [line.split("=", 1) for line in match.splitlines() if "=" in line and line[0] != ";"]
    return {k.strip(): v.strip() for k, v in pairs}


# ---------------------------------------------------------------- pure rendering


def test_programs_text_has_the_lifecycle_settings() -> None:
    programs = (
        make_program(environment=(("GIN_MODE", "release"),), user="deploy"),
        make_program(
            name="hello-gin-9081",
            stdout_log=f"{P}/log/9081.log",
            stderr_log=f"{P}/log/9081.log",
            stop_wait_s=25,
        ),
    )
    text = render_programs("hello-gin", programs)
    assert section(text, "group:hello-gin") == {"programs": "hello-gin-9080,hello-gin-9081"}
    first = section(text, "program:hello-gin-9080")
    assert first == {
        "command": f"{P}/current/app",
        "directory": f"{P}/current",
        "user": "deploy",
        "autostart": "true",
        "autorestart": "true",
        "startsecs": "1",
        "startretries": "3",
        "stopsignal": "TERM",
        "stopwaitsecs": "15",
        "stopasgroup": "true",
        "killasgroup": "true",
        "stdout_logfile": f"{P}/log/9080.out.log",
        "stdout_logfile_maxbytes": "10MB",
        "stdout_logfile_backups": "5",
        "redirect_stderr": "false",
        "stderr_logfile": f"{P}/log/9080.err.log",
        "stderr_logfile_maxbytes": "10MB",
        "stderr_logfile_backups": "5",
        "environment": 'GIN_MODE="release"',
    }
    second = section(text, "program:hello-gin-9081")
    assert second["redirect_stderr"] == "true"
    assert "stderr_logfile" not in second
    assert "environment" not in second
    assert "user" not in second
    assert second["stopwaitsecs"] == "25"


def test_environment_quoting_and_percent_escaping() -> None:
    program = make_program(
        command=f"{P}/current/app --fmt=%H",
        environment=(("A", "x,y"), ("B", 'say "hi" now'), ("C", "50%")),
    )
    text = render_programs("g", (program,))
    values = section(text, "program:hello-gin-9080")
    assert values["command"] == f"{P}/current/app --fmt=%%H"
    assert values["environment"] == 'A="x,y",B=\'say "hi" now\',C="50%%"'


def test_main_config_text() -> None:
    text = render_main_config(
        state_dir=f"{P}/supervisor",
        socket_file=f"{P}/supervisor/supervisor.sock",
        pid_file=f"{P}/supervisor/supervisord.pid",
        log_file=f"{P}/supervisor/supervisord.log",
        include="programs/*.conf",
    )
    assert section(text, "unix_http_server") == {
        "file": f"{P}/supervisor/supervisor.sock",
        "chmod": "0700",
    }
    main = section(text, "supervisord")
    assert main["nodaemon"] == "false"
    assert main["childlogdir"] == f"{P}/supervisor"
    assert main["minfds"] == "256"
    assert main["umask"] == "027"
    assert section(text, "supervisorctl") == {"serverurl": f"unix://{P}/supervisor/supervisor.sock"}
    assert section(text, "include") == {"files": "programs/*.conf"}
    assert "supervisor.rpcinterface:make_main_rpcinterface" in text
    assert "inet_http_server" not in text


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "hello gin"}, "name"),
        ({"name": "a:b"}, "name"),
        ({"command": ""}, "command"),
        ({"command": "app --port 1"}, "command"),
        ({"command": "/bin/app 'unclosed"}, "command"),
        ({"command": "/bin/app ;comment"}, "command"),
        ({"command": "/bin/app\n[program:evil]"}, "command"),
        ({"directory": "relative"}, "directory"),
        ({"stdout_log": "/log/a b.log"}, "stdout_log"),
        ({"stderr_log": "/log/%(here)s.log"}, "stderr_log"),
        ({"environment": (("1BAD", "x"),)}, "environment"),
        ({"environment": (("A", "x"), ("A", "y"))}, "environment"),
        ({"environment": (("A", "x\ny"),)}, "environment"),
        ({"environment": (("A", "both ' and \""),)}, "environment"),
        ({"environment": (("A", '"quoted"'),)}, "environment"),
        ({"environment": (("A", "ends'"),)}, "environment"),
        ({"environment": (("A", "x #not a comment"),)}, "environment"),
        ({"environment": (("A", "at %(here)s"),)}, "environment"),
        ({"environment": (("A",),)}, "environment"),
        ({"environment": ((),)}, "environment"),
        ({"environment": (("A", 1),)}, "environment"),
        ({"stop_wait_s": 0}, "stop_wait_s"),
        ({"start_secs": -1}, "start_secs"),
        ({"start_retries": -1}, "start_retries"),
        ({"log_backups": -1}, "log_backups"),
        ({"log_max_bytes": "10 MB"}, "log_max_bytes"),
        ({"log_max_bytes": "10mb"}, "log_max_bytes"),
        ({"user": "Root Admin"}, "user"),
    ],
)
def test_program_validation_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}"):
        make_program(**overrides)


@pytest.mark.parametrize(
    ("group", "programs", "field"),
    [
        ("bad group", (make_program(),), "group"),
        ("g", (), "programs"),
        ("g", (make_program(), make_program()), "programs"),
    ],
)
def test_render_programs_validation(
    group: str, programs: tuple[SupervisorProgram, ...], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        render_programs(group, programs)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"state_dir": "state"}, "state_dir"),
        ({"socket_file": "/run/a b.sock"}, "socket_file"),
        ({"pid_file": "/run/x;y"}, "pid_file"),
        ({"log_file": "log"}, "log_file"),
        ({"include": "a.conf b.conf"}, "include"),
        ({"include": ""}, "include"),
        ({"include": "%(here)s/*.conf"}, "include"),
        ({"minfds": 1}, "minfds"),
        ({"minprocs": 0}, "minprocs"),
    ],
)
def test_main_config_validation(overrides: dict[str, Any], field: str) -> None:
    kwargs: dict[str, Any] = {
        "state_dir": "/s",
        "socket_file": "/s/sock",
        "pid_file": "/s/pid",
        "log_file": "/s/log",
        "include": "/s/*.conf",
    }
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        render_main_config(**kwargs)


# ---------------------------------------------------------------- real parsing


def write_tree(tmp_path: Path, programs: tuple[SupervisorProgram, ...]) -> Path:
    """supervisord.conf + programs/hello-gin.conf under tmp_path; returns the main config."""
    (tmp_path / "programs").mkdir()
    (tmp_path / "log").mkdir()
    (tmp_path / "programs" / "hello-gin.conf").write_text(render_programs("hello-gin", programs))
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        render_main_config(
            state_dir=str(tmp_path),
            socket_file=str(tmp_path / "supervisor.sock"),
            pid_file=str(tmp_path / "supervisord.pid"),
            log_file=str(tmp_path / "supervisord.log"),
            include="programs/*.conf",  # relative to the config file
        )
    )
    return conf


def test_supervisor_parses_rendered_config(tmp_path: Path) -> None:
    programs = (
        make_program(
            command=f"{tmp_path}/current/app --flag=%d",
            directory=str(tmp_path),
            stdout_log=str(tmp_path / "log" / "9080.out.log"),
            stderr_log=str(tmp_path / "log" / "9080.err.log"),
            environment=TRICKY_ENV,
            stop_wait_s=17,
            log_max_bytes="5MB",
            log_backups=2,
        ),
        make_program(
            name="hello-gin-9081",
            command=f"{tmp_path}/current/app",
            directory=str(tmp_path),
            stdout_log=str(tmp_path / "log" / "9081.log"),
            stderr_log=str(tmp_path / "log" / "9081.log"),
        ),
    )
    conf = write_tree(tmp_path, programs)
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])

    assert options.nodaemon is False
    assert options.minfds == 256
    assert options.childlogdir == str(tmp_path)
    assert options.umask == 0o027
    assert options.pidfile == str(tmp_path / "supervisord.pid")
    (server,) = options.server_configs
    assert server["family"] == 1  # AF_UNIX; there is no TCP listener
    assert server["file"] == str(tmp_path / "supervisor.sock")
    assert server["chmod"] == 0o700

    (group,) = options.process_group_configs
    assert group.name == "hello-gin"
    first, second = sorted(group.process_configs, key=lambda c: c.name)
    assert first.name == "hello-gin-9080"
    assert first.command == f"{tmp_path}/current/app --flag=%d"
    assert first.stopsignal == signal.SIGTERM
    assert first.stopwaitsecs == 17
    assert first.stopasgroup is True
    assert first.killasgroup is True
    assert first.autorestart is RestartUnconditionally
    assert first.autostart is True
    assert first.startsecs == 1
    assert first.startretries == 3
    assert first.environment == dict(TRICKY_ENV)
    assert first.stdout_logfile == str(tmp_path / "log" / "9080.out.log")
    assert first.stderr_logfile == str(tmp_path / "log" / "9080.err.log")
    assert first.stdout_logfile_maxbytes == 5 * 1024 * 1024
    assert first.stdout_logfile_backups == 2
    assert first.redirect_stderr is False
    assert second.redirect_stderr is True
    assert second.stdout_logfile == str(tmp_path / "log" / "9081.log")
    assert second.environment is None or second.environment == {}


# ---------------------------------------------------------------- live run

APP = textwrap.dedent(
    """
    import json, os, signal, sys, time
    out = {k: os.environ.get(k) for k in sys.argv[1].split(",")}
    print(json.dumps(out), flush=True)
    def stop(signum, frame):
        print("drained on", signal.Signals(signum).name, flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(0.05)
    """
)


@pytest.mark.host
def test_supervisord_runs_and_stops_the_programs(tmp_path: Path) -> None:
    """Start a real supervisord on the rendered files; check env, start and TERM-stop."""
    venv_bin = str(Path(sys.executable).parent)
    supervisord = find_tool("supervisord", venv_bin)
    supervisorctl = find_tool("supervisorctl", venv_bin)
    if supervisord is None or supervisorctl is None:
        pytest.skip("supervisord/supervisorctl is not installed")
    app = tmp_path / "app.py"
    app.write_text(APP)
    keys = ",".join(k for k, _ in TRICKY_ENV)
    program = make_program(
        command=f"{sys.executable} {app} {keys}",
        directory=str(tmp_path),
        stdout_log=str(tmp_path / "log" / "app.out.log"),
        stderr_log=str(tmp_path / "log" / "app.err.log"),
        environment=TRICKY_ENV,
        stop_wait_s=5,
    )
    conf = write_tree(tmp_path, (program,))

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [supervisorctl, "-c", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    started = subprocess.run(
        [supervisord, "-c", str(conf)], capture_output=True, text=True, timeout=20, check=False
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 10
        status = ""
        while time.monotonic() < deadline:
            status = ctl("status", "hello-gin:*").stdout
            if "RUNNING" in status or "FATAL" in status:
                break
            time.sleep(0.2)
        assert "hello-gin:hello-gin-9080" in status and "RUNNING" in status, status
        assert (tmp_path / "supervisor.sock").stat().st_mode & 0o777 == 0o700

        stopped = ctl("stop", "hello-gin:*")
        assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        lines = (tmp_path / "log" / "app.out.log").read_text().splitlines()
        assert json.loads(lines[0]) == dict(TRICKY_ENV)
        assert lines[-1] == "drained on SIGTERM"
    finally:
        ctl("shutdown")
        deadline = time.monotonic() + 10
        while (tmp_path / "supervisord.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
