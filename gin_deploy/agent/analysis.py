"""Judging a release by its own requests, read from nginx's JSON access log.

Each log line (gin_deploy/render/templates/nginx_site.conf.j2) names every upstream
attempt of a request: `upstream_addr`, `upstream_status` and `upstream_response_time`,
attempts separated by ", " (retries) or " : " (internal redirects). An attempt counts for
the pool its address belongs to, so the new release is judged on exactly the requests it
answered, and the old release's numbers over the same window stand beside them.

An error is a 5xx answer of the upstream (a refused or timed-out attempt is logged as
502/504 for that address, so it counts too); latency is the upstream response time.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_SEPARATOR = re.compile(r", | : ")
# Before the bake is over a step is judged only on at least this many requests (and
# minRequests): one early 5xx is not 100% errors, one slow request is not a p95.
EARLY_MIN = 20


@dataclass
class Tally:
    """The attempts of one pool in one window."""

    requests: int = 0
    errors: int = 0
    times_ms: list[float] = field(default_factory=list)

    def add(self, status: int, ms: float | None) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        if ms is not None:
            self.times_ms.append(ms)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_ms(self) -> float:
        """Nearest-rank 95th percentile of the response times (0 without any)."""
        if not self.times_ms:
            return 0.0
        ordered = sorted(self.times_ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def describe(self) -> str:
        if not self.requests:
            return "no requests"
        return (f"{self.requests} requests, {self.error_rate:.2%} 5xx, "
                f"p95 {self.p95_ms:.0f} ms")


def attempts(entry: dict[str, object]) -> Iterator[tuple[str, int, float | None]]:
    """(address, status, response ms) of each upstream attempt of one logged request."""
    addrs = str(entry.get("upstream_addr") or "")
    if not addrs or addrs == "-":
        return
    statuses = _SEPARATOR.split(str(entry.get("upstream_status") or ""))
    times = _SEPARATOR.split(str(entry.get("upstream_response_time") or ""))
    for i, addr in enumerate(_SEPARATOR.split(addrs)):
        status = statuses[i].strip() if i < len(statuses) else ""
        if not status.isdigit():
            continue  # no answer was recorded (the client went away first)
        raw = times[i].strip() if i < len(times) else ""
        try:
            ms: float | None = float(raw) * 1000
        except ValueError:
            ms = None
        yield addr.strip(), int(status), ms


class AccessLog:
    """Follows one log file from where it ends now, line by line (a rotated or truncated
    file is read again from its start)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.inode, self.offset = self._where()
        self.rest = b""

    def _where(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except OSError:
            return 0, 0
        return st.st_ino, st.st_size

    def skip_to_end(self) -> None:
        self.inode, self.offset = self._where()
        self.rest = b""

    def entries(self) -> Iterator[dict[str, object]]:
        inode, size = self._where()
        if inode != self.inode or size < self.offset:
            self.inode, self.offset, self.rest = inode, 0, b""
        if size == self.offset:
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(size - self.offset)
        except OSError:
            return
        self.offset += len(chunk)
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # not one of our JSON lines
            if isinstance(entry, dict):
                yield entry


class Window:
    """One step's requests: the candidates' and the rest's, as the log tells them."""

    def __init__(self, log: AccessLog, candidates: Iterable[str]) -> None:
        self.log = log
        self.candidates = frozenset(candidates)
        self.new = Tally()
        self.old = Tally()

    def restart(self) -> None:
        """Count from now on (after nginx took the step's share)."""
        self.log.skip_to_end()
        self.new, self.old = Tally(), Tally()

    def poll(self) -> None:
        for entry in self.log.entries():
            for addr, status, ms in attempts(entry):
                (self.new if addr in self.candidates else self.old).add(status, ms)


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float
    max_p95_ms: float
    min_requests: int


def breach(new: Tally, limits: Thresholds, final: bool) -> str | None:
    """The first threshold the new release's requests break, as "metric value > limit";
    before the bake is over only once there are enough requests to say so."""
    if new.requests < max(limits.min_requests, 1 if final else EARLY_MIN):
        return None
    if new.error_rate > limits.max_error_rate:
        return (f"error rate {new.error_rate:.2%} ({new.errors} of {new.requests} requests "
                f"answered 5xx) > maxErrorRate {limits.max_error_rate:.2%}")
    if new.p95_ms > limits.max_p95_ms:
        return (f"p95 latency {new.p95_ms:.0f} ms (of {new.requests} requests) > maxP95Ms "
                f"{limits.max_p95_ms:g} ms")
    return None
