"""gin-deploy's own Pulumi language runtime plugin for Python (`pulumi-language-python`).

Why it exists: the official `pulumi-language-python` is a Go binary that ships in the Pulumi
release tarballs or is built from its Go module. Where neither can be obtained,
scripts/install-pulumi.sh installs this module as `.tools/bin/pulumi-language-python` instead
(a small sh wrapper running this file with the project's .venv python). The official host is
preferred whenever it can be had; this one only covers what gin-deploy needs.

Protocol: the engine starts the plugin with cwd = the project directory and the engine address
as the last argument (flags such as `--tracing X`, `-v=N`, `--logtostderr` may come first). The
plugin serves the LanguageRuntime gRPC service on 127.0.0.1:<free port> and prints only that
port as its first stdout line; logs go to stderr.

Run executes the program in this process, with the SDK's in-process language server
(`pulumi.automation._server.LanguageServer`, the one the Automation API uses for inline
programs) as the base: same runtime set-up, event loop and task clean-up. Differences: the
program is the project's entry point run by runpy in a fresh module namespace (program dir first
on sys.path and as cwd), the engine address comes from the command line, and errors follow the
engine's "bail" protocol like the official host: a `pulumi.RunError` is logged once as its
message, any other exception once with the traceback of the user's code.

RunPlugin runs Python plugins in a child process; the engine uses it for Python policy packs
(`pulumi preview --policy-pack DIR`, which need the `pulumi-policy` package).

Version: GetPluginInfo reports PULUMI_LANGHOST_VERSION from tools/versions.env, the SDK release
this host was last proven with (not the CLI's: it is not the host released with the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.metadata
import os
import queue
import re
import runpy
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from pulumi import log
from pulumi.automation._server import LanguageServer, _suppress_unobserved_task_logging
from pulumi.errors import RunError
from pulumi.runtime import reset_options, run_in_stack, set_all_config
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

VERSIONS_FILE = Path(__file__).resolve().parents[1] / "versions.env"
VERSION_PIN = "PULUMI_LANGHOST_VERSION"
INSTALL_MESSAGE = (b"gin-deploy: Python dependencies are managed by scripts/setup.sh "
                   b"(the project's .venv); nothing to install here.\n")


def pinned_version(versions_file: Path = VERSIONS_FILE, key: str = VERSION_PIN) -> str:
    """The version this host reports: `key` in tools/versions.env (read on each call, so a
    missing or malformed pin fails the first GetPluginInfo with a message naming it)."""
    text = versions_file.read_text() if versions_file.is_file() else ""
    found = re.search(rf"^{key}=(\S+)$", text, re.M)
    if not found or not re.fullmatch(r"\d+\.\d+\.\d+", found[1]):
        raise RuntimeError(f"{key} missing or malformed in {versions_file}")
    return found[1]


def engine_address(argv: Sequence[str]) -> str:
    """The engine address: the last positional argument, after the engine's logging flags."""
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--tracing", "-tracing"):
            next(args, None)
        elif not arg.startswith("-"):
            positional.append(arg)
    return positional[-1] if positional else ""


def entry_point(program_dir: str | Path, entry: str = "") -> Path:
    """The file to run: `entry` relative to `program_dir` (default `.`); a directory means its
    `__main__.py`."""
    path = Path(program_dir, entry or ".").absolute()
    return path / "__main__.py" if path.is_dir() else path


def user_traceback(main: Path) -> str:
    """The current exception's traceback, starting at the first frame of the user's program."""
    frames = traceback.extract_tb(sys.exc_info()[2])
    for index, frame in enumerate(frames):
        if Path(frame.filename).absolute() == main:
            return traceback.format_exc(limit=-(len(frames) - index))
    return traceback.format_exc()


def run_program(main: Path) -> None:
    """Run the program file like `python <main>`, in a fresh module namespace."""
    runpy.run_path(str(main), run_name="__main__")


@contextlib.contextmanager
def program_environment(main: Path, args: Sequence[str]) -> Iterator[None]:
    """cwd, sys.path[0] and sys.argv as for `python <main> <args>`; all restored afterwards, and
    the modules the program imported from the project dropped (a later Run re-imports them)."""
    saved_cwd, saved_path, saved_argv = os.getcwd(), list(sys.path), list(sys.argv)
    before = set(sys.modules)
    os.chdir(main.parent)
    sys.path.insert(0, str(main.parent))
    sys.argv = [str(main), *args]
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:], sys.argv[:] = saved_path, saved_argv
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(str(main.parent)) and "site-packages" not in file:
                del sys.modules[name]


