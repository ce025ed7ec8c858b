"""GinBuild: the service's static binary for hosts and its OCI image for containers.

The binary is built by a `local.Command` whose only trigger is a hash of the Go
sources (and go.mod/go.sum), so an unchanged service is never rebuilt and a
changed one always is. Images are built from `<source>/Dockerfile` once per
platform and the one build is pushed to every registry that needs it, referenced by
digest. Its tag is a content address of everything that goes into the image (the
build context, the Dockerfile, the build args, the platform), so registries with
immutable tags (ECR) never see the same tag with other content, and an unchanged
image is never pushed again.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_docker as docker

# Files whose content decides what the binary is; tests do not.
_SOURCE_SUFFIXES = (".go", ".mod", ".sum")
_SKIP_DIRS = {".git", "vendor", "bin", "testdata", "node_modules"}


def source_hash(source_dir: Path) -> str:
    """sha256 over the relative paths and contents of the build inputs."""
    digest = hashlib.sha256()
    for path in sorted(source_dir.rglob("*")):
        rel = path.relative_to(source_dir)
        if any(part in _SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        if path.suffix not in _SOURCE_SUFFIXES or path.name.endswith("_test.go"):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def image_context_hash(source_dir: Path, dockerfile: Path, build_args: dict[str, str],
                       platform: str) -> str:
    """sha256 over everything an image build reads: every file of the build context
    (a superset of what .dockerignore lets through, so no change can slip by), the
    Dockerfile, the build args and the platform."""
    digest = hashlib.sha256()
    for path in sorted(source_dir.rglob("*")):
        rel = path.relative_to(source_dir)
        if rel.parts[0] in {".git", "bin"} or not path.is_file():
            continue
        digest.update(b"file\0" + str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(b"dockerfile\0" + dockerfile.read_bytes() + b"\0")
    for key, value in sorted(build_args.items()):
        digest.update(f"arg\0{key}={value}\0".encode())
    digest.update(f"platform\0{platform}\0".encode())
    return digest.hexdigest()


def git_stamp(source_dir: Path) -> tuple[str, str]:
    """(commit, commit time) of the last commit that touched the sources, or 'unknown'.

    The commit time, not the wall clock, is the build time, and only commits that touch
    the source directory count: a docs-only commit elsewhere in the repository leaves
    the binary's and the image's inputs as they were (no rebuild, no new release).
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(source_dir), "log", "-1", "--format=%h %cI", "--", "."],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split()
        if len(out) == 2:
            return out[0], out[1]
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown", "unknown"


@dataclass(frozen=True)
class RegistrySpec:
    """Where an image is pushed; `password` is a Pulumi secret when given."""

    repository: str
    username: str | None = None
    password: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class GinBuildArgs:
    app_name: str
    # Relative to the project directory (the engine's working directory) so that inputs do
    # not depend on where the project is checked out; absolute paths work too.
    source_dir: Path
    output_dir: Path          # where binaries go (gitignored build/ under the project)
    version: str | None = None
    build_binary: bool = True
    goarch: str = "amd64"
    registries: tuple[RegistrySpec, ...] = ()
    image_platform: str = "linux/amd64"
    ldflags_vars: dict[str, str] = field(default_factory=lambda: {
        "version": "main.version", "commit": "main.commit", "buildTime": "main.buildTime",
    })


