"""Response header values shared by every target kind (nginx, ALB, gateway, CDN)."""

from __future__ import annotations

from dataclasses import dataclass


def hsts_value(max_age: int, include_subdomains: bool, preload: bool) -> str:
    """The Strict-Transport-Security value, e.g. "max-age=63072000; includeSubDomains"."""
    if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
        raise ValueError(f"max_age must be a non-negative integer, got {max_age!r}")
    parts = [f"max-age={max_age}"]
    if include_subdomains:
        parts.append("includeSubDomains")
    if preload:
        parts.append("preload")
    return "; ".join(parts)


@dataclass(frozen=True)
class HstsPolicy:
    """A Strict-Transport-Security policy as its parts (CloudFront takes them one by one)."""

    max_age: int = 63072000          # two years
    include_subdomains: bool = True
    preload: bool = False            # only once the domain is submitted to the list

    @property
    def value(self) -> str:
        return hsts_value(self.max_age, self.include_subdomains, self.preload)
