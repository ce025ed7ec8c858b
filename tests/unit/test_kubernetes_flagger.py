"""A `kubernetes` target whose release is a canary or blueGreen: under mocks, the program
lets Flagger run it (its Helm release, MetricTemplates, a Canary) and leaves it what Flagger
owns; rolling keeps the static objects; the config errors name their keys."""

from __future__ import annotations

from typing import Any

import pytest

from gin_deploy.config import ConfigError
from gin_deploy.render import kubernetes_versions as versions
from tests.unit.test_kubernetes import ProviderMocks, prod_target, run, spec_of

PROMETHEUS = "http://prometheus.monitoring:9090"


def flagger_target(**overrides: Any) -> dict[str, Any]:
    """The prod target without its `release: rolling`: 3 replicas default to canary."""
    target = {k: v for k, v in prod_target().items() if k != "release"}
    return {**target, "prometheusUrl": PROMETHEUS, **overrides}


@pytest.fixture(scope="module")
def canary() -> ProviderMocks:
    return run(flagger_target())


def names(mocks: ProviderMocks) -> set[str]:
    return {r.name for r in mocks.resources}


def test_a_canary_release_is_flaggers(canary: ProviderMocks) -> None:
    registered = names(canary)
    assert {"k8s-eu-flagger", "k8s-eu-canary", "k8s-eu-metric-error-rate",
            "k8s-eu-metric-p95-ms"} <= registered
    # Flagger owns the Services and the HTTPS route; no static canary.
    assert not registered & {"k8s-eu-service", "k8s-eu-https-route", "k8s-eu-canary-deployment",
                             "k8s-eu-canary-service"}
    release = canary.named("k8s-eu-flagger").inputs
    assert (release["chart"], release["version"]) == ("flagger", versions.FLAGGER.version)
    assert release["values"]["metricsServer"] == PROMETHEUS
    assert release["values"]["meshProvider"] == "gatewayapi:v1"
    spec = spec_of(canary, "k8s-eu-canary")
    assert spec["targetRef"]["name"] == "hello-gin"
    assert spec["analysis"]["stepWeights"] == [10, 50, 100]
    assert spec["progressDeadlineSeconds"] == 600
    template = canary.named("k8s-eu-metric-error-rate").inputs["spec"]
    assert template["provider"]["address"] == PROMETHEUS
    # The provider does not await the Deployment Flagger scales to 0.
    deployment = canary.named("k8s-eu-deployment").inputs["metadata"]
    assert deployment["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_the_release_policy_reaches_the_canary() -> None:
    mocks = run(flagger_target(release={"strategy": "blueGreen", "bakeSeconds": 120,
                                        "maxErrorRate": 0.05, "maxP95Ms": 250}))
    analysis = spec_of(mocks, "k8s-eu-canary")["analysis"]
    assert analysis["stepWeights"] == [100] and analysis["interval"] == "120s"
    assert [m["thresholdRange"]["max"] for m in analysis["metrics"]] == [0.05, 250]


def test_rolling_keeps_the_static_objects_and_installs_no_flagger() -> None:
    mocks = run(flagger_target(release={"strategy": "rolling"}))
    registered = names(mocks)
    assert {"k8s-eu-service", "k8s-eu-https-route"} <= registered
    assert not any("flagger" in n or n == "k8s-eu-canary" for n in registered)
    assert "annotations" not in mocks.named("k8s-eu-deployment").inputs["metadata"]


def test_install_flagger_false_reuses_the_clusters() -> None:
    mocks = run(flagger_target(installFlagger=False))
    assert "k8s-eu-flagger" not in names(mocks) and "k8s-eu-canary" in names(mocks)


def test_readiness_only_needs_no_prometheus() -> None:
    target = flagger_target(release={"bakeSeconds": 0})
    target.pop("prometheusUrl")
    mocks = run(target)
    assert spec_of(mocks, "k8s-eu-canary")["analysis"]["metrics"] == []
    assert not any(n.startswith("k8s-eu-metric-") for n in names(mocks))


@pytest.mark.parametrize(("overrides", "key", "text"), [
    ({"prometheusUrl": None}, "targets[0].prometheusUrl", "is required with release strategy "
     "canary"),
    ({"release": {"strategy": "blueGreen"}, "prometheusUrl": None}, "targets[0].prometheusUrl",
     "blueGreen"),
    ({"prometheusUrl": "prometheus:9090"}, "targets[0].prometheusUrl", "http(s) URL"),
    ({"canary": {"version": "v2", "weight": 10}}, "targets[0].canary",
     "only with release strategy rolling"),
])
def test_config_errors_name_the_key(overrides: dict[str, Any], key: str, text: str) -> None:
    target = {k: v for k, v in flagger_target(**overrides).items() if v is not None}
    with pytest.raises(ConfigError) as err:
        run(target)
    [problem] = err.value.problems
    assert problem.startswith(f"gin-deploy:{key}: ") and text in problem, problem
