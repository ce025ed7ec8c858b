"""A `kubernetes` target's whole life through the real Pulumi CLI and engine and the real
Kubernetes provider, against the harness's real API server (nodes and pods by kwok).

One stack, in namespaces of its own, goes through its life in order: the first `up`, a
no-change `up` and `preview --expect-no-changes`, a new version rolled out without
losing capacity, a canary weight change, a release whose pods never get Ready (the `up`
fails and the old ReplicaSet keeps serving), and `destroy`. It deploys an existing image
by digest (`app.image`): kwok never pulls it, so nothing is built.

What is real: the program, the engine, the provider's server-side apply and its awaits,
the API server's validation and admission (Pod Security `restricted` included), the
controllers (Deployments, ReplicaSets, the HPA's minimum, EndpointSlices, namespace
deletion). What is not: no container runs (kwok marks pods Ready, or never Ready: the
`pod-never-ready` stage in stages/), no Gateway controller programs the Gateway, and
cert-manager's pods do nothing (addons.py), so the Certificate is accepted but never
issued - it carries `pulumi.com/skipAwait`, and the `up` returns without it.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Project, make_project, require_cli
from tests.k8s.addons import Addons
from tests.k8s.cluster import Cluster
from tests.k8s.watch import DeploymentWatch

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.timeout(600)]

REPOSITORY = "registry.invalid/gin-deploy-e2e/hello-gin"
V1 = f"{REPOSITORY}@sha256:{'11' * 32}"
V2 = f"{REPOSITORY}@sha256:{'22' * 32}"
CANARY = "sha256:" + "33" * 32
# Its repository is named never-ready: the kwok stage keeps such pods unready forever.
NEVER_READY = f"registry.invalid/gin-deploy-e2e/never-ready@sha256:{'44' * 32}"
APP = "hello-gin"
DOMAIN = "hello.e2e.example.com"
ROLLOUT_TIMEOUT = 30
REPLICAS = 2
APPS = "/apis/apps/v1"
GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"


class Stack:
    """The test's stack: its project copy, its config and its namespaces."""

    def __init__(self, project: Project, cluster: Cluster, addons: Addons) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.project, self.cluster, self.addons = project, cluster, addons
        self.name = f"k8s-{suffix}"
        self.namespace, self.gateway_namespace = f"e2e-{suffix}", f"e2e-{suffix}-gw"
        self.issuer = f"{self.gateway_namespace}-acme"
        self.target: dict[str, Any] = {
            "name": "kwok", "kind": "kubernetes", "kubeconfigPath": str(cluster.kubeconfig),
            "namespace": self.namespace, "gatewayNamespace": self.gateway_namespace,
            "replicas": REPLICAS, "registry": {"server": REPOSITORY},
            "installGateway": False, "installCertManager": False,
            "gatewayClassName": addons.gateway_class, "waitForAddress": False,
            "rolloutTimeout": ROLLOUT_TIMEOUT,
            # The Deployment's own rolling update and the static canary weight: Flagger's
            # releases need its controller and a Prometheus, which do not run here (their
            # objects pass the strict dry run in test_flagger_dry_run.py).
            "release": {"strategy": "rolling"},
        }
        self.image, self.version = V1, "1.0.0"

    def config(self) -> dict[str, Any]:
        return {
            "gin-deploy:app": {"name": APP, "source": "app", "version": self.version,
                               "image": {"ref": self.image}},
            "gin-deploy:domain": DOMAIN,
            "gin-deploy:tls": {"mode": "acme", "acme": {
                "email": "ops@example.com",
                "server": "https://acme-staging-v02.api.letsencrypt.org/directory"}},
            "gin-deploy:targets": [copy.deepcopy(self.target)],
        }

    def pulumi(self, *args: str, check: bool = True) -> str:
        self.project.write_stack_file(self.name, self.config())
        done = self.project.pulumi(*args, "--stack", self.name, check=check)
        return done.stdout + done.stderr

    def up(self) -> str:
        return self.pulumi("up", "--yes", "--skip-preview")

    def get(self, path: str) -> dict[str, Any]:
        return self.cluster.request("GET", path)[1]

    def status(self, path: str) -> int:
        return self.cluster.request("GET", path, check=False)[0]

    def deployment(self, name: str = APP) -> dict[str, Any]:
        return self.get(f"{APPS}/namespaces/{self.namespace}/deployments/{name}")

    def replica_sets(self) -> dict[str, dict[str, Any]]:
        """This stack's stable ReplicaSets by the image they run."""
        items = self.get(f"{APPS}/namespaces/{self.namespace}/replicasets?labelSelector="
                         "gin-deploy%2Ftrack%3Dstable")["items"]
        return {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in items}

    def pods(self, image: str) -> list[dict[str, Any]]:
        items = self.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]
        return [p for p in items if p["spec"]["containers"][0]["image"] == image
                and "deletionTimestamp" not in p["metadata"]]

    def https_route_weights(self) -> dict[str, int]:
        route = self.get(f"{GATEWAY_API}/namespaces/{self.namespace}/httproutes/{APP}")
        [rule] = [r for r in route["spec"]["rules"] if "backendRefs" in r]
        return {b["name"]: b["weight"] for b in rule["backendRefs"]}


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod["status"].get("conditions", []))


