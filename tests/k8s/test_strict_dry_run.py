"""Every object a `kubernetes` target renders, in every scenario of the render tests, passes
the real API server's strict server-side apply in a dry run: the built-in schemas, the
pinned Gateway API and cert-manager CRDs with their CEL rules (which the offline render
tests cannot evaluate), admission (Pod Security `restricted` in the app's namespace),
and unknown fields rejected. The Pulumi provider applies with `fieldValidation=Warn`,
which drops an unknown field silently; this is the check that would notice."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gin_deploy.render import kubernetes as render
from tests.k8s.addons import FIELD_MANAGER, Addons
from tests.k8s.cluster import Cluster
from tests.render.test_kubernetes_render import APP, CORE_KINDS, CUSTOM_KINDS, scenarios

pytestmark = pytest.mark.k8s


@pytest.fixture
def app(k8s_cluster: Cluster, k8s_addons: Addons, tmp_path: Path,
        ) -> Iterator[render.KubernetesApp]:
    """The render tests' app in namespaces of this test's own, created for real."""
    suffix = uuid.uuid4().hex[:6]
    app = dataclasses.replace(APP, namespace=f"dry-{suffix}",
                              gateway_namespace=f"dry-{suffix}-gw",
                              gateway_class_name=k8s_addons.gateway_class)
    namespaces = [render.app_namespace(app), render.gateway_namespace(app)]
    apply(k8s_cluster, namespaces, tmp_path / "namespaces.yaml", dry_run=False)
    yield app
    for namespace in namespaces:
        k8s_cluster.request("DELETE", f"/api/v1/namespaces/{namespace['metadata']['name']}",
                            check=False)


def apply(cluster: Cluster, manifests: list[dict[str, Any]], path: Path, *,
          dry_run: bool = True) -> tuple[bool, str]:
    """`kubectl apply --server-side` with strict field validation: (ok, output)."""
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    done = cluster.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                           "--validate=strict", *(["--dry-run=server"] if dry_run else []),
                           "-f", str(path), check=False)
    return done.returncode == 0, done.stdout + done.stderr


def test_every_rendered_object_passes_a_strict_server_side_dry_run(
        k8s_cluster: Cluster, app: render.KubernetesApp, tmp_path: Path) -> None:
    kinds = set()
    for name, manifests in scenarios(app).items():
        ok, out = apply(k8s_cluster, manifests, tmp_path / f"{name}.yaml")
        assert ok, f"scenario {name}:\n{out}"
        # One line per object: every one went through the server.
        assert out.count("serverside-applied (server dry run)") == len(manifests), out
        kinds |= {m["kind"] for m in manifests}
    assert kinds == CORE_KINDS | CUSTOM_KINDS
    # A dry run stores nothing.
    _, deployments = k8s_cluster.request("GET", f"/apis/apps/v1/namespaces/{app.namespace}/"
                                         "deployments")
    assert deployments["items"] == []


@pytest.mark.parametrize(("kind", "path", "value", "message"), [
    # Unknown fields, which the provider's `fieldValidation=Warn` would drop.
    ("Gateway", ("spec", "listeners", 0, "hostnmae"), "api.example.com",
     '.spec.listeners[name="http"].hostnmae: field not declared in schema'),
    ("Certificate", ("spec", "dnsNmaes"), ["api.example.com"],
     ".spec.dnsNmaes: field not declared in schema"),
    # A CEL rule of the HTTPRoute CRD (x-kubernetes-validations).
    ("HTTPRoute", ("spec", "rules", 0, "matches", 0, "path", "value"), "healthz",
     "value must be an absolute path and start with '/' when type one of ['Exact', "
     "'PathPrefix']"),
])
def test_the_dry_run_rejects_what_the_crds_do_not_allow(
        k8s_cluster: Cluster, app: render.KubernetesApp, tmp_path: Path, kind: str,
        path: tuple[Any, ...], value: Any, message: str) -> None:
    [manifest] = [m for m in scenarios(app)["http01"] if m["kind"] == kind
                  and m["metadata"]["name"] == app.name]
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    ok, out = apply(k8s_cluster, [manifest], tmp_path / "bad.yaml")
    assert not ok and message in out, out
