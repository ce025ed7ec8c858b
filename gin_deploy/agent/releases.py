"""Releases: releases/<id> holds a binary and its env; `current` points at one.

A release id changes whenever the binary or any env value does, so a release dir never
changes meaning; switching `current` (symlink + rename) is atomic, and the newest
releases are kept for an instant rollback. The program's id covers the binary and the
plain env; with secrets the agent appends an HMAC of their values keyed with a random
per-target key that never leaves the host (<stateDir>/release.key, 0600): anyone may read
the id, nobody can test guesses of a secret against it, and the same release deployed
again gets the same id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence

from gin_deploy.agent.files import atomic_symlink, sha256_file, write_file
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import DeployPayload

UNIT_OWNED_ENV = frozenset({"PORT", "BIND_ADDR"})


def release_key(layout: Layout) -> bytes:
    """The target's HMAC key, created on first use."""
    try:
        with open(layout.release_key, "rb") as fh:
            key = fh.read().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = os.urandom(32).hex().encode()
    write_file(layout.release_key, key + b"\n", 0o600)
    return key


def keyed_release(payload: DeployPayload, layout: Layout) -> DeployPayload:
    """The payload with its release id extended by a keyed HMAC of the secret values."""
    secrets = sorted((k, payload.env[k]) for k in payload.secret_env_keys if k in payload.env)
    if not secrets:
        return payload
    mac = hmac.new(release_key(layout), json.dumps(secrets).encode(), hashlib.sha256)
    release = dataclasses.replace(payload.release,
                                  id=f"{payload.release.id}-{mac.hexdigest()[:10]}")
    return dataclasses.replace(payload, release=release)


def current_release(layout: Layout) -> str | None:
    """The id `current` points at, if it points at an existing release."""
    try:
        target = os.readlink(layout.current)
    except OSError:
        return None
    rid = os.path.basename(target.rstrip("/"))
    return rid if os.path.isdir(layout.release_dir(rid)) else None


def switch_current(layout: Layout, rid: str) -> None:
    atomic_symlink(os.path.join("releases", rid), layout.current)
    log(f"current -> releases/{rid}")


def install_release(payload: DeployPayload, layout: Layout, env_gid: int | None = None) -> bool:
    """Put the binary and env files in releases/<id>; True when any file changed. With
    `env_gid` (the app's own account in system mode) env.json is root:<gid> 0640, so the
    app can read its secrets and no other local user can."""
    rel = payload.release
    rdir = layout.release_dir(rel.id)
    app = layout.release_app(rel.id)
    changed = False
    if os.path.exists(app) and sha256_file(app) == rel.sha256:
        pass
    else:
        if os.path.exists(app):
            raise HostError(f"release {rel.id} already exists with a different binary; "
                            "release ids must change when the binary changes")
        if not os.path.isfile(rel.binary):
            raise HostError(f"staged binary {rel.binary} does not exist; upload it first")
        actual = sha256_file(rel.binary)
        if actual != rel.sha256:
            raise HostError(f"staged binary {rel.binary} has sha256 {actual}, expected "
                            f"{rel.sha256}; upload it again")
        os.makedirs(rdir, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".app.", suffix=".tmp", dir=rdir)
        with os.fdopen(fd, "wb") as out, open(rel.binary, "rb") as src:
            shutil.copyfileobj(src, out)
            os.fchmod(out.fileno(), 0o755)  # an executable
        if sha256_file(tmp) != rel.sha256:
            os.unlink(tmp)
            raise HostError(f"copy of {rel.binary} to {app} is corrupt; check the disk")
        os.replace(tmp, app)
        log(f"installed release {rel.id}")
        changed = True
    env_json = json.dumps(payload.env, indent=2, sort_keys=True) + "\n"
    env_path = layout.release_env(rel.id)
    changed |= write_file(env_path, env_json, 0o600 if env_gid is None else 0o640)
    if env_gid is not None and os.lstat(env_path).st_gid != env_gid:
        os.chown(env_path, 0, env_gid, follow_symlinks=False)
    if payload.systemd is not None:
        env_file = payload.systemd.env_file
        if env_file is None:
            env_file = render_env_file(payload.env)
        changed |= write_file(layout.release_app_env(rel.id), env_file, 0o600)
    os.utime(rdir)  # recently deployed releases are kept longest
    return changed


def render_env_file(env: dict[str, str]) -> str:
    """A systemd EnvironmentFile; PORT and BIND_ADDR are left to the unit."""
    lines = ["# Generated by gin-deploy; secrets included, keep it 0600."]
    for key in sorted(env):
        if key in UNIT_OWNED_ENV:
            continue
        value = re.sub(r'([\\"`$])', r"\\\1", env[key])
        lines.append(f'{key}="{value}"')
    return "\n".join(lines) + "\n"


def releases_to_prune(layout: Layout, keep: int, protect: Sequence[str | None]) -> list[str]:
    """Release ids beyond the `keep` newest, never one in `protect`."""
    try:
        names = [n for n in os.listdir(layout.releases)
                 if os.path.isdir(layout.release_dir(n)) and not n.startswith(".")]
    except OSError:
        return []
    names.sort(key=lambda n: (os.stat(layout.release_dir(n)).st_mtime, n), reverse=True)
    keep_set = set(names[:keep]) | {p for p in protect if p}
    return [n for n in names if n not in keep_set]


def prune_releases(layout: Layout, keep: int, protect: Sequence[str | None]) -> list[str]:
    pruned = releases_to_prune(layout, keep, protect)
    for rid in pruned:
        shutil.rmtree(layout.release_dir(rid), ignore_errors=True)
        log(f"pruned release {rid}")
    return pruned


# The links a supervisord program may run: the serving release, or a new one being judged
# beside it (gin_deploy.agent.canary).
RELEASE_LINKS = ("current", "candidate")


def run_instance(state_dir: str, port: int, name: str, link: str = "current") -> None:
    """Exec the release `link` points at with its environment (a supervisord program)."""
    layout = Layout(os.path.normpath(state_dir))
    path = layout.p(link)
    if link not in RELEASE_LINKS or not os.path.exists(path):
        raise HostError(f"{path} does not exist; deploy a release first")
    release_dir = os.path.realpath(path)
    app = os.path.join(release_dir, "app")
    try:
        with open(os.path.join(release_dir, "env.json"), encoding="utf-8") as fh:
            app_env = json.load(fh)
    except (OSError, ValueError) as exc:
        raise HostError(f"cannot read {release_dir}/env.json: {exc}") from None
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in app_env.items()})
    env.update(PORT=str(port), BIND_ADDR="127.0.0.1", INSTANCE_ID=name)
    os.chdir(release_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(app, [app], env)  # noqa: S606 - exec of our own release binary