@pytest.fixture(scope="module")
def stack(k8s_cluster: Cluster, k8s_addons: Addons, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[Stack]:
    require_cli()
    tmp = tmp_path_factory.mktemp("k8s-stack")
    project = make_project(tmp, extra_env={
        # The provider must come from .tools/bin, never from a download.
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"})
    stack = Stack(project, k8s_cluster, k8s_addons)
    project.pulumi("stack", "init", stack.name)
    yield stack
    # A test that failed before `destroy` leaves its namespaces; the cluster goes anyway.
    for namespace in (stack.namespace, stack.gateway_namespace):
        k8s_cluster.request("DELETE", f"/api/v1/namespaces/{namespace}", check=False)


def test_first_up_creates_the_target_and_awaits_the_deployment(stack: Stack) -> None:
    started = time.monotonic()
    out = stack.up()
    took = time.monotonic() - started
    # The provider applied every object without dropping a field it did not know.
    assert "unknown field" not in out, out
    ns, gw = stack.namespace, stack.gateway_namespace
    labels = stack.get(f"/api/v1/namespaces/{ns}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert stack.status(f"/api/v1/namespaces/{gw}") == 200

    # The provider waited for the Deployment; the HPA then holds it at its minimum.
    deployment = stack.deployment()
    assert {c["type"]: c["status"] for c in deployment["status"]["conditions"]}["Available"] \
        == "True"
    stack.cluster.wait_for(lambda: stack.deployment()["status"].get("availableReplicas")
                           == REPLICAS, "the HPA's minimum of pods available")
    template = deployment["spec"]["template"]
    assert [c["image"] for c in template["spec"]["containers"]] == [V1]
    assert template["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"
    hpa = stack.get(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{APP}")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["scaleTargetRef"]["name"]) == (REPLICAS, APP)
    for path in (f"/api/v1/namespaces/{ns}/services/{APP}",
                 f"/api/v1/namespaces/{ns}/serviceaccounts/{APP}",
                 f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{APP}",
                 f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{APP}",
                 f"{GATEWAY_API}/namespaces/{ns}/httproutes/{APP}-redirect"):
        assert stack.status(path) == 200, path
    gateway = stack.get(f"{GATEWAY_API}/namespaces/{gw}/gateways/{APP}")
    assert gateway["spec"]["gatewayClassName"] == "gin-deploy-e2e"
    assert stack.https_route_weights() == {APP: 100}

    # cert-manager's objects are accepted; no controller runs, so nothing is issued, and
    # the `up` did not wait for it (the rollout timeout bounds what it awaited).
    issuer = stack.get(f"/apis/cert-manager.io/v1/clusterissuers/{stack.issuer}")
    assert issuer["spec"]["acme"]["solvers"][0]["http01"]["gatewayHTTPRoute"]
    certificate = stack.get(f"/apis/cert-manager.io/v1/namespaces/{gw}/certificates/{APP}")
    assert certificate["spec"]["dnsNames"] == [DOMAIN]
    assert certificate["spec"]["issuerRef"]["name"] == stack.issuer
    assert "conditions" not in certificate.get("status", {})
    assert took < ROLLOUT_TIMEOUT + 60, f"first up took {took:.0f}s"

    outputs = json.loads(stack.pulumi("stack", "output", "--json"))
    assert outputs["endpoints"] == {"kwok": f"https://{DOMAIN}"}
    assert outputs["version"] == "1.0.0"


def test_a_second_up_and_preview_change_nothing(stack: Stack) -> None:
    stack.pulumi("preview", "--expect-no-changes")
    stack.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes")


def test_a_new_version_rolls_out_without_losing_capacity(stack: Stack) -> None:
    stack.image, stack.version = V2, "2.0.0"
    with DeploymentWatch(stack.cluster, stack.namespace, APP) as watch:
        stack.up()
        # When `up` returns the rollout is over: the provider awaited it.
        done = stack.deployment()["status"]
    assert (done["updatedReplicas"], done["availableReplicas"]) == (REPLICAS, REPLICAS)
    assert done.get("unavailableReplicas", 0) == 0 and done["replicas"] == REPLICAS
    rollout = [s for s in watch.states if s.generation > watch.states[0].generation]
    assert rollout, "the Deployment never changed"
    # maxUnavailable 0: two pods available at every step; maxSurge 1: one extra at most.
    assert min(s.available for s in rollout) == REPLICAS, watch.states
    assert max(s.replicas for s in rollout) == REPLICAS + 1, watch.states
    sets = stack.replica_sets()
    assert sets[V1]["spec"]["replicas"] == 0 and sets[V2]["status"]["readyReplicas"] == REPLICAS


def test_a_canary_weight_change_updates_the_routes_backend_weights(stack: Stack) -> None:
    stack.target["canary"] = {"version": CANARY, "weight": 20}
    stack.up()
    assert stack.https_route_weights() == {APP: 80, f"{APP}-canary": 20}
    canary = stack.deployment(f"{APP}-canary")
    [container] = canary["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REPOSITORY}@{CANARY}"
    stack.cluster.wait_for(lambda: stack.deployment(f"{APP}-canary")["status"].get(
        "availableReplicas") == 1, "the canary's pod available")

    stack.target["canary"]["weight"] = 50
    route = stack.get(f"{GATEWAY_API}/namespaces/{stack.namespace}/httproutes/{APP}")
    preview = json.loads(stack.pulumi("preview", "--json"))
    changed = [s["urn"].rsplit("::", 1)[1] for s in preview["steps"] if s["op"] != "same"]
    assert changed == ["kwok-https-route"], changed
    stack.up()
    assert stack.https_route_weights() == {APP: 50, f"{APP}-canary": 50}
    after = stack.get(f"{GATEWAY_API}/namespaces/{stack.namespace}/httproutes/{APP}")
    assert after["metadata"]["uid"] == route["metadata"]["uid"]  # updated in place


def test_a_release_that_never_gets_ready_fails_and_the_old_one_keeps_serving(
        stack: Stack) -> None:
    stack.image, stack.version = NEVER_READY, "3.0.0"
    started = time.monotonic()
    with DeploymentWatch(stack.cluster, stack.namespace, APP) as watch:
        out = stack.pulumi("up", "--yes", "--skip-preview", check=False)
    took = time.monotonic() - started
    assert "error" in out and "timed out waiting to be Ready" in out, out
    assert "Minimum number of Pods to consider the application live was not attained" in out, out
    assert "readiness probe failed (kwok stage pod-never-ready)" in out, out
    assert ROLLOUT_TIMEOUT <= took < ROLLOUT_TIMEOUT + 90, f"up took {took:.0f}s"
    assert min(s.available for s in watch.states) == REPLICAS, watch.states

    # The old ReplicaSet still has its two Ready pods; the new one's pod never got Ready.
    sets = stack.replica_sets()
    assert sets[V2]["status"]["readyReplicas"] == REPLICAS
    old = stack.pods(V2)
    assert len(old) == REPLICAS and all(ready(p) for p in old)
    new = stack.pods(NEVER_READY)
    assert len(new) == 1 and not ready(new[0])  # maxSurge 1: one tried, none more
    # ... and only the old pods are endpoints the Service sends traffic to.
    slices = stack.get(f"/apis/discovery.k8s.io/v1/namespaces/{stack.namespace}/"
                       f"endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{APP}")
    endpoints = {e["addresses"][0]: e["conditions"]["ready"]
                 for s in slices["items"] for e in s.get("endpoints") or []}
    assert {ip for ip, ok in endpoints.items() if ok} == {p["status"]["podIP"] for p in old}


def test_destroy_leaves_no_object_of_the_stack(stack: Stack) -> None:
    stack.pulumi("destroy", "--yes", "--skip-preview")
    assert stack.status(f"/apis/cert-manager.io/v1/clusterissuers/{stack.issuer}") == 404
    for namespace in (stack.namespace, stack.gateway_namespace):
        stack.cluster.wait_for(
            lambda ns=namespace: stack.status(f"/api/v1/namespaces/{ns}") == 404,
            f"namespace {namespace} to be gone", timeout=120)
    # Nothing of the app anywhere in the cluster, namespaced or not.
    selector = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgin-deploy"
    for path in ("/api/v1/services", "/api/v1/pods", f"{APPS}/deployments",
                 f"{APPS}/replicasets", f"{GATEWAY_API}/gateways", f"{GATEWAY_API}/httproutes",
                 "/apis/cert-manager.io/v1/certificates",
                 "/apis/cert-manager.io/v1/clusterissuers"):
        items = stack.get(f"{path}?{selector}")["items"]
        assert [i["metadata"]["name"] for i in items
                if i["metadata"].get("namespace") in (None, stack.namespace,
                                                      stack.gateway_namespace)] == [], path
    resources = json.loads(stack.pulumi("stack", "export"))["deployment"].get("resources")
    assert not resources
    stack.pulumi("stack", "rm", "--yes")
    # What the cluster brought (installCertManager: false) is left alone.
    assert stack.status(f"/api/v1/namespaces/{stack.addons.cert_manager_namespace}") == 200
    assert stack.status(f"{GATEWAY_API}/gatewayclasses/{stack.addons.gateway_class}") == 200
