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


def secret_forms(value: str) -> set[str]:
    """`value` as it may appear in a message: as is, JSON-escaped (with and without
    ensure_ascii, as json.dumps writes it into a result) and as repr() quotes it."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             repr(value)[1:-1], repr(value.encode())[2:-1]}
    return {f for f in forms if f}


def set_secrets(values: Sequence[str]) -> None:
    """Remember secret values so every message we print has them masked."""
    forms = set().union(*(secret_forms(v) for v in values if v))
    _secrets[:] = sorted(forms, key=len, reverse=True)


def redact(text: str) -> str:
    for value in _secrets:
        text = text.replace(value, "***")
    return text


def log(message: str) -> None:
    print(f"{PREFIX} {redact(message)}", file=sys.stderr, flush=True)


def _redact_values(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_values(v) for v in value]
    return value


def emit(result: dict[str, Any]) -> None:
    # Strings are masked before JSON escapes them, the text after (belt and braces).
    print(redact(json.dumps(_redact_values(result), sort_keys=True)), flush=True)