class LanguageHost(LanguageServer):
    """The LanguageRuntime service: LanguageServer with a file-based program."""

    def __init__(self, engine: str) -> None:
        super().__init__(program=lambda: None)
        self.engine = engine

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=pinned_version())

    def Run(self, request: Any, context: Any) -> Any:
        _suppress_unobserved_task_logging()
        return contextvars.copy_context().run(self._run, request)

    def _run(self, request: Any) -> Any:
        info = request.info
        program_dir = info.program_directory or request.pwd or os.getcwd()
        main = entry_point(program_dir, info.entry_point or request.program)
        reset_options(project=request.project, stack=request.stack,
                      root_directory=info.root_directory or program_dir,
                      parallel=request.parallel, engine_address=self.engine,
                      monitor_address=request.monitor_address, preview=request.dryRun,
                      organization=request.organization or "organization")
        set_all_config(dict(request.config), list(request.configSecretKeys))
        if not main.is_file():
            return self._bail(f"unable to find the program `{main.name}` in `{main.parent}`")

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # as `python __main__.py` would have it
        executor = ThreadPoolExecutor(max_workers=max(request.parallel, 1) * 4)
        loop.set_default_executor(executor)
        loop.set_exception_handler(self._exception_handler)
        with program_environment(main, request.args):
            try:
                loop.run_until_complete(run_in_stack(lambda: run_program(main)))
            except RunError as exn:
                return self._bail(str(exn))
            except grpc.RpcError as exn:
                if exn.code() == grpc.StatusCode.UNAVAILABLE:  # the engine is shutting down
                    log.debug("Resource monitor has terminated, shutting down.")
                    return language_pb2.RunResponse()
                return self._bail(f"RPC error: {exn.details()}")
            except SystemExit as exn:
                if exn.code not in (None, 0):
                    return self._bail(f"Program exited with exit code {exn.code}")
            except BaseException:
                return self._bail("Program failed with an unhandled exception:\n"
                                  + user_traceback(main))
            finally:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        loop.run_until_complete(task)
                loop.close()
                asyncio.set_event_loop(None)
                executor.shutdown(wait=False)
                sys.stdout.flush()
                sys.stderr.flush()
        return language_pb2.RunResponse()

    @staticmethod
    def _bail(message: str) -> Any:
        """Report `message` once as an error diagnostic; `bail` tells the engine it was shown."""
        log.error(message)
        return language_pb2.RunResponse(bail=True)

    def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:
        yield language_pb2.InstallDependenciesResponse(stdout=INSTALL_MESSAGE)

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        deps = {(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()}
        return language_pb2.GetProgramDependenciesResponse(dependencies=[
            language_pb2.DependencyInfo(name=name, version=version)
            for name, version in sorted(deps)])

    def RuntimeOptionsPrompts(self, request: Any, context: Any) -> Any:
        return language_pb2.RuntimeOptionsResponse()

    def RunPlugin(self, request: Any, context: Any) -> Iterator[Any]:
        """Run a Python plugin (e.g. a policy pack) as `python -u <dir> <args>`, streaming its
        output; the `virtualenv` runtime option (relative to the plugin dir) picks the python."""
        info = request.info
        python = sys.executable
        venv = info.options.fields.get("virtualenv") if info.HasField("options") else None
        if venv and venv.string_value:
            candidate = Path(info.root_directory, venv.string_value, "bin", "python")
            python = str(candidate) if candidate.exists() else python
        env = dict(item.split("=", 1) for item in request.env if "=" in item) or None
        proc = subprocess.Popen(
            [python, "-u", info.program_directory or request.program, *request.args],
            cwd=request.pwd or None, env=env, bufsize=0,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        context.add_callback(proc.terminate)
        chunks: queue.Queue[tuple[str, bytes]] = queue.Queue()

        def pump(stream: Any, name: str) -> None:
            while data := stream.read(65536):
                chunks.put((name, data))
            chunks.put((name, b""))

        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            threading.Thread(target=pump, args=(stream, name), daemon=True).start()
        open_streams = 2
        while open_streams:
            name, data = chunks.get()
            if data:
                yield (language_pb2.RunPluginResponse(stdout=data) if name == "stdout"
                       else language_pb2.RunPluginResponse(stderr=data))
            else:
                open_streams -= 1
        yield language_pb2.RunPluginResponse(exitcode=proc.wait())


def main(argv: Sequence[str] | None = None) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=_GRPC_CHANNEL_OPTIONS)
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(
        LanguageHost(engine_address(sys.argv[1:] if argv is None else argv)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=None)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip gRPC's slow interpreter-exit clean-up: the engine waits for this process


if __name__ == "__main__":
    main()