class GinBuild(pulumi.ComponentResource):
    """Builds the service once per source change; exposes binary and image digests."""

    version: str
    source_hash: str
    binary_path: str | None
    binary_sha256: pulumi.Output[str] | None
    images: dict[str, docker.Image]             # one local build per platform
    pushed: dict[str, docker.RegistryImage]     # one push per registry key
    image_digests: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: GinBuildArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gin-deploy:build:GinBuild", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.source_hash = source_hash(args.source_dir)
        self.version = args.version or f"0.0.0-src.{self.source_hash[:12]}"
        commit, build_time = git_stamp(args.source_dir)
        stamps = {"version": self.version, "commit": commit, "buildTime": build_time}

        self.binary_path = None
        self.binary_sha256 = None
        if args.build_binary:
            out = args.output_dir / f"{args.app_name}-{self.source_hash[:16]}-{args.goarch}"
            self.binary_path = str(out)
            # The build runs in the source dir; relative paths keep the inputs the same in
            # every checkout of the project (a teammate's, CI's), so nothing rebuilds.
            from_source = os.path.relpath(out, args.source_dir) if not out.is_absolute() \
                else str(out)
            ldflags = " ".join(
                ["-s", "-w"] + [f"-X {args.ldflags_vars[k]}={v}" for k, v in stamps.items()]
            )
            build = command.local.Command(
                f"{name}-binary",
                create=(
                    "set -eu; "
                    f"go build -trimpath -ldflags {shlex.quote(ldflags)} "
                    f"-o {shlex.quote(from_source)} . "
                    f"&& sha256sum {shlex.quote(from_source)} | cut -d' ' -f1"
                ),
                dir=str(args.source_dir),
                environment={"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": args.goarch,
                             "GOFLAGS": "-mod=readonly"},
                triggers=[self.source_hash, self.version, args.goarch],
                opts=child,
            )
            self.binary_sha256 = build.stdout.apply(lambda s: s.strip().splitlines()[-1])

        self.images = {}
        self.pushed = {}
        self.image_digests = {}
        self._app_name = args.app_name
        self._source_dir = args.source_dir
        self._stamps = {"VERSION": self.version, "COMMIT": commit, "BUILD_TIME": build_time}
        self._name = name
        for registry in args.registries:
            self.push(_short(registry.repository), registry.repository,
                      username=registry.username, password=registry.password,
                      platform=args.image_platform)

        self.register_outputs({
            "version": self.version,
            "binaryPath": self.binary_path,
            "binarySha256": self.binary_sha256,
            "imageDigests": self.image_digests,
        })


    def image_tag(self, platform: str) -> str:
        """The tag of this build's image for `platform`: version + content address."""
        dockerfile = self._source_dir / "Dockerfile"
        content = image_context_hash(self._source_dir, dockerfile, self._stamps, platform)
        return f"{self.version}-{content[:16]}"

    def _local_image(self, platform: str) -> docker.Image:
        """The one build for `platform` (not pushed: each registry gets a tag of it)."""
        if platform not in self.images:
            self.images[platform] = docker.Image(
                f"{self._name}-build-{platform.replace('/', '-')}",
                image_name=f"{self._app_name}:{self.image_tag(platform)}",
                build=docker.DockerBuildArgs(
                    context=str(self._source_dir),
                    dockerfile=str(self._source_dir / "Dockerfile"),
                    platform=platform,
                    args=self._stamps,
                ),
                skip_push=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return self.images[platform]

    def push(self, key: str, repository: pulumi.Input[str], *,
             username: pulumi.Input[str] | None = None,
             password: pulumi.Input[str] | None = None,
             platform: str = "linux/amd64") -> pulumi.Output[str]:
        """Push this build's image for `platform` to `repository` (an Input, so an ECR
        repository created in the same program works). Returns the pushed image's repo
        digest (`repository@sha256:...`), which deployments reference.

        The image is built once per platform however many registries it goes to. Old
        images stay in the registry (`keep_remotely`): a rollback needs them, and the
        registry's lifecycle policy, not a deploy, decides when they go.
        """
        local = self._local_image(platform)
        tag = self.image_tag(platform)
        repo = pulumi.Output.from_input(repository)
        child = pulumi.ResourceOptions(parent=self)
        registry_opts = child
        if username is not None:
            # Credentials for this registry only, on a provider of its own.
            provider = docker.Provider(
                f"{self._name}-registry-{key}",
                registry_auth=[docker.ProviderRegistryAuthArgs(
                    address=repo.apply(lambda r: r.split("/", 1)[0]),
                    username=username,
                    password=pulumi.Output.secret(password) if password is not None else None,
                )],
                opts=child,
            )
            registry_opts = pulumi.ResourceOptions(parent=self, provider=provider)
        tagged = docker.Tag(
            f"{self._name}-tag-{key}",
            source_image=local.image_name,
            target_image=repo.apply(lambda r: f"{r}:{tag}"),
            opts=child,
        )
        pushed = docker.RegistryImage(
            f"{self._name}-push-{key}",
            name=tagged.target_image,
            keep_remotely=True,
            triggers={"content": tag},
            opts=registry_opts,
        )
        self.pushed[key] = pushed
        digest = pulumi.Output.all(repo, pushed.sha256_digest).apply(
            lambda v: f"{v[0]}@{v[1]}")
        self.image_digests[key] = digest
        return digest


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
