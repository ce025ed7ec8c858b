"""Value checks shared by several sections: each returns a problem (without the key
path) or None, for a `spec_field(check=...)`."""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def is_dns_name(value: str) -> bool:
    if not value or len(value) > 253 or value.endswith("."):
        return False
    return all(_LABEL.match(label) for label in value.lower().split("."))


def dns_name(value: str) -> str | None:
    if is_dns_name(value):
        return None
    return ("must be a valid DNS name (labels of a-z, 0-9 and '-', at most 253 chars), "
            f"got {value!r}")


def resource_name(value: str) -> str | None:
    if _NAME.match(value):
        return None
    return f"must be 1-32 chars of a-z, 0-9 and '-', starting with a letter, got {value!r}"


def abs_http_path(value: str) -> str | None:
    if value.startswith("/") and " " not in value and "?" not in value:
        return None
    return f"must be an absolute URL path starting with '/', got {value!r}"


def cidrs(value: tuple[str, ...]) -> str | None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"must be a list of IP addresses or CIDRs, got {item!r}"
    return None


def trusted_cidrs(value: tuple[str, ...]) -> str | None:
    """Proxies whose X-Forwarded-For is believed: a /0 would let any client pick its own
    address, and host bits set are a typo the renderers would reject later."""
    for item in value:
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            return f"must be a list of IP addresses or CIDRs, got {item!r} ({exc})"
        if net.prefixlen == 0:
            return (f"{item!r} would trust every client's X-Forwarded-For; list the "
                    "proxies' own ranges")
    return None


def region_name(value: str) -> str | None:
    return None if _REGION.match(value) else f"must be a region name like us-east-1, got {value!r}"
