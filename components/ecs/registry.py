"""The image registry of an EcsTarget: an ECR repository the image is pushed to.

Tags are immutable, every push is scanned, and a lifecycle policy keeps the
newest N images; the task runs the pushed image by digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.ecs.common import Scope, to_json
from gin_deploy.render import ecs as render

# Builds the image for `platform`, pushes it to `repository` with the given
# credentials and returns its repo digest (GinBuild.push, bound to a key).
ImagePusher = Callable[[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str], str],
                       pulumi.Output[str]]


@dataclass(frozen=True)
class EcsRegistry:
    repository: aws.ecr.Repository
    # `<repository>@sha256:...`: what the task runs.
    image: pulumi.Output[str]


def build_registry(scope: Scope, *, keep_images: int, arch: str,
                   push_image: ImagePusher) -> EcsRegistry:
    name = scope.name
    repository = aws.ecr.Repository(
        f"{name}-repo",
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
            scan_on_push=True),
        encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(
            encryption_type="AES256")],
        force_delete=False,
        opts=scope.opts(),
    )
    aws.ecr.LifecyclePolicy(
        f"{name}-repo-lifecycle",
        repository=repository.name,
        policy=to_json(render.ecr_lifecycle_policy(keep_images)),
        opts=scope.opts(),
    )
    token = aws.ecr.get_authorization_token_output(
        registry_id=repository.registry_id, opts=scope.invoke)
    image = push_image(repository.repository_url, token.user_name,
                       pulumi.Output.secret(token.password), f"linux/{arch}")
    return EcsRegistry(repository=repository, image=image)
