"""Every version the `kubernetes` target pins, in one place.

The program installs these Helm charts and CRDs; the render tests validate what
it renders against the CRD schemas of exactly these versions (fetched at test
time as Go modules, which ship their CRD files) and against the Kubernetes
OpenAPI schemas of every minor version in KUBERNETES_VERSIONS. The README's
"Kubernetes versions" section lists them; a test keeps it in step.

Upgrading: bump the chart and its matching Gateway API version together (NGINX
Gateway Fabric supports one Gateway API release per minor version), run
`pytest tests/render/test_kubernetes_render.py`, update the README table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HelmChart:
    """A chart by repository and exact version (never a range)."""

    name: str        # release name and default namespace
    chart: str       # chart name, or an oci:// reference
    version: str
    repository: str | None = None   # None for oci:// charts


# NGINX Gateway Fabric: the maintained NGINX implementation of the Gateway API
# (the community ingress-nginx controller was retired in March 2026).
NGINX_GATEWAY_FABRIC = HelmChart(
    name="nginx-gateway",
    chart="oci://ghcr.io/nginx/charts/nginx-gateway-fabric",
    version="2.6.5",
)

# The Gateway API release NGINX Gateway Fabric 2.6 implements (standard channel).
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
GATEWAY_API_VERSION = "v1.5.1"
GATEWAY_API_CRDS_URL = (
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/"
    f"{GATEWAY_API_VERSION}/standard-install.yaml"
)

CERT_MANAGER = HelmChart(
    name="cert-manager",
    chart="cert-manager",
    version="v1.21.2",
    repository="https://charts.jetstack.io",
)
# The same release as a Go module: its deploy/crds hold the CRDs the chart installs.
CERT_MANAGER_MODULE = "github.com/cert-manager/cert-manager"
CERT_MANAGER_MODULE_VERSION = CERT_MANAGER.version

# Flagger runs canary and blue/green releases (gin_deploy/render/flagger.py). Its Go module
# ships the same chart (charts/flagger, CRDs in its crds/) and artifacts/flagger/crd.yaml.
FLAGGER = HelmChart(
    name="flagger",
    chart="flagger",
    version="1.36.1",
    repository="https://flagger.app",
)
FLAGGER_MODULE = "github.com/fluxcd/flagger"
FLAGGER_MODULE_VERSION = f"v{FLAGGER.version}"

# Kubernetes minor versions every rendered core object is validated against
# (NGINX Gateway Fabric 2.6 supports 1.31+).
KUBERNETES_VERSIONS = ("1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37")
