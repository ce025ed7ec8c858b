"""GinBuild under mocks: the binary's build command and the image's definition."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pulumi

from components.build import GinBuild, GinBuildArgs, RegistrySpec, source_hash
from tests.unit.harness import ROOT, RecordingMocks, is_secret, run_program, stack_config, unsecret


def build_under_mocks(args: GinBuildArgs) -> RecordingMocks:
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="gin-deploy", stack="test", preview=False)

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[object]:
        build = GinBuild("svc", args)
        return pulumi.Output.all(build.binary_sha256, *build.image_digests.values())

    evaluate()
    return mocks


def test_source_hash_follows_go_sources_not_tests(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n")
    (tmp_path / "main.go").write_text("package main\n")
    first = source_hash(tmp_path)
    (tmp_path / "main_test.go").write_text("package main\n")
    (tmp_path / "README.md").write_text("docs\n")
    assert source_hash(tmp_path) == first
    (tmp_path / "main.go").write_text("package main\n// changed\n")
    assert source_hash(tmp_path) != first
    (tmp_path / "go.sum").write_text("x v1 h1:abc\n")
    assert source_hash(tmp_path) != first


def test_dev_stack_builds_a_static_stamped_binary_triggered_by_the_source_hash() -> None:
    mocks = run_program(stack_config("dev"))
    [build] = mocks.of_type("command:local:Command")[:1]
    assert build.name == "hello-gin-binary"
    create = build.inputs["create"]
    assert "go build -trimpath" in create and "-s -w" in create
    assert "-X main.version=0.0.0-src." in create and "-X main.commit=" in create
    assert build.inputs["environment"]["CGO_ENABLED"] == "0"
    assert build.inputs["environment"]["GOOS"] == "linux"
    # Relative paths: a teammate's or CI's checkout elsewhere sees the same inputs.
    assert build.inputs["dir"] == "app"
    assert "-o ../build/hello-gin-" in create
    assert str(ROOT) not in json.dumps(build.inputs)
    assert source_hash(ROOT / "app") in build.inputs["triggers"]
    assert [r.typ for r in mocks.resources if r.typ.startswith("docker:")] == []


def test_explicit_version_is_stamped_and_triggers_a_rebuild() -> None:
    config = stack_config("dev")
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "1.4.2"}
    build = run_program(config).named("hello-gin-binary")
    assert "-X main.version=1.4.2" in build.inputs["create"]
    assert "1.4.2" in build.inputs["triggers"]


def test_image_is_built_once_from_the_dockerfile_and_pushed_with_secret_credentials() -> None:
    args = GinBuildArgs(
        app_name="svc", source_dir=ROOT / "app", output_dir=ROOT / "build", version="2.0.0",
        build_binary=False, image_platform="linux/arm64",
        registries=(RegistrySpec("registry.example.com/team/svc", "ci",
                                 pulumi.Output.secret("s3cret")),),
    )
    mocks = build_under_mocks(args)
    assert mocks.of_type("command:local:Command") == []
    [image] = mocks.of_type("docker:index/image:Image")
    assert image.inputs["skipPush"] is True
    build = image.inputs["build"]
    assert build["context"] == str(ROOT / "app")
    assert build["dockerfile"] == str(ROOT / "app" / "Dockerfile")
    assert build["platform"] == "linux/arm64"
    assert build["args"]["VERSION"] == "2.0.0"
    local_name = image.inputs["imageName"]
    assert local_name.startswith("svc:2.0.0-")
    [tag] = mocks.of_type("docker:index/tag:Tag")
    assert tag.inputs["sourceImage"] == local_name
    assert tag.inputs["targetImage"] == "registry.example.com/team/svc:" + local_name.split(":")[1]
    [push] = mocks.of_type("docker:index/registryImage:RegistryImage")
    assert push.inputs["name"] == tag.inputs["targetImage"]
    assert push.inputs["keepRemotely"] is True
    # The credentials live on a provider of this registry's own, the password secret.
    [provider] = mocks.of_type("pulumi:providers:docker")
    # (Provider inputs travel as JSON; the secret password makes all of it secret.)
    assert is_secret(provider.inputs["registryAuth"])
    [entry] = json.loads(unsecret(provider.inputs["registryAuth"]))
    assert entry == {"address": "registry.example.com", "username": "ci", "password": "s3cret"}


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "PATH": "/usr/bin:/bin"})


def _image_inputs(source_dir: Path) -> tuple[str, dict[str, object]]:
    """(pushed tag, the build's inputs) of one program run."""
    args = GinBuildArgs(app_name="svc", source_dir=source_dir, output_dir=source_dir / "out",
                        build_binary=False, registries=(RegistrySpec("r.example.com/svc"),))
    mocks = build_under_mocks(args)
    [image] = mocks.of_type("docker:index/image:Image")
    [push] = mocks.of_type("docker:index/registryImage:RegistryImage")
    return push.inputs["name"], image.inputs


def test_image_tag_is_a_content_address_unmoved_by_unrelated_commits(tmp_path: Path) -> None:
    # ECR tags are immutable: new content under an old tag is refused on push.
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "app", repo / "app", ignore=shutil.ignore_patterns("bin"))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "app")
    first = _image_inputs(repo / "app")

    (repo / "README.md").write_text("docs only\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "docs")
    assert _image_inputs(repo / "app") == first

    dockerfile = repo / "app" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "LABEL org.example.note=changed\n")
    _git(repo, "commit", "-qam", "dockerfile")
    changed_tag, _ = _image_inputs(repo / "app")
    assert changed_tag != first[0]


