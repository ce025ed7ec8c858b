"""The image registry of an EcsTarget: an ECR repository the image is pushed to.

Tags are immutable, every push is scanned, and a lifecycle policy keeps the
newest N images; the task runs the pushed image by digest. Given an existing image
instead, nothing is pushed and the task runs that; the repository stays, so a target
switching between the two never has its images deleted (AWS refuses to delete a
repository that holds images, and a rollback may need them).
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
                   push_image: ImagePusher | None, image: str | None = None) -> EcsRegistry:
    """`push_image` builds and pushes into the repository; `image` runs an existing one."""
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
    if image is not None:
        return EcsRegistry(repository=repository, image=pulumi.Output.from_input(image))
    assert push_image is not None, "push_image or image is required"
    token = aws.ecr.get_authorization_token_output(
        registry_id=repository.registry_id, opts=scope.invoke)
    pushed = push_image(repository.repository_url, token.user_name,
                        pulumi.Output.secret(token.password), f"linux/{arch}")
    return EcsRegistry(repository=repository, image=pushed)
