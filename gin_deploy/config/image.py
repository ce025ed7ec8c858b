"""`gin-deploy:app.image` and `targets[].image`: deploy an image that already exists.

A CI pipeline that builds and pushes the image itself hands the stack its reference;
the targets using it then get no build and no push. The reference is pinned by its
digest (`<registry>/<repository>@sha256:<64 hex>`): what runs is exactly what was
tested, and a rollback or a scale-out starts the same image. A tag moves under a
running release, so it is refused unless `allowTag` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gin_deploy.config.schema import ParseContext, Problems, spec_field

# The reference grammar of the distribution spec (docker/distribution `reference`), with
# the registry required: a short name ("hello-gin") means Docker Hub to one runtime and a
# search list to another.
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})+|localhost|{_HOST_LABEL})(?::\d{{1,5}})?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?P<repository>(?P<registry>{_REGISTRY})/{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?")
DIGEST_FORM = "<registry>/<repository>@sha256:<64 hex>"


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: `repository[:tag][@digest]`."""

    repository: str        # with its registry, e.g. ghcr.io/acme/hello-gin
    tag: str | None
    digest: str | None     # sha256:<64 hex>

    @property
    def pinned(self) -> bool:
        return self.digest is not None


def parse_image_ref(ref: str) -> ImageRef | None:
    """The parts of `ref`, or None when it is not a reference with a registry."""
    match = _REFERENCE.fullmatch(ref)
    if match is None:
        return None
    registry = match["registry"]
    # The first component names a registry only with a dot, a port or as localhost
    # (`acme/hello-gin` is a Docker Hub repository).
    if not ("." in registry or ":" in registry or registry == "localhost"):
        return None
    return ImageRef(match["repository"], match["tag"], match["digest"])


def _ref(value: str) -> str | None:
    parsed = parse_image_ref(value)
    if parsed is None:
        return (f"must be an image reference with its registry, {DIGEST_FORM} (e.g. "
                f"ghcr.io/acme/hello-gin@sha256:…), got {value!r}")
    if parsed.tag is None and parsed.digest is None:
        return f"names no digest (and no tag): pin it as {DIGEST_FORM}, got {value!r}"
    return None


@dataclass(frozen=True)
class ImageConfig:
    ref: str = spec_field(
        "ref", "The image to run, already pushed, pinned by digest: `<registry>/"
        "<repository>@sha256:<64 hex>` (what `docker buildx build --push` or `crane digest` "
        "reports). Nothing is built or pushed for the targets using it; set app.version to the "
        "version it reports (labels, the `version` output), else a hash of app.source stands "
        "in.", check=_ref)
    allow_tag: bool = spec_field(
        "allowTag", "Also accept a moving tag (`<registry>/<repository>:<tag>`). A tag can "
        "point at another image tomorrow: tasks and pods started later (scale-out, "
        "rescheduling, a rollback) may run it, and moving the tag alone deploys nothing.",
        False)

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        parsed = parse_image_ref(self.ref)
        assert parsed is not None  # the field's check passed
        if not parsed.pinned and not self.allow_tag:
            problems.add(f"{path}.ref", f"{self.ref!r} is a moving tag; pin the image by "
                         f"digest ({DIGEST_FORM}), or set {path.split(':', 1)[1]}.allowTag: "
                         "true to deploy whatever the tag names when a task or pod starts")

    @property
    def repository(self) -> str:
        parsed = parse_image_ref(self.ref)
        assert parsed is not None  # checked while parsing
        return parsed.repository


def image_doc(scope: str) -> str:
    """The doc of a section's `image` key (`scope` says which targets it applies to)."""
    return (f"An existing image to run instead of building one ({scope}): "
            "`{ref: <registry>/<repository>@sha256:…}`.")
