"""What every target exposes to the rest of the program (exports, edge routing)."""

from __future__ import annotations

from dataclasses import dataclass

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
