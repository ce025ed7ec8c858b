"""GinBuild under mocks: the binary's build command and the image's definition."""

from __future__ import annotations

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
    assert build.inputs["dir"] == str(ROOT / "app")
    assert source_hash(ROOT / "app") in build.inputs["triggers"]
    assert [r.typ for r in mocks.resources if r.typ.startswith("docker:")] == []


def test_explicit_version_is_stamped_and_triggers_a_rebuild() -> None:
    config = stack_config("dev")
    config["gin-deploy:app"] = {**config["gin-deploy:app"], "version": "1.4.2"}
    build = run_program(config).named("hello-gin-binary")
    assert "-X main.version=1.4.2" in build.inputs["create"]
    assert "1.4.2" in build.inputs["triggers"]


def test_image_is_built_from_the_dockerfile_and_pushed_with_secret_credentials() -> None:
    args = GinBuildArgs(
        app_name="svc", source_dir=ROOT / "app", output_dir=ROOT / "build", version="2.0.0",
        build_binary=False, image_platform="linux/arm64",
        registries=(RegistrySpec("registry.example.com/team/svc", "ci",
                                 pulumi.Output.secret("s3cret")),),
    )
    mocks = build_under_mocks(args)
    assert mocks.of_type("command:local:Command") == []
    [image] = mocks.of_type("docker:index/image:Image")
    assert image.inputs["imageName"] == "registry.example.com/team/svc:2.0.0"
    build = image.inputs["build"]
    assert build["context"] == str(ROOT / "app")
    assert build["dockerfile"] == str(ROOT / "app" / "Dockerfile")
    assert build["platform"] == "linux/arm64"
    assert build["args"]["VERSION"] == "2.0.0"
    # The secret password makes the whole registry block secret on the wire.
    assert is_secret(image.inputs["registry"])
    registry = unsecret(image.inputs["registry"])
    assert registry == {"server": "registry.example.com", "username": "ci", "password": "s3cret"}


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
    assert len({r.name for r in mocks.of_type("docker:index/image:Image")}) == 2


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
    assert image.name == "svc-image-ecr-use1"
    assert image.inputs["imageName"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/svc:3.1.0"
    assert unsecret(image.inputs["registry"])["server"] == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert image.inputs["build"]["platform"] == "linux/arm64"
    assert seen == [f"123456789012.dkr.ecr.us-east-1.amazonaws.com/svc@sha256:{'ab' * 32}"]
