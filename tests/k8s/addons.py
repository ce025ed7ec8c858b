"""What the harness cluster gets before a `kubernetes` target deploys onto it with
`installGateway: false` and `installCertManager: false`, the way a platform team's
cluster brings them:

- the Gateway API CRDs (standard channel) at the pinned version, from their Go module;
- a GatewayClass no controller reconciles: NGINX Gateway Fabric's chart is not
  obtainable offline, so Gateways are accepted by the API server but never programmed
  (the unit tests keep covering the NGINX Gateway Fabric release);
- cert-manager from its own chart in its Go module, installed by real Helm inside the
  real Pulumi Kubernetes provider with the values the program gives it
  (`helm_values.cert_manager_values()`, its CRDs included).

What is faked: no container runs under kwok, so cert-manager's controller, cainjector
and webhook pods are Ready but do nothing. Nothing answers the webhook, so its
configurations are removed after the install (the API server then admits
cert-manager objects on their CRD schemas, CEL rules and strict field validation
alone), and no certificate is ever issued.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from gin_deploy import automation
from gin_deploy.render import helm_values
from gin_deploy.render import kubernetes_versions as versions
from tests.gomod import go_module_dir
from tests.k8s.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
GATEWAY_CLASS = "gin-deploy-e2e"
FIELD_MANAGER = "gin-deploy-test"
WEBHOOK_CONFIGURATIONS = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")


@dataclass(frozen=True)
class Addons:
    gateway_class: str
    cert_manager_namespace: str


def install(cluster: Cluster, workdir: Path) -> Addons:
    install_gateway_api(cluster, workdir)
    install_cert_manager(cluster, workdir)
    return Addons(gateway_class=GATEWAY_CLASS, cert_manager_namespace=versions.CERT_MANAGER.name)


def install_gateway_api(cluster: Cluster, workdir: Path) -> None:
    module = go_module_dir(versions.GATEWAY_API_MODULE, versions.GATEWAY_API_VERSION, workdir)
    crds = module / "config" / "crd" / "standard"
    cluster.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
                    "-f", str(crds))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/gateways.gateway.networking.k8s.io",
                    "crd/httproutes.gateway.networking.k8s.io",
                    "crd/gatewayclasses.gateway.networking.k8s.io")
    cluster.request("POST", "/apis/gateway.networking.k8s.io/v1/gatewayclasses", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        # No controller has this name: Gateways of the class are never programmed.
        "spec": {"controllerName": "gin-deploy.test/no-controller"},
    })


def chart_from_module(module: Path, destination: Path, version: str) -> Path:
    """A writable copy of cert-manager's chart with the release's version filled in (the
    module holds placeholders its release tooling sets)."""
    chart = destination / "cert-manager"
    shutil.copytree(module / "deploy" / "charts" / "cert-manager", chart,
                    copy_function=shutil.copyfile)
    for directory, _dirs, _files in os.walk(chart):
        Path(directory).chmod(0o755)  # the module cache is read-only
    meta = chart / "Chart.yaml"
    text = meta.read_text()
    for key in ("version", "appVersion"):
        assert f"\n{key}: v0.0.0\n" in text, f"{meta}: no placeholder {key}"
        text = text.replace(f"\n{key}: v0.0.0\n", f"\n{key}: {version}\n")
    meta.write_text(text)
    return chart


# The release as KubernetesTarget._helm makes it, from the local chart instead of the
# chart repository.
_RELEASE_PROGRAM = textwrap.dedent('''\
    import json
    import os

    import pulumi
    import pulumi_kubernetes as k8s

    provider = k8s.Provider("cluster", kubeconfig=open(os.environ["ADDONS_KUBECONFIG"]).read())
    k8s.helm.v3.Release(
        "cert-manager", name=%(name)r, chart=os.environ["ADDONS_CHART"],
        namespace=%(name)r, create_namespace=True,
        values=json.loads(os.environ["ADDONS_VALUES"]),
        atomic=True, cleanup_on_fail=True, timeout=600,
        opts=pulumi.ResourceOptions(provider=provider))
''')


def install_cert_manager(cluster: Cluster, workdir: Path) -> None:
    chart = chart_from_module(
        go_module_dir(versions.CERT_MANAGER_MODULE, versions.CERT_MANAGER_MODULE_VERSION,
                      workdir), workdir, versions.CERT_MANAGER.version)
    project = workdir / "addons"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: gin-deploy-test-addons\nruntime:\n  name: python\n"
        "  options:\n    virtualenv: .venv\n")
    (project / "__main__.py").write_text(_RELEASE_PROGRAM % {"name": versions.CERT_MANAGER.name})
    (project / ".venv").symlink_to(ROOT / ".venv")
    (workdir / "addons-backend").mkdir()
    settings = automation.Settings(
        work_dir=project, tools_dir=TOOLS, backend_url=f"file://{workdir / 'addons-backend'}",
        passphrase_file=workdir / "addons-passphrase",
        extra_env={"PULUMI_HOME": str(workdir / "pulumi-home"),
                   "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                   "ADDONS_KUBECONFIG": str(cluster.kubeconfig), "ADDONS_CHART": str(chart),
                   "ADDONS_VALUES": json.dumps(helm_values.cert_manager_values())})
    env = {**os.environ, **settings.env()}
    for args in (("stack", "init", "addons"), ("up", "--yes", "--skip-preview")):
        done = subprocess.run([str(TOOLS / "bin" / "pulumi"), *args, "--non-interactive"],
                              cwd=project, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        assert done.returncode == 0, f"pulumi {' '.join(args)} (cert-manager's chart):\n" \
            f"{done.stdout}\n{done.stderr}"
    # Nothing serves cert-manager's webhook under kwok (see the module docstring).
    for kind in WEBHOOK_CONFIGURATIONS:
        cluster.request("DELETE", f"/apis/admissionregistration.k8s.io/v1/{kind}/"
                        f"{versions.CERT_MANAGER.name}-webhook")
