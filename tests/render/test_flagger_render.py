"""Flagger's objects (a `kubernetes` target with a canary or blueGreen release) checked
offline against the CRD schemas of the pinned Flagger release, from its Go module
(artifacts/flagger/crd.yaml, the same CRDs its chart installs), made strict like the API
server's field validation. What this does not prove: no Prometheus or Flagger controller
runs here, so the PromQL is checked for its shape only, never evaluated."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from gin_deploy.render import flagger
from gin_deploy.render import kubernetes as render
from gin_deploy.render import kubernetes_versions as versions
from tests.gomod import go_module_dir
from tests.render.test_kubernetes_render import APP, DIGEST, LETS_ENCRYPT, REPO, crd_errors

PROMETHEUS = "http://prometheus.monitoring:9090"
ANALYSIS = flagger.Analysis(steps=(10, 50, 100), bake_seconds=60, max_error_rate=0.01,
                            max_p95_ms=500, min_requests=100, prometheus_url=PROMETHEUS)
FLAGGER_KINDS = {"Canary", "MetricTemplate"}


def flagger_scenarios(app: render.KubernetesApp) -> dict[str, list[render.Manifest]]:
    """The objects of a target Flagger releases (also applied by tests/k8s in a dry run)."""
    edge = dataclasses.replace(app, extra_names=(f"k8s-eu.origin.{app.domain}",),
                               origin_verify_header="X-Origin-Verify",
                               origin_open_path="/readyz")
    return {
        "canary": render.render_manifests(app, image=f"{REPO}@{DIGEST}", acme=LETS_ENCRYPT,
                                          analysis=ANALYSIS),
        "blue-green-no-guard": render.render_manifests(
            app, image=f"{REPO}@{DIGEST}", acme=LETS_ENCRYPT,
            analysis=dataclasses.replace(ANALYSIS, steps=(100,), min_requests=0)),
        "readiness-only": render.render_manifests(
            app, image=f"{REPO}@{DIGEST}", acme=LETS_ENCRYPT,
            analysis=dataclasses.replace(ANALYSIS, bake_seconds=0, prometheus_url=None)),
        "edge-cdn": render.render_manifests(edge, image=f"{REPO}@{DIGEST}", acme=LETS_ENCRYPT,
                                            analysis=ANALYSIS, origin_verify_value="Zq7" * 16),
    }


SCENARIOS = flagger_scenarios(APP)


def by_kind(manifests: list[render.Manifest], kind: str) -> list[render.Manifest]:
    return [m for m in manifests if m["kind"] == kind]


@pytest.fixture(scope="module")
def flagger_schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    module = go_module_dir(versions.FLAGGER_MODULE, versions.FLAGGER_MODULE_VERSION,
                           tmp_path_factory.mktemp("gomod"))
    schemas: dict[tuple[str, str], Any] = {}
    for doc in yaml.safe_load_all((module / "artifacts" / "flagger" / "crd.yaml").read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            spec = doc["spec"]
            for v in spec["versions"]:
                if v.get("served"):
                    schemas[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = \
                        v["schema"]["openAPIV3Schema"]
    # The chart installs the same CRDs it ships beside its templates.
    chart = yaml.safe_load((module / "charts" / "flagger" / "Chart.yaml").read_text())
    assert chart["version"] == versions.FLAGGER.version
    assert (module / "charts" / "flagger" / "crds" / "crd.yaml").read_text() == \
        (module / "artifacts" / "flagger" / "crd.yaml").read_text()
    return schemas


@pytest.mark.host
def test_flagger_objects_match_the_pinned_crds(
        flagger_schemas: dict[tuple[str, str], Any]) -> None:
    checked = set()
    for scenario, manifests in SCENARIOS.items():
        for manifest in manifests:
            if manifest["kind"] in FLAGGER_KINDS:
                assert crd_errors(flagger_schemas, manifest) == [], scenario
                checked.add(manifest["kind"])
    assert checked == FLAGGER_KINDS


@pytest.mark.host
def test_the_flagger_crd_check_rejects_unknown_fields_and_bad_values(
        flagger_schemas: dict[tuple[str, str], Any]) -> None:
    [canary] = by_kind(SCENARIOS["canary"], "Canary")
    bad = copy.deepcopy(canary)
    bad["spec"]["analysis"]["stepWieghts"] = [10]
    assert any("stepWieghts" in e for e in crd_errors(flagger_schemas, bad))
    bad = copy.deepcopy(canary)
    bad["spec"]["analysis"]["metrics"][0]["interval"] = "1h"   # only s or m
    assert crd_errors(flagger_schemas, bad)


def test_flagger_replaces_the_service_static_canary_and_https_route() -> None:
    kinds = [m["kind"] for m in SCENARIOS["canary"]]
    assert "Service" not in kinds
    assert [m["metadata"]["name"] for m in by_kind(SCENARIOS["canary"], "HTTPRoute")] == \
        [f"{APP.name}-redirect"]
    [deployment] = by_kind(SCENARIOS["canary"], "Deployment")
    assert deployment["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    # Rolling (no analysis) keeps today's objects, without the annotation.
    rolling = render.render_manifests(APP, image=f"{REPO}@{DIGEST}", acme=LETS_ENCRYPT)
    assert "annotations" not in by_kind(rolling, "Deployment")[0]["metadata"]
    assert len(by_kind(rolling, "HTTPRoute")) == 2 and by_kind(rolling, "Service")
    # PDB and NetworkPolicy cover Flagger's primary pods too.
    expected = {"matchExpressions": [{"key": render.NAME_LABEL, "operator": "In",
                                      "values": [APP.name, f"{APP.name}-primary"]}]}
    assert by_kind(SCENARIOS["canary"], "PodDisruptionBudget")[0]["spec"]["selector"] == expected
    assert by_kind(SCENARIOS["canary"], "NetworkPolicy")[0]["spec"]["podSelector"] == expected


def test_the_canary_follows_the_release_policy_and_the_gateway() -> None:
    [canary] = by_kind(SCENARIOS["canary"], "Canary")
    spec = canary["spec"]
    assert spec["provider"] == "gatewayapi:v1"
    assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                 "name": APP.name}
    assert spec["autoscalerRef"]["name"] == APP.name
    assert spec["analysis"]["interval"] == "60s" and spec["analysis"]["threshold"] == 2
    assert spec["analysis"]["stepWeights"] == [10, 50, 100]
    assert [(m["name"], m["thresholdRange"]) for m in spec["analysis"]["metrics"]] == [
        ("error-rate", {"max": 0.01}), ("p95-ms", {"max": 500})]
    service = spec["service"]
    assert service["gatewayRefs"] == [{
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": APP.name,
        "namespace": APP.gateway_namespace, "sectionName": "https"}]
    assert service["hosts"] == [APP.domain] and "match" not in service
    assert service["headers"]["response"]["set"] == {"Strict-Transport-Security": APP.hsts}
    [bg] = by_kind(SCENARIOS["blue-green-no-guard"], "Canary")
    assert bg["spec"]["analysis"]["stepWeights"] == [100]
    [ready] = by_kind(SCENARIOS["readiness-only"], "Canary")
    assert ready["spec"]["analysis"]["metrics"] == []
    assert not by_kind(SCENARIOS["readiness-only"], "MetricTemplate")
    [locked] = by_kind(SCENARIOS["edge-cdn"], "Canary")
    assert locked["spec"]["service"]["match"] == [
        {"uri": {"prefix": "/"}, "headers": {"X-Origin-Verify": {"exact": "Zq7" * 16}}},
        {"uri": {"exact": "/readyz"}}]


def test_metric_templates_read_the_canary_pods_own_metrics() -> None:
    errors, p95 = by_kind(SCENARIOS["canary"], "MetricTemplate")
    pods = f'namespace="{{{{ namespace }}}}", pod=~"{APP.name}-[0-9a-z]+-[0-9a-z]+"'
    assert errors["spec"] == {"provider": {"type": "prometheus", "address": PROMETHEUS},
                              "query": (
        f'(((sum(rate(hello_gin_http_requests_total{{{pods}, status=~"5.."}}'
        f"[{{{{ interval }}}}]))) or on() vector(0)) / "
        f"sum(rate(hello_gin_http_requests_total{{{pods}}}[{{{{ interval }}}}]))) and on() "
        f"(sum(increase(hello_gin_http_requests_total{{{pods}}}[{{{{ interval }}}}])) >= 100)")}
    assert p95["spec"]["query"].startswith(
        "(histogram_quantile(0.95, sum by (le) (rate("
        f"hello_gin_http_request_duration_seconds_bucket{{{pods}}}[{{{{ interval }}}}]))) * 1000)")
    # minRequests 0: no guard.
    unguarded = by_kind(SCENARIOS["blue-green-no-guard"], "MetricTemplate")
    assert all("increase(" not in m["spec"]["query"] for m in unguarded)


def test_canary_pod_selector_excludes_the_primary() -> None:
    import re
    pattern = re.compile(f"{APP.name}-[0-9a-z]+-[0-9a-z]+")   # PromQL =~ is anchored
    assert pattern.fullmatch(f"{APP.name}-7d9f8b6c4-x2k9z")
    assert not pattern.fullmatch(f"{APP.name}-primary-7d9f8b6c4-x2k9z")


def test_the_metric_names_are_the_services() -> None:
    source = (Path(__file__).resolve().parents[2] / "app" / "internal" / "server" /
              "metrics.go").read_text()
    assert f'MetricRequests  = "{flagger.REQUESTS}"' in source
    assert f'"{flagger.DURATION_BUCKETS.removesuffix("_bucket")}"' in source
    assert '[]string{"route", "method", "status"}' in source


def test_analysis_needs_prometheus_and_steps_ending_at_100() -> None:
    with pytest.raises(ValueError, match="prometheus_url"):
        dataclasses.replace(ANALYSIS, prometheus_url=None)
    with pytest.raises(ValueError, match="end at 100"):
        dataclasses.replace(ANALYSIS, steps=(10, 50))
    assert flagger.flagger_values(PROMETHEUS)["metricsServer"] == PROMETHEUS
    assert flagger.flagger_values(PROMETHEUS)["meshProvider"] == "gatewayapi:v1"
