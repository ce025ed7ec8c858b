"""Drive gin-deploy from Python: preview, up, refresh, destroy and outputs of a stack.

    from gin_deploy import automation
    result = automation.up("dev", on_output=print)
    print(result.summary, result.outputs["url"])

The same module is a CLI: `python -m gin_deploy up --stack dev` (see `--help`).

Everything runs the project's own Pulumi toolchain (`.tools/bin`, installed by
scripts/setup.sh) against a local file backend in `.pulumi-state/` unless
PULUMI_BACKEND_URL is set (a team shares one: `s3://bucket?region=...`, or any
S3-compatible store with `&endpoint=...&s3ForcePathStyle=true`; see the README).
A new stack gets the secrets provider of `Settings.secrets_provider`, else
GIN_DEPLOY_SECRETS_PROVIDER, else `passphrase` (e.g. `awskms://alias/x?region=...`
for a team); an existing stack keeps the one recorded in its stack file. The
passphrase comes from PULUMI_CONFIG_PASSPHRASE(_FILE) or is generated once into
`.pulumi-passphrase` (mode 0600, git-ignored).

Calls on different stacks may run concurrently (each command names its stack;
the backend locks per stack). A call on a stack that another operation holds
fails at once with StackLockedError instead of waiting. A lock left by an
operation that was killed (its pulumi process on this host is gone) raises
StaleLockError, which says so and how to clear it; `clear_stale_lock=True`
removes such a lock (and only such a lock) before running.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from gin_deploy import stack_locks

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ("preview", "up", "refresh", "destroy", "outputs")

OnOutput = Callable[[str], None]
OnEvent = Callable[[auto.EngineEvent], None]


class StackLockedError(RuntimeError):
    """Another operation holds the stack's lock."""


class StaleLockError(StackLockedError):
    """The lock's holder was a pulumi process on this host that no longer runs."""


class OperationFailed(RuntimeError):
    """The engine reported a failed operation; `output` holds its full log."""

    def __init__(self, operation: str, stack: str, output: str) -> None:
        self.operation, self.stack, self.output = operation, stack, output
        super().__init__(f"{operation} of stack {stack!r} failed:\n{_error_lines(output)}")


def _error_lines(output: str) -> str:
    """The lines that say why, not the whole progress log: errors, config problems, the
    agent's messages, and the engine's whole `Policies:` section (violations)."""
    keep: list[str] = []
    in_policies = False
    for line in output.splitlines():
        if line.strip() == "Policies:":
            in_policies = True
        elif in_policies and line and not line.startswith(" "):
            in_policies = False
        if in_policies or "error" in line.lower() or "gin-deploy:" in line \
                or "hostctl:" in line:
            keep.append(line)
    return "\n".join(keep[-60:]) or output[-4000:]


