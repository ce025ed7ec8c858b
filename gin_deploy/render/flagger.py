"""Flagger objects of a `kubernetes` target whose release is a canary or blue/green:
pure functions of plain values (gin_deploy/render/kubernetes.py renders the rest).

Flagger (https://flagger.app) runs each release: it copies the app's Deployment into
`<name>-primary` (which serves), creates the Services `<name>`, `<name>-primary` and
`<name>-canary`, and owns the HTTPRoute `<name>` on the stack's Gateway. When the
Deployment's pod template changes it scales the Deployment up as the canary, moves
`steps` of the traffic to it through the HTTPRoute's weights and, every `bakeSeconds`,
asks Prometheus the two MetricTemplates below about the canary's own pods. A step that
fails `FAILED_CHECKS` checks in a row (a breach, or too few requests: no value) rolls
the release back; after the last step (100%) it copies the canary into the primary and
scales the canary to 0.

Why Flagger and not Argo Rollouts: both are maintained, but Argo Rollouts routes
Gateway API traffic through a plugin binary it downloads when it starts, while Flagger
speaks Gateway API (`gatewayapi:v1`) itself, ships its chart and CRDs in its Go module
(so the render tests validate against them offline) and keeps the app's own Deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Manifest = dict[str, Any]

API_VERSION = "flagger.app/v1beta1"
PROVIDER = "gatewayapi:v1"
# A step is rolled back after this many failed checks in a row: the first failure
# (a breach, or fewer than minRequests) bakes the step once more.
FAILED_CHECKS = 2
# Flagger's control loop runs every 10 s: with bakeSeconds 0 it checks readiness only.
NO_ANALYSIS_INTERVAL = "10s"
# The reference service's metrics (app/internal/server/metrics.go).
REQUESTS = "hello_gin_http_requests_total"
DURATION_BUCKETS = "hello_gin_http_request_duration_seconds_bucket"


@dataclass(frozen=True)
class Analysis:
    """One target's release, as Flagger runs it (from its ReleasePolicy)."""

    steps: tuple[int, ...]
    bake_seconds: int
    max_error_rate: float
    max_p95_ms: int
    min_requests: int
    # Prometheus that scrapes the app's pods (labels `namespace` and `pod`); None only
    # without analysis (bake_seconds 0).
    prometheus_url: str | None = None

    def __post_init__(self) -> None:
        if self.bake_seconds and not self.prometheus_url:
            raise ValueError("prometheus_url is required when bake_seconds > 0")
        if not self.steps or self.steps[-1] != 100:
            raise ValueError(f"steps must end at 100, got {list(self.steps)}")

    @property
    def interval(self) -> str:
        return f"{self.bake_seconds}s" if self.bake_seconds else NO_ANALYSIS_INTERVAL


def primary_name(name: str) -> str:
    """The Deployment (and Service) Flagger makes of the app's: the serving release."""
    return f"{name}-primary"


def canary_target(deployment: Manifest) -> Manifest:
    """The app's Deployment as Flagger's canary target: Flagger scales it (0 between
    releases), so the provider must not await its rollout."""
    metadata = deployment["metadata"]
    annotations = {**metadata.get("annotations", {}), "pulumi.com/skipAwait": "true"}
    return {**deployment, "metadata": {**metadata, "annotations": annotations}}


def canary_pods(name: str) -> str:
    """PromQL selector of the canary's pods only: `<deployment>-<template hash>-<suffix>`
    (anchored, so `<name>-primary-<hash>-<suffix>` does not match)."""
    return f'namespace="{{{{ namespace }}}}", pod=~"{name}-[0-9a-z]+-[0-9a-z]+"'


def _guarded(query: str, name: str, analysis: Analysis) -> str:
    """`query`, with no value (a failed check) while the canary saw too few requests."""
    if not analysis.min_requests:
        return query
    seen = f"sum(increase({REQUESTS}{{{canary_pods(name)}}}[{{{{ interval }}}}]))"
    return f"({query}) and on() ({seen} >= {analysis.min_requests})"


