"""`status` for cloud targets under mocks (moto's ECS, a stubbed Route 53, a fake
Kubernetes API), host records read from the agent, and the program's `targets` output."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gin_deploy import status
from gin_deploy.__main__ import main as cli_main
from gin_deploy.status import cloud, probes
from tests.unit.test_edge import PROD, home, run

__all__ = ["home"]  # the prod host target's key file, for this module too

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


def test_the_program_exports_what_status_asks_each_target_by() -> None:
    targets = {t["name"]: t for t in run(PROD).outputs["targets"]}
    assert targets["aws-use1"]["kind"] == "ecs" and targets["aws-use1"]["region"] == "us-east-1"
    assert {"cluster", "service", "url"} <= set(targets["aws-use1"])
    k8s = targets["k8s-eu"]
    assert (k8s["context"], k8s["namespace"], k8s["deployment"]) == (
        "eu-prod", "hello-gin", "hello-gin")
    assert k8s["certificate"] == {"namespace": "hello-gin-gateway", "name": "hello-gin-tls"}
    host = targets["edge-sin"]
    assert (host["connection"], host["host"], host["user"], host["port"]) == (
        "ssh", "203.0.113.10", "deploy", 22)
    assert host["hostKey"].startswith("ssh-ed25519 ") and host["sudo"] is True
    assert host["stateDir"] == "/srv/gin-deploy/gin-deploy-prod-edge-sin"
    assert "privateKey" not in json.dumps(targets)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def ecs_service(desired: int) -> dict[str, str]:
    ecs = boto3.client("ecs", region_name="us-east-1")
    ecs.create_cluster(clusterName="c")
    ecs.register_task_definition(family="t", containerDefinitions=[
        {"name": "app", "image": "x", "memory": 128}])
    ecs.create_service(cluster="c", serviceName="s", taskDefinition="t", desiredCount=desired)
    return {"name": "aws-use1", "kind": "ecs", "region": "us-east-1", "cluster": "c",
            "service": "s", "url": "https://api.example.com"}


class Route53:
    def __init__(self, statuses: Mapping[str, list[str]]) -> None:
        self.statuses = statuses

    def get_health_check_status(self, HealthCheckId: str) -> dict[str, Any]:
        return {"HealthCheckObservations": [{"StatusReport": {"Status": s}}
                                            for s in self.statuses[HealthCheckId]]}


class FakeKube:
    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))


@pytest.fixture
def public(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What every target's public URL serves (no network in unit tests)."""
    served = {"days": 60.0, "version": "1.4.0"}
    monkeypatch.setattr(probes, "served_cert", lambda url, ca=None: probes.ServedCert(
        "Let's Encrypt", NOW + datetime.timedelta(days=served["days"]), True))
    monkeypatch.setattr(probes, "served_version", lambda url, ca=None: served["version"])
    return served


def collect(targets: list[dict[str, Any]], clients: status.Clients,
            health: dict[str, str] | None = None, **kw: Any) -> status.Report:
    outputs = {"targets": targets, "healthChecks": health or {}}
    return status.collect("prod", outputs, {}, clients=clients, now=NOW, **kw)


def test_ecs_running_vs_desired_and_the_edge_health_check(aws: None,
                                                         public: dict[str, Any]) -> None:
    target = ecs_service(desired=2)
    ecs = boto3.client("ecs", region_name="us-east-1")
    clients = status.Clients(ecs=lambda region: ecs, route53=lambda: Route53(
        {"hc-1": ["Success: HTTP Status Code 200"] * 3}))
    report = collect([target], clients, {"aws-use1": "hc-1"})
    (st,) = report.targets
    assert (st.wanted, st.version, st.cert_days_left, st.cert_issuer) == (
        2, "1.4.0", 60.0, "Let's Encrypt")
    assert st.edge_health == "healthy" and st.detail["rolloutState"] == "IN_PROGRESS"
    # moto starts no tasks: fewer running than desired is unhealthy, and says so
    assert (st.ready, st.problems) == (0, ["0 of 2 tasks running"])
    ecs.update_service(cluster="c", service="s", desiredCount=0)
    (st,) = collect([target], clients, {"aws-use1": "hc-1"}).targets
    assert (st.ready, st.wanted, st.healthy) == (0, 0, True), st.problems
    contract = collect([target], clients).as_json()["targets"][0]
    assert {"name", "kind", "version", "ready", "wanted", "certDaysLeft",
            "healthy"} <= set(contract)


def test_a_failing_edge_health_check_or_failed_rollout_is_unhealthy(
        aws: None, public: dict[str, Any]) -> None:
    target = ecs_service(desired=0)
    failing = Route53({"hc-1": ["Failure: Connection timed out", "Failure: timed out",
                                "Success: HTTP Status Code 200"]})
    ecs = boto3.client("ecs", region_name="us-east-1")
    (st,) = collect([target], status.Clients(ecs=lambda r: ecs, route53=lambda: failing),
                    {"aws-use1": "hc-1"}).targets
    assert st.edge_health == "unhealthy" and not st.healthy
    assert "1/3 checkers see success (Failure: Connection timed out)" in st.problems[0]
    svc = {"services": [{"status": "ACTIVE", "runningCount": 2, "desiredCount": 2,
                         "deployments": [{"status": "PRIMARY", "rolloutState": "FAILED",
                                          "rolloutStateReason": "circuit breaker"}]}]}

    class Ecs:
        def describe_services(self, **kw: Any) -> dict[str, Any]:
            return svc
    rep = cloud.ecs_service(Ecs(), "c", "s")
    assert rep.problems == ["the last ECS deployment failed: circuit breaker"]


