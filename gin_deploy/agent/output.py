"""How the agent talks: progress on stderr, one JSON result on stdout, secrets masked.

Progress goes to stderr as ``hostctl: ...`` lines, the result to stdout as one JSON
object. Values registered with `set_secrets` (the env values listed in
``secretEnvKeys``) are never printed: every message is redacted, log tails included.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

PREFIX = "hostctl:"


class HostError(Exception):
    """A failure to report to the caller: one message, exit code 1."""


_secrets: list[str] = []


def set_secrets(values: Sequence[str]) -> None:
    """Remember secret values so every message we print has them masked."""
    _secrets[:] = sorted({v for v in values if v}, key=len, reverse=True)


def redact(text: str) -> str:
    for value in _secrets:
        text = text.replace(value, "***")
    return text


def log(message: str) -> None:
    print(f"{PREFIX} {redact(message)}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(redact(json.dumps(result, sort_keys=True)), flush=True)

