"""Fixtures: a real control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) whose nodes and pods kwok fakes; see cluster.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s import addons
from tests.k8s.cluster import Cluster, NotInstalledError


def start_cluster(workdir: Path) -> Cluster:
    try:
        return Cluster.start(workdir)
    except NotInstalledError as err:
        pytest.skip(str(err))  # a failure under scripts/test (tests/conftest.py)


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[Cluster]:
    """One cluster shared by the session: tests work in namespaces of their own."""
    workdir = Path(tempfile.mkdtemp(prefix="gd-k8s-"))
    cluster = start_cluster(workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def k8s_addons(k8s_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> addons.Addons:
    """The Gateway API CRDs, a GatewayClass and cert-manager, once per session (addons.py)."""
    if not (addons.TOOLS / "bin" / "pulumi-resource-kubernetes").exists():
        pytest.skip("pulumi-resource-kubernetes is not installed in .tools/bin: "
                    "run scripts/install-kubernetes.sh")
    return addons.install(k8s_cluster, tmp_path_factory.mktemp("addons"))
