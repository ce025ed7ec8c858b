"""Deploying an existing image (`app.image`, `targets[].image`): nothing is built or
pushed for the targets using it, they run exactly the reference given, and a reference
that is not pinned by digest is refused at parse time naming its key."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gin_deploy.config import ConfigError, EcsTargetConfig, KubernetesTargetConfig, RawValue
from gin_deploy.config import parse_stack_config as parse_config
from gin_deploy.config.image import parse_image_ref
from gin_deploy.render import ecs as render_ecs
from tests.unit.harness import ROOT, RecordingMocks, run_program, unsecret
from tests.unit.test_ecs import ACCOUNT, assert_lints_clean, containers, ecs_only
from tests.unit.test_edge import PROD, prod_config
from tests.unit.test_edge import home as home  # autouse: the prod host target's key file
from tests.unit.test_edge import run as run_prod
from tests.unit.test_kubernetes import ROUTE53_ROLE, container, k8s_config, prod_target
from tests.unit.test_kubernetes import run as run_k8s

DIGEST = "sha256:" + "5e" * 32
GHCR = f"ghcr.io/acme/hello-gin@{DIGEST}"
ECR_REPO = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/ci/hello-gin"
ECR = f"{ECR_REPO}@{DIGEST}"
DOCKER = "docker:"  # every type token of pulumi-docker (and its provider) contains it


def docker_resources(mocks: RecordingMocks) -> list[str]:
    return [f"{r.typ} {r.name}" for r in mocks.resources if DOCKER in r.typ]


# --- the reference grammar --------------------------------------------------------------


@pytest.mark.parametrize(("ref", "parts"), [
    (GHCR, ("ghcr.io/acme/hello-gin", None, DIGEST)),
    (f"localhost:5000/hello@{DIGEST}", ("localhost:5000/hello", None, DIGEST)),
    (f"ghcr.io/acme/hello-gin:1.4.2@{DIGEST}", ("ghcr.io/acme/hello-gin", "1.4.2", DIGEST)),
    ("registry.example:8443/a/b_c/d-e:v1", ("registry.example:8443/a/b_c/d-e", "v1", None)),
])
def test_references_parse_into_repository_tag_and_digest(ref: str, parts: tuple[Any, ...]) -> None:
    parsed = parse_image_ref(ref)
    assert parsed is not None
    assert (parsed.repository, parsed.tag, parsed.digest) == parts


@pytest.mark.parametrize("ref", [
    "hello-gin@" + DIGEST,                    # no registry
    "acme/hello-gin@" + DIGEST,               # Docker Hub's implicit registry
    "ghcr.io/Acme/hello-gin@" + DIGEST,       # upper case path
    "ghcr.io/acme/hello-gin@sha256:abc",      # short digest
    "ghcr.io/acme/hello-gin@md5:" + "0" * 32,  # not sha256
    "ghcr.io/acme/hello gin:1",
])
def test_malformed_references_do_not_parse(ref: str) -> None:
    assert parse_image_ref(ref) is None


# --- config: parse-time validation ---------------------------------------------------------

K8S = {"name": "k8s", "kind": "kubernetes", "context": "prod",
       "release": {"strategy": "rolling"}}
ECS = {"name": "aws", "kind": "ecs", "region": "us-east-1", "cpu": 256, "memory": 512}


def parse(**config: Any) -> Any:
    raw = {k: RawValue(v, False) for k, v in {"domain": "api.example.com", **config}.items()}
    return parse_config(raw, project="gin-deploy", stack="test", project_dir=ROOT)


def problems(**config: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(**config)
    return err.value.problems


def test_app_image_is_every_image_targets_default_and_a_target_overrides_it() -> None:
    cfg = parse(app={"image": {"ref": GHCR}},
                targets=[ECS, {**K8S, "image": {"ref": ECR}}, {**K8S, "name": "k8s-2"}])
    ecs, k8s, k8s_2 = cfg.targets
    assert isinstance(ecs, EcsTargetConfig) and isinstance(k8s, KubernetesTargetConfig)
    assert ecs.image is not None and ecs.image.ref == GHCR
    assert k8s.image is not None and k8s.image.ref == ECR
    assert k8s_2.image is not None and k8s_2.image.repository == "ghcr.io/acme/hello-gin"
    # Without it, every target builds as before.
    assert all(t.image is None for t in parse(targets=[ECS]).targets)


def test_a_moving_tag_is_refused_naming_the_key_and_the_flag() -> None:
    [problem] = problems(app={"image": {"ref": "ghcr.io/acme/hello-gin:latest"}}, targets=[ECS])
    assert problem.startswith("gin-deploy:app.image.ref: 'ghcr.io/acme/hello-gin:latest' is "
                              "a moving tag; pin the image by digest")
    assert "app.image.allowTag: true" in problem
    [problem] = problems(targets=[ECS, {**K8S, "image": {"ref": "ghcr.io/acme/h:v1"}}])
    assert problem.startswith("gin-deploy:targets[1].image.ref: 'ghcr.io/acme/h:v1' is a "
                              "moving tag")
    assert "targets[1].image.allowTag: true" in problem


def test_allow_tag_accepts_a_tag_and_only_a_tag_or_digest() -> None:
    cfg = parse(targets=[{**K8S, "image": {"ref": "ghcr.io/acme/h:v1", "allowTag": True}}])
    assert cfg.targets[0].image.allow_tag is True
    [problem] = problems(targets=[{**K8S, "image": {"ref": "ghcr.io/acme/h",
                                                    "allowTag": True}}])
    assert problem.startswith("gin-deploy:targets[0].image.ref: names no digest (and no tag)")


@pytest.mark.parametrize(("image", "path", "message"), [
    ({"ref": "hello-gin@" + DIGEST}, "app.image.ref", "must be an image reference with "
     "its registry, <registry>/<repository>@sha256:<64 hex>"),
    ({"ref": "ghcr.io/acme/h@sha256:12"}, "app.image.ref", "must be an image reference"),
    ({}, "app.image.ref", "is required"),
    ({"ref": GHCR, "allowtag": True}, "app.image.allowtag", "unknown key (allowed: "
     "allowTag, ref)"),
    ("ghcr.io/acme/h@" + DIGEST, "app.image", "must be an object"),
])
def test_malformed_image_config_is_one_problem_naming_its_key(
        image: Any, path: str, message: str) -> None:
    [problem] = problems(app={"image": image}, targets=[ECS])
    assert problem.startswith(f"gin-deploy:{path}: {message}"), problem


def test_host_targets_build_from_source_and_have_no_image_key() -> None:
    [problem] = problems(targets=[{"name": "local", "kind": "host", "image": {"ref": GHCR}}])
    assert problem.startswith("gin-deploy:targets[0].image: unknown key")


def test_an_app_image_without_an_image_target_is_refused() -> None:
    [problem] = problems(app={"image": {"ref": GHCR}},
                         targets=[{"name": "local", "kind": "host"}])
    assert problem.startswith("gin-deploy:app.image: no target runs an image")


def test_kubernetes_needs_a_registry_only_without_an_image() -> None:
    [problem] = problems(targets=[K8S])
    assert problem.startswith("gin-deploy:targets[0].registry: is required for kubernetes "
                              "targets")
    assert parse(app={"image": {"ref": GHCR}}, targets=[K8S]).targets[0].registry is None


# --- the program under mocks ----------------------------------------------------------------


def test_the_whole_prod_stack_with_an_image_builds_and_pushes_nothing() -> None:
    config = prod_config()
    config["gin-deploy:app"] = {**PROD["gin-deploy:app"], "image": {"ref": GHCR}}
    built = run_prod(prod_config())
    assert docker_resources(built)  # the prod stack file builds and pushes by default
    mocks = run_prod(config)
    assert docker_resources(mocks) == []
    # The host target still gets its binary, built from source.
    assert [r.name for r in mocks.of_type("command:local:Command")] == ["hello-gin-binary"]
    [deployment] = [r for r in mocks.of_type("kubernetes:apps/v1:Deployment")
                    if r.name == "k8s-eu-deployment"]
    [pod] = unsecret(deployment.inputs["spec"])["template"]["spec"]["containers"]
    assert pod["image"] == GHCR
    [task] = mocks.of_type("aws:ecs/taskDefinition:TaskDefinition")
    [definition] = json.loads(unsecret(task.inputs["containerDefinitions"]))
    assert definition["image"] == GHCR


def test_ecs_runs_the_digest_and_may_pull_it_from_its_ecr_repository() -> None:
    mocks = run_program(ecs_only(image={"ref": ECR}), stack="prod")
    assert docker_resources(mocks) == []
    assert [c["image"] for c in containers(mocks)] == [ECR]
    # The target's own repository stays (switching back never deletes pushed images).
    assert mocks.named("aws-use1-repo").typ == "aws:ecr/repository:Repository"
    document = mocks.named("aws-use1-execution-policy").inputs["policy"]
    assert_lints_clean(document)
    pull = next(s for s in json.loads(document)["Statement"]
                if s["Sid"] == "EcrPullThisRepository")
    assert pull["Resource"] == [
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/aws-use1-repo",
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/ci/hello-gin"]


def test_ecs_runs_a_public_registry_image_with_its_own_repository_only() -> None:
    mocks = run_program(ecs_only(image={"ref": GHCR}), stack="prod")
    assert [c["image"] for c in containers(mocks)] == [GHCR]
    document = json.loads(mocks.named("aws-use1-execution-policy").inputs["policy"])
    pull = next(s for s in document["Statement"] if s["Sid"] == "EcrPullThisRepository")
    assert pull["Resource"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/aws-use1-repo"


def test_ecs_runs_a_tag_only_when_allowed() -> None:
    tag = f"{ECR_REPO}:1.4.2"
    mocks = run_program(ecs_only(image={"ref": tag, "allowTag": True}), stack="prod")
    assert [c["image"] for c in containers(mocks)] == [tag]
    with pytest.raises(ValueError, match="must be referenced by digest"):
        render_ecs.ContainerSpec(name="app", image=tag, port=8080, log_group="g",
                                 log_region="us-east-1", drain_s=10)


def test_ecr_repository_arn_of_an_image() -> None:
    assert render_ecs.ecr_repository_arn(ECR, "aws") == \
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/ci/hello-gin"
    china = f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v1"
    assert render_ecs.ecr_repository_arn(china, "aws-cn") == \
        f"arn:aws-cn:ecr:cn-north-1:{ACCOUNT}:repository/app"
    assert render_ecs.ecr_repository_arn(GHCR, "aws") is None


def test_kubernetes_runs_the_digest_without_a_registry_and_pulls_it_once() -> None:
    target = {k: v for k, v in prod_target().items() if k != "registry"}
    mocks = run_k8s({**target, "image": {"ref": GHCR},
                     "canary": {"version": "v2.0.0-rc.1", "weight": 10}})
    assert docker_resources(mocks) == []
    pod = container(mocks)
    assert (pod["image"], pod["imagePullPolicy"]) == (GHCR, "IfNotPresent")
    # The canary's tag is looked up in the image's repository.
    assert container(mocks, "k8s-eu-canary-deployment")["image"] == \
        "ghcr.io/acme/hello-gin:v2.0.0-rc.1"


def test_kubernetes_with_an_allowed_tag_always_pulls() -> None:
    mocks = run_k8s(prod_target(image={"ref": "ghcr.io/acme/hello-gin:main",
                                       "allowTag": True}))
    pod = container(mocks)
    assert (pod["image"], pod["imagePullPolicy"]) == ("ghcr.io/acme/hello-gin:main", "Always")


def test_only_the_targets_without_an_image_push() -> None:
    # Two targets share the domain: DNS-01 (cert-manager's Route 53 solver by web identity).
    with_image = prod_target(name="k8s-given", namespace="given", image={"ref": GHCR},
                             route53=ROUTE53_ROLE)
    mocks = run_k8s(prod_target(route53=ROUTE53_ROLE), with_image)
    pushes = [r.name for r in mocks.of_type("docker:index/registryImage:RegistryImage")]
    assert len(pushes) == 1
    assert container(mocks, "k8s-given-deployment")["image"] == GHCR
    assert container(mocks)["image"] == f"ghcr.io/example/hello-gin@sha256:{'ab' * 32}"


def test_a_bad_reference_fails_before_any_resource() -> None:
    mocks = RecordingMocks()
    config = k8s_config(prod_target(image={"ref": "ghcr.io/acme/hello-gin:latest"}))
    with pytest.raises(ConfigError, match=r"gin-deploy:targets\[0\]\.image\.ref: .* moving tag"):
        run_program(copy.deepcopy(config), stack="prod", mocks=mocks)
    assert mocks.resources == []