K8S = {"name": "k8s-eu", "kind": "kubernetes", "url": "https://api.example.com",
       "context": "eu", "namespace": "app", "deployment": "app",
       "certificate": {"namespace": "gw", "name": "app-tls"}}


def kube(ready: int, cert_ready: str, message: str = "") -> FakeKube:
    return FakeKube({
        ("deployment", "app", "app"): {"spec": {"replicas": 3},
                                        "status": {"readyReplicas": ready}},
        ("certificates.cert-manager.io", "gw", "app-tls"): {"status": {"conditions": [
            {"type": "Ready", "status": cert_ready, "message": message}]}},
    })


def test_kubernetes_pods_ready_and_cert_manager_certificate_readiness(
        public: dict[str, Any]) -> None:
    (st,) = collect([K8S], status.Clients(kube=lambda t, c: kube(3, "True"))).targets
    assert (st.ready, st.wanted, st.healthy) == (3, 3, True), st.problems
    assert st.detail["certificateReady"] is True
    (st,) = collect([K8S], status.Clients(
        kube=lambda t, c: kube(1, "False", "Issuing certificate as Secret does not exist"))
    ).targets
    assert st.problems == ["1 of 3 pods ready", "cert-manager Certificate gw/app-tls is not "
                           "Ready: Issuing certificate as Secret does not exist"]


def test_certificate_days_below_the_threshold_fail(public: dict[str, Any]) -> None:
    public["days"] = 9.5
    clients = status.Clients(kube=lambda t, c: kube(3, "True"))
    (st,) = collect([K8S], clients).targets
    assert st.problems == ["the certificate served at https://api.example.com expires in "
                           "9.5 days (< 14)"]
    assert collect([K8S], clients, min_cert_days=7).healthy


HOST = {"name": "edge", "kind": "host", "url": "https://h.example.com", "connection": "ssh",
        "stateDir": "/srv/x"}


def agent(**extra: Any) -> dict[str, Any]:
    return {"ready": 2, "wanted": 2, "current": "1.4.0-abc", "nginxRunning": True,
            "tlsMode": "acme", "caCert": None,
            "lastDeploy": {"time": "2029-12-31T10:00:00Z", "result": "ok"}, **extra}


@pytest.mark.parametrize(("renewal", "problem"), [
    ({"lastRun": "2029-12-31T12:00:00Z", "lastResult": "ok",
      "lastSuccess": "2029-12-31T12:00:00Z"}, None),
    ({"lastRun": "2029-12-31T12:00:00Z", "lastResult": "failed",
      "lastSuccess": "2029-12-30T12:00:00Z", "error": "certbot renew failed (exit 1)"},
     "the last certificate renewal (2029-12-31T12:00:00Z) failed: certbot renew failed"),
    ({"lastRun": "2029-12-20T12:00:00Z", "lastResult": "ok",
      "lastSuccess": "2029-12-20T12:00:00Z"},
     "no certificate renewal has succeeded for 11.5 days (> 3)"),
])
def test_host_renewal_record_is_checked(public: dict[str, Any], renewal: dict[str, Any],
                                        problem: str | None) -> None:
    clients = status.Clients(agent=lambda t, c: agent(renewal=renewal))
    (st,) = collect([HOST], clients).targets
    assert st.renewal == renewal
    if problem is None:
        assert st.healthy, st.problems
    else:
        assert len(st.problems) == 1 and st.problems[0].startswith(problem), st.problems


def test_a_host_without_any_renewal_long_after_its_deploy_is_unhealthy(
        public: dict[str, Any]) -> None:
    old = {"time": "2029-12-01T00:00:00Z", "result": "ok"}
    (st,) = collect([HOST], status.Clients(agent=lambda t, c: agent(lastDeploy=old))).targets
    assert st.problems == ["no certificate renewal has run since the deploy for 31.0 days "
                           "(> 3); see logs/renew.log on the host"]


def test_an_unreachable_host_is_unhealthy_and_the_cli_exits_non_zero(
        public: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def down(target: Any, cfg: Any) -> dict[str, Any]:
        raise OSError("ssh: connect to host 203.0.113.10 port 22: Connection timed out")
    report = collect([HOST], status.Clients(agent=down))
    monkeypatch.setattr("gin_deploy.automation.status", lambda stack, **kw: report)
    assert cli_main(["status", "--stack", "prod", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["healthy"] is False and data["targets"][0]["problems"][0].startswith(
        "could not ask the host target: ssh: connect to host 203.0.113.10")
    assert cli_main(["status", "--stack", "prod"]) == 1
    assert "edge: could not ask the host target" in capsys.readouterr().out


def test_every_acm_certificate_has_a_days_to_expiry_alarm() -> None:
    prod = run(PROD)
    alarms = {r.name: r.inputs for r in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if r.inputs.get("metricName") == "DaysToExpiry"}
    assert set(alarms) == {"aws-use1-cert-expiry", "hello-gin-edge-cdn-cert-expiry"}, alarms
    for alarm in alarms.values():
        assert (alarm["namespace"], alarm["comparisonOperator"], alarm["threshold"]) == (
            "AWS/CertificateManager", "LessThanThreshold", 14)
        assert alarm["dimensions"]["CertificateArn"]
