"""SSH host keys: parse a public key line, its SHA256 fingerprint, known_hosts lookups.

A pinned key is an OpenSSH public key line (`ssh-ed25519 AAAA... [comment]`), the form
`ssh-keyscan` prints after the host name and `/etc/ssh/ssh_host_*_key.pub` holds.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import struct
from dataclasses import dataclass
from pathlib import Path

KEY_TYPES = (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "ssh-rsa", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)
# Which pinned key the connection is given when several are known: the strongest first.
PREFERENCE = {t: i for i, t in enumerate(KEY_TYPES)}


class HostKeyError(ValueError):
    """Not a usable public key line."""


@dataclass(frozen=True)
class HostKey:
    type: str
    blob: bytes  # the decoded key, as the SSH wire format carries it

    @property
    def line(self) -> str:
        return f"{self.type} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it: SHA256:<base64 without padding>."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def describe(self) -> str:
        return f"{self.fingerprint} ({self.type})"


def parse_key(text: str) -> HostKey:
    """`<type> <base64> [comment]` -> HostKey; raises HostKeyError saying what is wrong."""
    parts = text.split()
    if len(parts) < 2:
        raise HostKeyError("expected an OpenSSH public key line '<type> <base64> [comment]'")
    kind, data = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise HostKeyError(f"unknown key type {kind!r} (known: {', '.join(KEY_TYPES)})")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HostKeyError("the key's base64 part does not decode") from None
    if len(blob) < 4:
        raise HostKeyError("the key is truncated")
    (n,) = struct.unpack(">I", blob[:4])
    inner = blob[4:4 + n].decode("ascii", "replace")
    if inner != kind:
        raise HostKeyError(f"the key says it is {inner!r}, not {kind!r}")
    return HostKey(kind, blob)


def host_patterns(host: str, port: int) -> str:
    """How known_hosts names host:port."""
    return host if port == 22 else f"[{host}]:{port}"


def _matches(field: str, name: str) -> bool:
    if field.startswith("|1|"):  # hashed: |1|base64(salt)|base64(hmac-sha1(salt, name))
        try:
            _, _, salt, digest = field.split("|")
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        except (ValueError, binascii.Error):
            return False
        return hmac.compare_digest(base64.b64encode(mac).decode(), digest)
    patterns = field.split(",")
    if any(p.startswith("!") and fnmatch.fnmatchcase(name, p[1:]) for p in patterns):
        return False
    return any(not p.startswith("!") and fnmatch.fnmatchcase(name, p) for p in patterns)


def known_host_keys(path: Path, host: str, port: int) -> list[HostKey]:
    """The keys a known_hosts file accepts for host:port (@revoked ones excluded;
    @cert-authority lines are not host keys and are skipped)."""
    name = host_patterns(host, port)
    keys: list[HostKey] = []
    revoked: set[bytes] = set()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
        hosts, _, key = line.partition(" ")
        if not _matches(hosts, name):
            continue
        try:
            parsed = parse_key(key)
        except HostKeyError:
            continue
        if marker == "@revoked":
            revoked.add(parsed.blob)
        elif not marker:
            keys.append(parsed)
    return [k for k in keys if k.blob not in revoked]


def preferred(keys: list[HostKey]) -> HostKey:
    """The one key handed to the connection (deterministic, strongest type first)."""
    return sorted(keys, key=lambda k: (PREFERENCE.get(k.type, 99), k.blob))[0]
