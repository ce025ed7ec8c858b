"""What every part of an EcsTarget shares: where its resources go, and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Scope:
    """Where a part creates its resources: named `<target>-<role>`, children of the
    EcsTarget (so their URNs are the target's, whichever module builds them), through
    the target's regional provider."""

    name: str          # the target's: prefixes every resource
    app: str
    stack: str
    parent: pulumi.Resource
    provider: aws.Provider

    @property
    def label(self) -> str:
        """`<app> (<stack>/<target>)`, for descriptions."""
        return f"{self.app} ({self.stack}/{self.name})"

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, provider=self.provider, **kwargs)

    @property
    def invoke(self) -> pulumi.InvokeOutputOptions:
        return pulumi.InvokeOutputOptions(parent=self.parent, provider=self.provider)


@dataclass(frozen=True)
class Account:
    """The AWS account and region a target's resources live in: for ARNs, trust
    conditions and service names."""

    id: pulumi.Output[str]
    partition: pulumi.Output[str]
    region: str
    # The partition's reverse DNS prefix ("com.amazonaws"): VPC endpoint service names.
    service_prefix: pulumi.Output[str]


def to_json(document: Any) -> str:
    """Compact, key-sorted JSON: the same document always gives the same input."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))
