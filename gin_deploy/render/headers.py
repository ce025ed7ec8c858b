"""Response header values shared by every target kind (nginx, ALB, gateway, CDN)."""

from __future__ import annotations


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
