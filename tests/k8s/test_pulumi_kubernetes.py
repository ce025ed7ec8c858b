"""The real Pulumi engine and Kubernetes provider against the harness cluster: a Python
program creates a Namespace and a Deployment, awaits its readiness, then destroys both."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from gin_deploy import automation
from tests.k8s.cluster import Cluster

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
NAMESPACE = "pulumi-smoke"

PROGRAM = textwrap.dedent('''\
    import os

    import pulumi
    import pulumi_kubernetes as k8s

    provider = k8s.Provider("cluster", kubeconfig=open(os.environ["SMOKE_KUBECONFIG"]).read())
    opts = pulumi.ResourceOptions(provider=provider)
    ns = k8s.core.v1.Namespace("ns", metadata={"name": "%(namespace)s"}, opts=opts)
    labels = {"app": "smoke"}
    deployment = k8s.apps.v1.Deployment(
        "smoke",
        metadata={"name": "smoke", "namespace": ns.metadata.name},
        spec={"replicas": 2, "selector": {"matchLabels": labels},
              "template": {"metadata": {"labels": labels},
                           "spec": {"containers": [
                               {"name": "app", "image": "registry.invalid/smoke:1"}]}}},
        opts=opts)
    # Read after the provider's readiness await: 2 only if it waited for the rollout.
    pulumi.export("readyReplicas", deployment.status.ready_replicas)
''') % {"namespace": NAMESPACE}


def test_pulumi_creates_awaits_and_destroys_a_deployment(k8s_cluster: Cluster,
                                                         tmp_path: Path) -> None:
    if not (TOOLS / "bin" / "pulumi").exists():
        pytest.skip("the Pulumi CLI is not installed in .tools/bin: run scripts/setup.sh")
    if not (TOOLS / "bin" / "pulumi-resource-kubernetes").exists():
        pytest.skip("pulumi-resource-kubernetes is not installed in .tools/bin: "
                    "run scripts/install-kubernetes.sh")
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: k8s-smoke\nruntime:\n  name: python\n  options:\n    virtualenv: .venv\n")
    (project / "__main__.py").write_text(PROGRAM)
    (project / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "backend").mkdir()
    settings = automation.Settings(
        work_dir=project, tools_dir=TOOLS, backend_url=f"file://{tmp_path / 'backend'}",
        passphrase_file=tmp_path / "passphrase",
        extra_env={"PULUMI_HOME": str(tmp_path / "pulumi-home"),
                   # The provider must come from .tools/bin, never from a download.
                   "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                   "SMOKE_KUBECONFIG": str(k8s_cluster.kubeconfig)})
    env = {**os.environ, **settings.env()}

    def pulumi(*args: str) -> str:
        proc = subprocess.run([str(TOOLS / "bin" / "pulumi"), *args, "--non-interactive"],
                              cwd=project, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, f"pulumi {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    pulumi("stack", "init", "smoke")
    up = pulumi("up", "--yes", "--skip-preview", "--stack", "smoke")
    # The provider .tools/bin holds served it, whatever version the Python SDK asks for.
    assert f"using pulumi-resource-kubernetes from $PATH at {TOOLS / 'bin'}" in up
    assert "Deployment initialization complete" in up
    outputs = json.loads(pulumi("stack", "output", "--json", "--stack", "smoke"))
    assert outputs["readyReplicas"] == 2

    base = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/smoke"
    _, live = k8s_cluster.request("GET", base)
    assert live["status"]["availableReplicas"] == 2
    # The provider applied it with server-side apply.
    assert any(m["operation"] == "Apply" for m in live["metadata"]["managedFields"])

    pulumi("destroy", "--yes", "--skip-preview", "--stack", "smoke")
    k8s_cluster.wait_for(
        lambda: k8s_cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}",
                                    check=False)[0] == 404,
        f"namespace {NAMESPACE} to be deleted")
    pulumi("stack", "rm", "--yes", "smoke")
