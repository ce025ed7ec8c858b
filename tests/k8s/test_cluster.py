"""The test harness's control plane is a real Kubernetes API with working controllers."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.cluster import NODE_NAME, Cluster, pinned_versions
from tests.k8s.conftest import start_cluster

pytestmark = pytest.mark.k8s


@pytest.fixture
def namespace(k8s_cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    k8s_cluster.request("POST", "/api/v1/namespaces",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    k8s_cluster.request("DELETE", f"/api/v1/namespaces/{name}", check=False)


def deployment(name: str, replicas: int = 2, **container: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     # kwok runs no container: the image is never pulled.
                     {"name": "app", "image": "registry.invalid/app:1", **container}]}}},
    }


def test_control_plane_serves_the_pinned_version_with_a_ready_node(k8s_cluster: Cluster) -> None:
    expected = "v" + pinned_versions()["KUBERNETES_VERSION"]
    _, version = k8s_cluster.request("GET", "/version")
    assert version["gitVersion"] == expected
    both = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)
    assert both["clientVersion"]["gitVersion"] == both["serverVersion"]["gitVersion"] == expected
    assert k8s_cluster.node_ready(NODE_NAME)
    for path in ("/livez", "/readyz"):
        assert k8s_cluster.kubectl("get", "--raw", path).stdout.strip() == "ok"


def test_deployment_becomes_available_through_kwok(k8s_cluster: Cluster, namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    k8s_cluster.request("POST", base, deployment("web"))

    def available() -> bool:
        _, dep = k8s_cluster.request("GET", f"{base}/web")
        status = dep.get("status", {})
        return status.get("availableReplicas") == 2 and any(
            c["type"] == "Available" and c["status"] == "True"
            for c in status.get("conditions", []))

    k8s_cluster.wait_for(available, "Deployment web to become Available")
    _, pods = k8s_cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    assert len(pods["items"]) == 2
    for pod in pods["items"]:  # scheduled by kube-scheduler, run by kwok
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["status"]["phase"] == "Running" and pod["status"].get("podIP")


def test_strict_server_side_dry_run_rejects_an_unknown_field(k8s_cluster: Cluster,
                                                             namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    good = deployment("checked", imagePullPolicy="IfNotPresent")
    typo = deployment("checked", imagePullPolcy="IfNotPresent")

    def create(manifest: dict[str, Any], validation: str) -> tuple[int, dict[str, Any]]:
        return k8s_cluster.request(
            "POST", f"{base}?dryRun=All&fieldValidation={validation}", manifest, check=False)

    assert create(good, "Strict")[0] == 201
    status, body = create(typo, "Strict")
    assert status == 400, body
    assert ('strict decoding error: unknown field '
            '"spec.template.spec.containers[0].imagePullPolcy"') in body["message"]
    assert create(typo, "Ignore")[0] == 201  # it is Strict that rejects it

    # Server-side apply (what the Pulumi provider does) rejects it too, as a typed-patch error.
    def apply(manifest: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return k8s_cluster.request(
            "PATCH", f"{base}/checked?dryRun=All&fieldManager=gin-deploy-test"
            "&fieldValidation=Strict", json.dumps(manifest),
            content_type="application/apply-patch+yaml", check=False)

    assert apply(good)[0] in (200, 201)
    status, body = apply(typo)
    assert status >= 400 and ".imagePullPolcy: field not declared in schema" in body["message"]
    # A dry run stores nothing.
    assert k8s_cluster.request("GET", f"{base}/checked", check=False)[0] == 404


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_stop_ends_every_process_it_started(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "cluster")
    try:
        assert [p.name for p in cluster.processes] == [
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
        pids = cluster.pids
        assert sorted(_processes_mentioning(str(tmp_path))) == sorted(pids)
    finally:
        cluster.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _processes_mentioning(str(tmp_path)) == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", cluster.ports["apiserver"]), timeout=1).close()
