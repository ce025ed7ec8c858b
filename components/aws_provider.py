"""The one way gin-deploy makes an AWS provider: explicit region, default tags.

Every AWS resource of a component goes through a provider of its own region
(never the ambient default), so one stack can hold several regions; the tags say
which app, stack and target a resource belongs to and that gin-deploy manages it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

MANAGED_BY = "gin-deploy"


def regional_provider(name: str, region: str, tags: Mapping[str, str],
                      parent: pulumi.Resource) -> aws.Provider:
    """An `aws.Provider` for `region` whose resources all carry `tags` + managed-by."""
    if not region:
        raise ValueError(f"{name}: region is required for an AWS provider")
    return aws.Provider(
        name,
        region=region,
        default_tags=aws.ProviderDefaultTagsArgs(tags={**tags, "managed-by": MANAGED_BY}),
        opts=pulumi.ResourceOptions(parent=parent),
    )