@dataclass(frozen=True)
class Settings:
    """Where the program, toolchain, state and passphrase are."""

    work_dir: Path = ROOT
    tools_dir: Path | None = None       # default: <work_dir>/.tools
    backend_url: str | None = None      # default: PULUMI_BACKEND_URL or file://<work_dir>/.pulumi-state
    passphrase_file: Path | None = None  # default: <work_dir>/.pulumi-passphrase
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # For stacks this creates; default: GIN_DEPLOY_SECRETS_PROVIDER or "passphrase".
    secrets_provider: str | None = None

    def tools(self) -> Path:
        return self.tools_dir or self.work_dir / ".tools"

    def new_stack_secrets_provider(self) -> str:
        return (self.secrets_provider or os.environ.get("GIN_DEPLOY_SECRETS_PROVIDER")
                or "passphrase")

    def env(self) -> dict[str, str]:
        env = {
            "PATH": f"{self.tools() / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_HOME": os.environ.get("PULUMI_HOME", str(self.tools() / "pulumi-home")),
            "PULUMI_BACKEND_URL": self.backend_url or os.environ.get("PULUMI_BACKEND_URL")
            or _file_backend(self.work_dir / ".pulumi-state"),
        }
        # Set whatever the provider: stacks of one backend may use different ones.
        if not (os.environ.get("PULUMI_CONFIG_PASSPHRASE")
                or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
            env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(
                _ensure_passphrase(self.passphrase_file or self.work_dir / ".pulumi-passphrase"))
        env.update(self.extra_env)
        return env


def _file_backend(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    return f"file://{directory}"


def _ensure_passphrase(path: Path) -> Path:
    if not path.exists() or path.stat().st_size == 0:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path


@dataclass(frozen=True)
class OperationResult:
    operation: str
    stack: str
    summary: dict[str, int]             # e.g. {"create": 4, "same": 2}
    outputs: dict[str, Any]
    output: str                         # the engine's progress log

    @property
    def changed(self) -> bool:
        return any(n for op, n in self.summary.items() if op != "same")


def select_stack(stack: str, settings: Settings | None = None, *,
                 create: bool = True) -> auto.Stack:
    """The stack, created with the settings' secrets provider if it is new (unless
    `create` is false: then a missing stack raises auto.StackNotFoundError)."""
    settings = settings or Settings()
    env = settings.env()
    tools = settings.tools()
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(settings.work_dir),
        env_vars=env,
        pulumi_home=env["PULUMI_HOME"],
        secrets_provider=settings.new_stack_secrets_provider(),
        pulumi_command=auto.PulumiCommand(root=str(tools), skip_version_check=False)
        if (tools / "bin" / "pulumi").exists() else None,
    )
    select = auto.create_or_select_stack if create else auto.select_stack
    return select(stack, work_dir=str(settings.work_dir), opts=opts)


def apply_config(st: auto.Stack, config: Mapping[str, Any] | None,
                 secret_config: Mapping[str, Any] | None) -> None:
    """Set config like `pulumi config set` (persisted in Pulumi.<stack>.yaml).

    Keys without a namespace get `gin-deploy:`. Structured values stay structured
    (set-all --json), and secret values are encrypted by the stack's provider.
    """
    items: dict[str, dict[str, Any]] = {}
    for values, secret in ((config or {}, False), (secret_config or {}, True)):
        for key, value in values.items():
            full = key if ":" in key else f"gin-deploy:{key}"
            if isinstance(value, dict | list):
                items[full] = {"objectValue": value, "value": json.dumps(value), "secret": secret}
            else:
                items[full] = {"value": value if isinstance(value, str) else json.dumps(value),
                               "secret": secret}
    if items:
        st.workspace.set_all_config_json(st.name, json.dumps(items))


def _summary(counts: Mapping[Any, int] | None) -> dict[str, int]:
    return {str(getattr(k, "value", k)): int(v) for k, v in (counts or {}).items() if v}


def check_stale_lock(stack: str, settings: Settings | None = None, *,
                     clear: bool = False) -> list[stack_locks.StackLock]:
    """Raise StaleLockError when a dead operation's lock blocks `stack`; with `clear`,
    remove such locks instead and return them. Live locks are left to the engine."""
    settings = settings or Settings()
    locks = stack_locks.find_locks(settings.env()["PULUMI_BACKEND_URL"],
                                   stack_locks.project_name(settings.work_dir), stack)
    stale = [lock for lock in locks if lock.stale]
    if stale and not clear:
        raise StaleLockError(stack_locks.stale_message(stack, stale))
    stack_locks.clear(stale)
    return stale


def _run(operation: str, stack: str, settings: Settings | None,
         config: Mapping[str, Any] | None, secret_config: Mapping[str, Any] | None,
         body: Callable[[auto.Stack], OperationResult],
         clear_stale_lock: bool = False) -> OperationResult:
    check_stale_lock(stack, settings, clear=clear_stale_lock)
    st = select_stack(stack, settings)
    apply_config(st, config, secret_config)
    try:
        return body(st)
    except auto.ConcurrentUpdateError as err:
        raise StackLockedError(
            f"stack {stack!r} is locked by another operation; wait for it to finish, or if "
            f"it crashed run `pulumi cancel --stack {stack}` (self-managed backends: "
            f"`pulumi stack --stack {stack}` shows the lock)") from err
    except auto.CommandError as err:
        raise OperationFailed(operation, stack, str(err)) from err


def preview(stack: str, *, settings: Settings | None = None,
            config: Mapping[str, Any] | None = None,
            secret_config: Mapping[str, Any] | None = None,
            expect_no_changes: bool = False, diff: bool = False,
            policy_packs: tuple[str, ...] = (), clear_stale_lock: bool = False,
            on_output: OnOutput | None = None, on_event: OnEvent | None = None) -> OperationResult:
    def body(st: auto.Stack) -> OperationResult:
        res = st.preview(expect_no_changes=expect_no_changes or None, diff=diff or None,
                         policy_packs=list(policy_packs) or None,
                         on_output=on_output, on_event=on_event, color="never")
        return OperationResult("preview", stack, _summary(res.change_summary), {}, res.stdout)
    return _run("preview", stack, settings, config, secret_config, body, clear_stale_lock)


def up(stack: str, *, settings: Settings | None = None,
       config: Mapping[str, Any] | None = None,
       secret_config: Mapping[str, Any] | None = None,
       expect_no_changes: bool = False, diff: bool = False,
       policy_packs: tuple[str, ...] = (), clear_stale_lock: bool = False,
       on_output: OnOutput | None = None, on_event: OnEvent | None = None) -> OperationResult:
    def body(st: auto.Stack) -> OperationResult:
        res = st.up(expect_no_changes=expect_no_changes or None, diff=diff or None,
                    policy_packs=list(policy_packs) or None,
                    on_output=on_output, on_event=on_event, color="never")
        return OperationResult("up", stack, _summary(res.summary.resource_changes),
                               _plain_outputs(res.outputs), res.stdout)
    return _run("up", stack, settings, config, secret_config, body, clear_stale_lock)


def refresh(stack: str, *, settings: Settings | None = None,
            expect_no_changes: bool = False, clear_stale_lock: bool = False,
            on_output: OnOutput | None = None, on_event: OnEvent | None = None) -> OperationResult:
    def body(st: auto.Stack) -> OperationResult:
        res = st.refresh(expect_no_changes=expect_no_changes or None,
                         on_output=on_output, on_event=on_event, color="never")
        return OperationResult("refresh", stack, _summary(res.summary.resource_changes), {},
                               res.stdout)
    return _run("refresh", stack, settings, None, None, body, clear_stale_lock)


def destroy(stack: str, *, settings: Settings | None = None, remove: bool = False,
            clear_stale_lock: bool = False,
            on_output: OnOutput | None = None, on_event: OnEvent | None = None) -> OperationResult:
    def body(st: auto.Stack) -> OperationResult:
        res = st.destroy(on_output=on_output, on_event=on_event, color="never")
        if remove:
            st.workspace.remove_stack(stack)
        return OperationResult("destroy", stack, _summary(res.summary.resource_changes), {},
                               res.stdout)
    return _run("destroy", stack, settings, None, None, body, clear_stale_lock)


def outputs(stack: str, *, settings: Settings | None = None) -> dict[str, Any]:
    """The stack's outputs; secret ones stay masked as '[secret]'."""
    return _plain_outputs(select_stack(stack, settings).outputs())


def _plain_outputs(values: Mapping[str, auto.OutputValue]) -> dict[str, Any]:
    return {k: "[secret]" if v.secret else v.value for k, v in values.items()}


def status(stack: str, *, settings: Settings | None = None,
           min_cert_days: float = 14, clients: Any = None) -> Any:
    """What runs on each target of `stack`, asked of the live targets: a
    gin_deploy.status.Report (`.healthy`, `.as_json()`, `.targets`). The stack's config
    is read with its secrets decrypted (an SSH key, a kubeconfig) in memory only."""
    from gin_deploy import status as status_mod  # entry layer, imports this module

    try:
        st = select_stack(stack, settings, create=False)
    except auto.StackNotFoundError as err:
        raise OperationFailed("status", stack, f"error: no stack named {stack!r}") from err
    outputs = {k: v.value for k, v in st.outputs().items()}
    config = {k: v.value for k, v in st.get_all_config().items()}
    last = next((u for u in st.history(page_size=20, show_secrets=False)
                 if u.kind == "update"), None)
    last_update = None if last is None else {
        "time": status_mod.iso(last.end_time or last.start_time), "result": last.result}
    return status_mod.collect(stack, outputs, config, min_cert_days=min_cert_days,
                              clients=clients, last_update=last_update)
