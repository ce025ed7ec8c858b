"""The one reviewed list of justified security-scan exceptions (security_exceptions.toml).

    from tests.security_exceptions import exceptions, unused
    allowed = exceptions("testssl")     # {("cert_revocation", "HIGH"): "reason", ...}
    assert not unused("testssl", seen)  # every entry still matches a finding

Keys are the entry's identifying fields in a fixed order per section; every entry
must give a real reason. Tests fail on a finding whose key is not listed, and on a
listed entry that matched nothing (a stale justification), unless the entry says
`intermittent = true`: a scanner-side result that does not appear on every run.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

PATH = Path(__file__).with_name("security_exceptions.toml")

# Section -> the fields that identify a finding, in key order.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "checkov-kubernetes": ("id", "resource"),
    "checkov-dockerfile": ("id", "resource"),
    "hadolint": ("id",),
    "testssl": ("id", "severity"),
    "sslyze": ("id",),
}


@dataclass(frozen=True)
class Exception_:
    reason: str
    intermittent: bool = False


def load() -> dict[str, dict[tuple[str, ...], Exception_]]:
    """Every section, validated: known sections and fields, a reason each, no duplicates."""
    raw = tomllib.loads(PATH.read_text())
    out: dict[str, dict[tuple[str, ...], Exception_]] = {section: {} for section in KEY_FIELDS}
    for section, entries in raw.items():
        if section not in KEY_FIELDS:
            raise ValueError(f"{PATH.name}: unknown section [[{section}]]")
        fields = KEY_FIELDS[section]
        for entry in entries:
            unknown = set(entry) - {*fields, "reason", "intermittent"}
            missing = [f for f in fields if not isinstance(entry.get(f), str) or not entry[f]]
            if unknown or missing:
                raise ValueError(f"{PATH.name}: [[{section}]] {entry}: unknown fields "
                                 f"{sorted(unknown)}, missing {missing}")
            reason = str(entry.get("reason", "")).strip()
            if len(reason) < 20:
                raise ValueError(f"{PATH.name}: [[{section}]] {entry}: needs a real reason")
            intermittent = entry.get("intermittent", False)
            if not isinstance(intermittent, bool):
                raise ValueError(f"{PATH.name}: [[{section}]] {entry}: intermittent is a bool")
            key = tuple(entry[f] for f in fields)
            if key in out[section]:
                raise ValueError(f"{PATH.name}: [[{section}]] {key} is listed twice")
            out[section][key] = Exception_(reason, intermittent)
    return out


def exceptions(section: str) -> dict[tuple[str, ...], str]:
    """The justified exceptions of one scanner: identifying fields -> reason."""
    return {key: entry.reason for key, entry in load()[section].items()}


def unused(section: str, seen: Collection[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Entries of `section` that matched no finding in `seen` and are not intermittent."""
    return {key for key, entry in load()[section].items()
            if key not in seen and not entry.intermittent}
