"""Flagger's objects pass the real API server's strict server-side apply in a dry run,
with the CRDs of the pinned Flagger release (from its Go module) installed: schemas and
unknown fields as the server judges them. Not proven here: no Flagger controller or
Prometheus runs, so no release is ever analysed or promoted."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gin_deploy.render import kubernetes as render
from gin_deploy.render import kubernetes_versions as versions
from tests.gomod import go_module_dir
from tests.k8s.addons import FIELD_MANAGER, Addons
from tests.k8s.cluster import Cluster
from tests.k8s.test_strict_dry_run import apply
from tests.render.test_flagger_render import FLAGGER_KINDS, flagger_scenarios
from tests.render.test_kubernetes_render import APP

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def flagger_crds(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    module = go_module_dir(versions.FLAGGER_MODULE, versions.FLAGGER_MODULE_VERSION,
                           tmp_path_factory.mktemp("gomod"))
    k8s_cluster.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                        "-f", str(module / "artifacts" / "flagger" / "crd.yaml"))
    k8s_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        "crd/canaries.flagger.app", "crd/metrictemplates.flagger.app")


@pytest.fixture
def app(k8s_cluster: Cluster, k8s_addons: Addons, tmp_path: Path,
        ) -> Iterator[render.KubernetesApp]:
    """The render tests' app in namespaces of this test's own, created for real."""
    suffix = uuid.uuid4().hex[:6]
    app = dataclasses.replace(APP, namespace=f"flg-{suffix}", gateway_namespace=f"flg-{suffix}-gw",
                              gateway_class_name=k8s_addons.gateway_class)
    namespaces = [render.app_namespace(app), render.gateway_namespace(app)]
    apply(k8s_cluster, namespaces, tmp_path / "namespaces.yaml", dry_run=False)
    yield app
    for namespace in namespaces:
        k8s_cluster.request("DELETE", f"/api/v1/namespaces/{namespace['metadata']['name']}",
                            check=False)


def test_flagger_objects_pass_a_strict_server_side_dry_run(
        k8s_cluster: Cluster, flagger_crds: None, app: render.KubernetesApp,
        tmp_path: Path) -> None:
    kinds = set()
    for name, manifests in flagger_scenarios(app).items():
        ok, out = apply(k8s_cluster, manifests, tmp_path / f"{name}.yaml")
        assert ok, f"scenario {name}:\n{out}"
        assert out.count("serverside-applied (server dry run)") == len(manifests), out
        kinds |= {m["kind"] for m in manifests}
    assert kinds >= FLAGGER_KINDS


def test_the_dry_run_rejects_an_unknown_canary_field(
        k8s_cluster: Cluster, flagger_crds: None, app: render.KubernetesApp,
        tmp_path: Path) -> None:
    [canary] = [m for m in flagger_scenarios(app)["canary"] if m["kind"] == "Canary"]
    bad = copy.deepcopy(canary)
    bad["spec"]["analysis"]["stepWieghts"] = [10]
    ok, out = apply(k8s_cluster, [bad], tmp_path / "bad.yaml")
    assert not ok and ".spec.analysis.stepWieghts: field not declared in schema" in out, out
