"""Check an SSH target's host key at program time, before any resource is registered.

The connection itself pins the key (pulumi-command's `host_key`), so no other host ever
receives a byte of the deploy. This probe adds the early, readable refusal: it asks the
host for its keys (`ssh-keyscan`, which sends no credentials) and fails the preview or
update with the fingerprints offered and pinned. A host that does not answer (a PR
preview run far from it, a host not yet booted) only warns: the pinned connection still
refuses a wrong key when the update runs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence

import pulumi
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import get_monitor

from gin_deploy.config.ssh_keys import HostKey, HostKeyError, parse_key

# host, port -> the keys the host offers ([] if it did not answer), None if it cannot ask.
Probe = Callable[[str, int], "list[HostKey] | None"]
SCAN_TIMEOUT = 5


class HostKeyMismatch(pulumi.RunError):
    """The host offered keys, none of them pinned."""


def keyscan(host: str, port: int) -> list[HostKey] | None:
    exe = shutil.which("ssh-keyscan")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "-T", str(SCAN_TIMEOUT), "-p", str(port), host],
                              capture_output=True, text=True, timeout=SCAN_TIMEOUT * 4,
                              check=False)
    except subprocess.TimeoutExpired:
        return []
    keys = []
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            continue
        _name, _, key = line.partition(" ")
        try:
            keys.append(parse_key(key))
        except HostKeyError:
            continue
    return keys


def check_host_key(path: str, host: str, port: int, pinned: Sequence[HostKey],
                   probe: Probe | None = None) -> None:
    """Raise HostKeyMismatch when the host offers keys and none is pinned; warn when it
    cannot be asked. `path` is the target's config key path, for the messages."""
    if probe is None:
        if isinstance(get_monitor(), MockMonitor):  # unit tests: no network
            return
        probe = keyscan
    where = f"{host}:{port}"
    offered = probe(host, port)
    if offered is None:
        pulumi.log.warn(f"{path}: ssh-keyscan is not installed, so {where}'s host key is "
                        "checked only when the connection is made (it is pinned there too)")
        return
    if not offered:
        pulumi.log.warn(f"{path}: could not reach {where} to check its host key now; the "
                        "connection refuses any key but the pinned one when it is made")
        return
    pinned_blobs = {k.blob for k in pinned}
    if any(k.blob in pinned_blobs for k in offered):
        return
    raise HostKeyMismatch(
        f"{path}: the SSH host {where} offers host key "
        f"{', '.join(k.describe() for k in offered)}, but the stack pins "
        f"{', '.join(k.describe() for k in pinned)}; nothing was sent to it. If the host "
        "was reinstalled, confirm its new key on the host itself (`ssh-keygen -lf "
        "/etc/ssh/ssh_host_ed25519_key.pub`) and update hostKey/knownHostsFile; otherwise "
        "something may be intercepting the connection.")