def error_rate_query(name: str, analysis: Analysis) -> str:
    """Share of the canary's responses that are 5xx, over the last interval."""
    pods = canary_pods(name)
    errors = f'sum(rate({REQUESTS}{{{pods}, status=~"5.."}}[{{{{ interval }}}}]))'
    total = f"sum(rate({REQUESTS}{{{pods}}}[{{{{ interval }}}}]))"
    # `or vector(0)`: no 5xx series yet is a share of 0, not a missing value.
    return _guarded(f"(({errors}) or on() vector(0)) / {total}", name, analysis)


def p95_ms_query(name: str, analysis: Analysis) -> str:
    """The canary's p95 response time in ms, over the last interval."""
    buckets = f"sum by (le) (rate({DURATION_BUCKETS}{{{canary_pods(name)}}}[{{{{ interval }}}}]))"
    return _guarded(f"histogram_quantile(0.95, {buckets}) * 1000", name, analysis)


def metric_template_names(name: str) -> tuple[str, str]:
    return f"{name}-error-rate", f"{name}-p95-ms"


def metric_templates(name: str, namespace: str, labels: dict[str, str],
                     analysis: Analysis) -> list[Manifest]:
    """The two checks of every step, on the target's Prometheus; none without analysis."""
    if not analysis.bake_seconds:
        return []
    assert analysis.prometheus_url is not None
    queries = (error_rate_query(name, analysis), p95_ms_query(name, analysis))
    return [{
        "apiVersion": API_VERSION, "kind": "MetricTemplate",
        "metadata": {"name": template, "namespace": namespace, "labels": dict(labels)},
        "spec": {"provider": {"type": "prometheus", "address": analysis.prometheus_url},
                 "query": query},
    } for template, query in zip(metric_template_names(name), queries, strict=True)]


def canary(*, name: str, namespace: str, labels: dict[str, str], port: int,
           gateway_refs: list[dict[str, Any]], hosts: list[str],
           matches: list[dict[str, Any]], response_headers: dict[str, str],
           analysis: Analysis, progress_deadline: int) -> Manifest:
    """The Canary of the app's Deployment: traffic through the stack's Gateway."""
    metrics: list[dict[str, Any]] = []
    if analysis.bake_seconds:
        errors, p95 = metric_template_names(name)
        metrics = [
            {"name": "error-rate", "templateRef": {"name": errors, "namespace": namespace},
             "thresholdRange": {"max": analysis.max_error_rate},
             "interval": analysis.interval},
            {"name": "p95-ms", "templateRef": {"name": p95, "namespace": namespace},
             "thresholdRange": {"max": analysis.max_p95_ms}, "interval": analysis.interval},
        ]
    service: dict[str, Any] = {
        "port": port, "portName": "http", "targetPort": "http", "appProtocol": "http",
        "hosts": hosts, "gatewayRefs": gateway_refs,
        "headers": {"response": {"set": response_headers}},
    }
    if matches:
        service["match"] = matches
    return {
        "apiVersion": API_VERSION, "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                     # The provider awaits nothing of it: Flagger reports in its status.
                     "annotations": {"pulumi.com/skipAwait": "true"}},
        "spec": {
            "provider": PROVIDER,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "autoscalerRef": {"apiVersion": "autoscaling/v2",
                              "kind": "HorizontalPodAutoscaler", "name": name},
            "progressDeadlineSeconds": progress_deadline,
            "service": service,
            "analysis": {"interval": analysis.interval, "threshold": FAILED_CHECKS,
                         "stepWeights": list(analysis.steps), "metrics": metrics},
        },
    }


def flagger_values(prometheus_url: str | None) -> dict[str, Any]:
    """Flagger chart values: Gateway API routing, the target's Prometheus."""
    values: dict[str, Any] = {"meshProvider": PROVIDER, "prometheus": {"install": False},
                              # No sidecar injection or mesh hints for Flagger's own pod.
                              "podAnnotations": {"prometheus.io/scrape": "true",
                                                 "prometheus.io/port": "8080"}}
    if prometheus_url:
        values["metricsServer"] = prometheus_url
    return values
