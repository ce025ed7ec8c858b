"""What every target exposes to the rest of the program (exports, edge routing), and
what edge routing asks of a target in return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi


@dataclass(frozen=True)
class TargetEndpoint:
    """A deployed target as edge routing and stack outputs see it.

    `origin_host` is the DNS name or IP users (or CloudFront) connect to; for AWS
    load balancers `alias_zone_id` is set so Route 53 can use an alias record.
    """

    name: str
    kind: str
    url: pulumi.Output[str]
    origin_host: pulumi.Output[str]
    weight: int
    region: str | None = None
    alias_zone_id: pulumi.Output[str] | None = None
    ca_cert: str | None = None
    # What `status` needs to ask the live target (ids, names, where); no secrets.
    status: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeOrigin:
    """What edge routing needs from one target (EdgeOrigins makes one per target; the
    program passes it to the target's component when `edge` is set).

    * `names`: extra host names the target answers under - its own name at the edge,
      `<target>.origin.<domain>`, which its health check (and CloudFront's failover)
      reach it by; they join the target's certificate, listeners and server names.
    * With a CDN, the origin lock: requests must carry `verify_header` with the value
      `verify_value` (a Pulumi secret only CloudFront and the target know), else 403;
      `open_path` (the health check's path; Route 53 cannot send headers) stays open.
    * `cdn_cidrs`: CloudFront's origin-facing address ranges, for proxies that take
      the client address from CloudFront's X-Forwarded-For only when it connects.
    """

    names: tuple[str, ...] = ()
    verify_header: str | None = None
    verify_value: pulumi.Input[str] | None = None
    open_path: str | None = None
    cdn_cidrs: pulumi.Input[Sequence[str]] | None = None

    @property
    def locked(self) -> bool:
        return self.verify_value is not None
