"""`gin-deploy:release` and `targets[].release`: defaults resolved per target at parse time,
overrides key by key, every invalid value reported at once by its key path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gin_deploy.config import ConfigError, HostTargetConfig, ReleasePolicy
from gin_deploy.config.release import DEFAULTS
from tests.unit.harness import ROOT
from tests.unit.test_config import ECS, HOST, K8S, PUBLIC, parse, problems


def test_default_strategy_depends_on_the_size_of_each_target() -> None:
    cfg = parse({**PUBLIC, "targets": [
        {**HOST, "instances": 2}, {**HOST, "name": "one", "instances": 1, "basePort": 9500},
        {**ECS, "desiredCount": 2}, {**K8S, "replicas": 1}]})
    assert [t.release.strategy for t in cfg.targets] == ["canary", "rolling", "canary",
                                                         "rolling"]
    assert cfg.targets[0].release == ReleasePolicy(
        strategy="canary", steps=(10, 50, 100), bake_seconds=60, max_error_rate=0.01,
        max_p95_ms=500, min_requests=100)
    # rolling and blueGreen move all traffic at once: one step of 100.
    assert cfg.targets[1].release.steps == (100,)



def test_behind_the_cdn_an_ecs_target_defaults_to_rolling() -> None:
    # 2 tasks would make it canary, which ECS cannot shift behind the CDN
    # (test_ecs_release): the target deploys rolling, guarded by its rollback alarms,
    # rather than failing a config that never asked for a canary.
    targets = [{**ECS, "desiredCount": 2}]
    cdn = parse({**PUBLIC, "targets": targets,
                 "edge": {"zone": "example.com", "cdn": True}})
    assert cdn.targets[0].release.strategy == "rolling"
    direct = parse({**PUBLIC, "targets": targets})
    assert direct.targets[0].release.strategy == "canary"

def test_a_target_overrides_only_the_keys_it_sets() -> None:
    cfg = parse({"release": {"bakeSeconds": 5, "maxErrorRate": "0.05", "steps": [25, 100]},
                 "targets": [{**HOST, "release": {"maxP95Ms": 200}},
                             {**HOST, "name": "bg", "basePort": 9500,
                              "release": {"strategy": "blueGreen", "bakeSeconds": 30}}]})
    first, second = (t.release for t in cfg.targets)
    assert first == ReleasePolicy("canary", (25, 100), 5, 0.05, 200, 100)
    assert second == ReleasePolicy("blueGreen", (100,), 30, 0.05, 500, 100)


def test_stack_strategy_applies_to_every_target_unless_overridden() -> None:
    cfg = parse({"release": {"strategy": "rolling"},
                 "targets": [{**HOST, "instances": 3},
                             {**HOST, "name": "c", "basePort": 9500,
                              "release": {"strategy": "canary"}}]})
    assert [t.release.strategy for t in cfg.targets] == ["rolling", "canary"]


def test_every_invalid_release_value_is_reported_at_once_by_key_path() -> None:
    found = problems({"release": {"strategy": "yolo", "steps": [50, 10, 100],
                                  "bakeSeconds": -1, "maxErrorRate": 2, "maxP95Ms": 0,
                                  "minRequests": "many", "window": 3},
                      "targets": [{**HOST, "release": {"steps": [10, 50]}}]})
    prefix = "gin-deploy:"
    expected = {
        "release.strategy": "must be one of rolling | canary | blueGreen, got 'yolo'",
        "release.steps": "must increase step by step, got [50, 10, 100]",
        "release.bakeSeconds": "must be >= 0, got -1",
        "release.maxErrorRate": "must be a share in 0..1 (0.01 = 1%), got 2.0",
        "release.maxP95Ms": "must be >= 1, got 0",
        "release.minRequests": "must be an integer, got 'many'",
        "release.window": "unknown key",
        "targets[0].release.steps": "must end at 100",
    }
    assert len(found) == len(expected), found
    for key, message in expected.items():
        assert any(p.startswith(f"{prefix}{key}: {message}") for p in found), (key, found)


@pytest.mark.parametrize(("steps", "message"), [
    ([], "must list at least one step"),
    ([0, 100], "every step must be a percent in 1..100"),
    ([10, 10, 100], "must increase step by step"),
    ([10, 101], "every step must be a percent in 1..100"),
])
def test_steps_are_increasing_percentages(steps: list[int], message: str) -> None:
    [problem] = problems({"release": {"steps": steps}, "targets": [HOST]})
    assert problem.startswith(f"gin-deploy:release.steps: {message}"), problem


def test_steps_with_a_strategy_that_has_none_is_a_mistake_said_so() -> None:
    [problem] = problems({"targets": [{**HOST, "release": {"strategy": "blueGreen",
                                                             "steps": [50, 100]}}]})
    assert problem.startswith("gin-deploy:targets[0].release.steps: only applies to "
                              "strategy canary"), problem


def test_host_candidates_get_the_ports_after_the_instances_and_must_not_collide() -> None:
    cfg = parse({"targets": [{**HOST, "instances": 3, "basePort": 9080}]})
    target = cfg.targets[0]
    assert isinstance(target, HostTargetConfig)
    assert target.instance_ports == (9080, 9081, 9082)
    assert target.candidate_ports == (9083, 9084, 9085)

    collide: dict[str, Any] = {**HOST, "instances": 2, "basePort": 8440}  # 8442..8443
    [problem] = problems({"targets": [collide]})
    assert problem.startswith("gin-deploy:targets[0].httpsPort: 8443 collides with them: "
                              "canary starts a new release beside the serving one on ports "
                              "8442-8443"), problem
    # rolling restarts in place: no second set of ports.
    rolling = parse({"targets": [{**collide, "release": {"strategy": "rolling"}}]}).targets[0]
    assert isinstance(rolling, HostTargetConfig) and rolling.candidate_ports == ()

    [problem] = problems({"targets": [{**HOST, "instances": 2, "basePort": 65533}]})
    assert problem.startswith("gin-deploy:targets[0].basePort: too high:"), problem


def test_pulumi_yaml_default_is_the_documented_defaults() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]["release"]
    # No steps: a kind may have its own default (ecs: [10, 100]); DEFAULTS' are the rest's.
    assert declared["default"] == {
        "bakeSeconds": DEFAULTS.bake_seconds,
        "maxErrorRate": DEFAULTS.max_error_rate, "maxP95Ms": DEFAULTS.max_p95_ms,
        "minRequests": DEFAULTS.min_requests}


def test_release_config_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"gin-deploy:release: must be an object"):
        parse({"release": [1], "targets": [HOST]})