def test_one_build_per_platform_serves_every_registry() -> None:
    args = GinBuildArgs(app_name="svc", source_dir=ROOT / "app", output_dir=ROOT / "build",
                        version="3.0.0", build_binary=False)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="gin-deploy", stack="test", preview=False)

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[object]:
        build = GinBuild("svc", args)
        return pulumi.Output.all(
            build.push("a", "a.example.com/svc"),
            build.push("b", "b.example.com/svc"),
            build.push("c", "c.example.com/svc", platform="linux/arm64"),
        )

    evaluate()
    builds = mocks.of_type("docker:index/image:Image")
    assert sorted(b.inputs["build"]["platform"] for b in builds) == ["linux/amd64", "linux/arm64"]
    pushes = {p.name: p.inputs["name"] for p in
              mocks.of_type("docker:index/registryImage:RegistryImage")}
    assert set(pushes) == {"svc-push-a", "svc-push-b", "svc-push-c"}
    # Same platform, same content, same tag; another platform is other content.
    assert pushes["svc-push-a"].split(":")[1] == pushes["svc-push-b"].split(":")[1]
    assert pushes["svc-push-c"].split(":")[1] != pushes["svc-push-a"].split(":")[1]


def test_image_digest_is_exported_per_registry() -> None:
    args = GinBuildArgs(
        app_name="svc", source_dir=ROOT / "app", output_dir=ROOT / "build", build_binary=False,
        registries=(RegistrySpec("a.example.com/svc"), RegistrySpec("b.example.com/svc")),
    )
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="gin-deploy", stack="test", preview=False)
    digests: dict[str, str] = {}

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[object]:
        build = GinBuild("svc", args)
        return pulumi.Output.all(**build.image_digests).apply(digests.update)

    evaluate()
    assert len(digests) == 2
    assert sorted(d.split("@")[0] for d in digests.values()) == [
        "a.example.com/svc", "b.example.com/svc"]
    # Both registries get the one amd64 build.
    assert len(mocks.of_type("docker:index/image:Image")) == 1
    assert len(mocks.of_type("docker:index/registryImage:RegistryImage")) == 2


def test_push_accepts_a_repository_created_in_the_same_program() -> None:
    args = GinBuildArgs(app_name="svc", source_dir=ROOT / "app", output_dir=ROOT / "build",
                        version="3.1.0", build_binary=False)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="gin-deploy", stack="test", preview=False)
    seen: list[str] = []

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[None]:
        build = GinBuild("svc", args)
        repo = pulumi.Output.from_input("123456789012.dkr.ecr.us-east-1.amazonaws.com/svc")
        digest = build.push("ecr-use1", repo, username="AWS",
                            password=pulumi.Output.secret("token"), platform="linux/arm64")
        return digest.apply(seen.append)

    evaluate()
    [image] = mocks.of_type("docker:index/image:Image")
    assert image.inputs["build"]["platform"] == "linux/arm64"
    [push] = mocks.of_type("docker:index/registryImage:RegistryImage")
    assert push.name == "svc-push-ecr-use1"
    assert push.inputs["name"].startswith(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/svc:3.1.0-")
    [provider] = mocks.of_type("pulumi:providers:docker")
    assert "123456789012.dkr.ecr.us-east-1.amazonaws.com" in json.dumps(provider.inputs)
    assert seen == [f"123456789012.dkr.ecr.us-east-1.amazonaws.com/svc@sha256:{'ab' * 32}"]
