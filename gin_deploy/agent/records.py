"""What the last deploy and the last certificate renewal did, kept in the state dir so
`status` can say it without asking anyone's memory.

    <stateDir>/last-deploy.json   {"time", "result": "ok"|"failed", "release", "error"}
    <stateDir>/renewal.json       {"lastRun", "lastResult", "lastSuccess", "error",
                                   "daysLeft", "notAfter"}
    <stateDir>/logs/renew.log     one line per renewal attempt (the agent's log of it)

Times are UTC ISO 8601. A failed renewal keeps the time of the last success, so its age
shows how long certificates have gone unrenewed.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from gin_deploy.agent.certs import cert_tool, utcnow
from gin_deploy.agent.files import write_file
from gin_deploy.agent.layout import Layout
from gin_deploy.agent.output import HostError, redact

LAST_DEPLOY = "last-deploy.json"
RENEWAL = "renewal.json"
RENEW_LOG = ("logs", "renew.log")


def iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: str, data: dict[str, Any]) -> None:
    if os.path.isdir(os.path.dirname(path)):
        write_file(path, redact(json.dumps(data, indent=2, sort_keys=True)) + "\n", 0o644)


def record_deploy(layout: Layout, result: str, release: str | None,
                  error: str | None = None) -> None:
    _write(layout.p(LAST_DEPLOY), {"time": iso(utcnow()), "result": result,
                                   "release": release,
                                   # the first lines say why; the log tail is in the output
                                   "error": None if error is None else error[:500]})


def last_deploy(layout: Layout) -> dict[str, Any] | None:
    return _read(layout.p(LAST_DEPLOY)) or None


def renewal(layout: Layout) -> dict[str, Any] | None:
    return _read(layout.p(RENEWAL)) or None


def cert_days_left(path: str) -> tuple[float, datetime.datetime]:
    """Days until the certificate at `path` expires, and when."""
    if not os.path.exists(path):
        raise HostError(f"no certificate at {path}")
    not_after = cert_tool().inspect(path).not_after
    return (not_after - utcnow()).total_seconds() / 86400, not_after


def record_renewal(layout: Layout, started: datetime.datetime, error: str | None,
                   cert: tuple[float, datetime.datetime] | None) -> dict[str, Any]:
    """Save the outcome of one renewal attempt, append it to the renew log, return it."""
    data = renewal(layout) or {}
    data.update({"lastRun": iso(started), "lastResult": "failed" if error else "ok",
                 "error": error})
    if error is None:
        data["lastSuccess"] = iso(started)
    if cert is not None:
        data["daysLeft"] = round(cert[0], 2)
        data["notAfter"] = iso(cert[1])
    _write(layout.p(RENEWAL), data)
    line = f"{iso(started)} renew {'failed: ' + error if error else 'ok'}"
    if cert is not None:
        line += f" (certificate valid for {cert[0]:.1f} more days)"
    log_path = layout.p(*RENEW_LOG)
    if os.path.isdir(os.path.dirname(log_path)):
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(redact(line.replace("\n", " | ")) + "\n")
    return data
