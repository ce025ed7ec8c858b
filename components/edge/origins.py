"""EdgeOrigins: what every target must do to be an origin of the edge.

Built before the targets, complete when its constructor returns: each target gets
its `EdgeOrigin` (`origin_for`) - its own name at the edge (which health checks
and CloudFront's failover reach it by) and, behind a CDN, the origin lock: a random
secret that CloudFront adds as a header and the target requires (403 without it;
the health check path stays open), plus CloudFront's address ranges for proxies
that take the client address from CloudFront's X-Forwarded-For.

The routing across the deployed targets is EdgeRouting's (routing.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws_provider import regional_provider
from components.endpoint import EdgeOrigin

# CloudFront's origin-facing servers (IPv4; origins are reached over IPv4).
CLOUDFRONT_ORIGIN_FACING = "com.amazonaws.global.cloudfront.origin-facing"
# The origin secret: letters and digits only (a literal in nginx, an ALB header
# condition without wildcards, a Gateway API header match without ':').
ORIGIN_SECRET_LENGTH = 48
# Where CloudFront (and its managed prefix list) is administered.
CDN_REGION = "us-east-1"


@dataclass(frozen=True)
class EdgeOriginsArgs:
    # Each target's own name at the edge (`<target>.origin.<domain>`), by target name.
    names: Mapping[str, str]
    app: str
    stack: str
    # CloudFront in front: lock every origin to it.
    cdn: bool = False
    # The header carrying the secret.
    verify_header: str = "X-Origin-Verify"
    # The path health checks request, open through the lock (Route 53 sends no headers).
    open_path: str = "/readyz"
    # An existing us-east-1 provider for the address-range lookup; default: a new one.
    provider: aws.Provider | None = None

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("names: at least one target is required")


class EdgeOrigins(pulumi.ComponentResource):
    """The targets' side of the edge: their names and, with a CDN, the origin lock."""

    origin_secret: random.RandomPassword | None
    cdn_cidrs: pulumi.Output[list[str]] | None
    provider: aws.Provider | None
    origins: dict[str, EdgeOrigin]

    def __init__(self, name: str, args: EdgeOriginsArgs,
                 opts: pulumi.ResourceOptions | None = None, *,
                 moved_from: pulumi.Input[str] | None = None) -> None:
        """`moved_from`: the URN of the component that held the origin secret before
        this one existed (EdgeRouting): it keeps its URN through an alias, and so its
        value."""
        super().__init__("gin-deploy:edge:EdgeOrigins", name, None, opts)
        self.origin_secret, self.cdn_cidrs, self.provider = None, None, None
        if args.cdn:
            # Only CloudFront and the targets know it; rotate with `pulumi up --replace`.
            self.origin_secret = random.RandomPassword(
                f"{name}-verify",
                length=ORIGIN_SECRET_LENGTH,
                special=False,
                min_lower=1, min_upper=1, min_numeric=1,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    aliases=[pulumi.Alias(parent=moved_from)] if moved_from is not None else None),
            )
            self.provider = args.provider or regional_provider(
                f"{name}-aws", CDN_REGION, {"app": args.app, "stack": args.stack}, parent=self)
            prefix_list = aws.ec2.get_managed_prefix_list_output(
                name=CLOUDFRONT_ORIGIN_FACING,
                opts=pulumi.InvokeOutputOptions(parent=self, provider=self.provider))
            self.cdn_cidrs = prefix_list.entries.apply(
                lambda entries: sorted({e.cidr for e in entries}))
        self.origins = {target: self._origin(own, args)
                        for target, own in args.names.items()}
        self.register_outputs({"names": dict(args.names)})

    @property
    def verify_value(self) -> pulumi.Output[str] | None:
        """The secret (a Pulumi secret), or None without a CDN."""
        if self.origin_secret is None:
            return None
        return pulumi.Output.secret(self.origin_secret.result)

    def origin_for(self, target: str) -> EdgeOrigin:
        """What target `target` must do for edge routing (passed to its component)."""
        if target not in self.origins:
            raise KeyError(f"no edge origin for target {target!r}; known: "
                           f"{', '.join(sorted(self.origins))}")
        return self.origins[target]

    def _origin(self, own_name: str, args: EdgeOriginsArgs) -> EdgeOrigin:
        if self.origin_secret is None:
            return EdgeOrigin(names=(own_name,))
        return EdgeOrigin(
            names=(own_name,),
            verify_header=args.verify_header,
            verify_value=self.origin_secret.result,
            open_path=args.open_path,
            cdn_cidrs=self.cdn_cidrs,
        )
