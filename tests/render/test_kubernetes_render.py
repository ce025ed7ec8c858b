"""Kubernetes manifests checked by the tools that own the formats, offline.

- Core objects: the official OpenAPI schemas of every supported Kubernetes minor
  version (kubernetes-validate, strict: unknown fields are errors).
- Gateway API and cert-manager objects: the CRD schemas of the pinned versions,
  fetched at test time as Go modules (`go mod download`; they ship their CRD
  files) into the Go module cache - never committed - and made strict the way
  the API server's field validation is (unknown fields are errors).
- cert-manager's Helm values: the chart's own values.schema.json, same module.
- Everything: checkov's Kubernetes checks, zero failures but the justified skips.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gin_deploy.render import cert_manager, helm_values
from gin_deploy.render import kubernetes as render
from gin_deploy.render import kubernetes_versions as versions
from gin_deploy.render.headers import hsts_value
from tests.gomod import go_module_dir
from tests.security_exceptions import exceptions

ROOT = Path(__file__).resolve().parents[2]
REPO = "ghcr.io/example/hello-gin"
DIGEST = "sha256:" + "ab" * 32
APP = render.KubernetesApp(
    name="hello-gin", namespace="hello-gin", gateway_namespace="hello-gin-gateway",
    domain="api.example.com", version="1.4.2", replicas=3, max_replicas=10,
    env={"LOG_LEVEL": "info"})
LETS_ENCRYPT = render.Acme("ops@example.com", "https://acme-v02.api.letsencrypt.org/directory")
PEBBLE = render.Acme("ops@example.com", "https://localhost:14000/dir",
                     "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
ROLE = "arn:aws:iam::111122223333:role/hello-gin-cert-manager-dns01"
# DNS-01 in Route 53: by web identity (IRSA), or an access key assuming a role in one zone.
DNS01 = dataclasses.replace(LETS_ENCRYPT, route53=cert_manager.Route53Solver(role_arn=ROLE))
DNS01_KEY = dataclasses.replace(LETS_ENCRYPT, route53=cert_manager.Route53Solver(
    role_arn=ROLE, access_key_id="AKIAIOSFODNN7EXAMPLE", hosted_zone_id="Z0EXAMPLEZONE"))


def scenarios(app: render.KubernetesApp) -> dict[str, list[render.Manifest]]:
    """Every object a target can have, over the scenarios that render them differently (also
    what tests/k8s applies in a strict server-side dry run, with an app of its own)."""

    def everything(**overrides: Any) -> list[render.Manifest]:
        """Canary by tag, secret env, registry credentials, DNS-01 by web identity."""
        kwargs: dict[str, Any] = {
            "image": f"{REPO}@{DIGEST}", "acme": DNS01,
            "canary_image": f"{REPO}:v1.5.0-rc.1", "canary_version": "v1.5.0-rc.1",
            "canary_weight": 10, "secret_env": {"DB_PASSWORD": "not-a-real-password"},
            "pull_secret_config": render.dockerconfigjson("ghcr.io", "deploy", "not-a-token"),
        }
        kwargs.update(overrides)
        return render.render_manifests(app, **kwargs)

    return {
        "everything": everything(),
        "minimal": render.render_manifests(app, image=f"{REPO}@{DIGEST}", acme=LETS_ENCRYPT,
                                           network_policy_enabled=False),
        "self-signed": everything(acme=None),
        "pebble": everything(acme=PEBBLE),
        "http01": everything(acme=LETS_ENCRYPT),
        "dns01-access-key": everything(acme=DNS01_KEY,
                                       route53_secret_access_key="not-a-real-key"),
        "canary-by-digest": everything(canary_image=f"{REPO}@sha256:{'cd' * 32}",
                                       canary_version="sha256:" + "cd" * 32, canary_weight=100),
        # Behind edge routing with a CDN: the target's own name and the origin lock.
        "edge-cdn": render.render_manifests(
            dataclasses.replace(app, extra_names=(f"k8s-eu.origin.{app.domain}",),
                                origin_verify_header="X-Origin-Verify",
                                origin_open_path="/readyz"),
            image=f"{REPO}@{DIGEST}", acme=LETS_ENCRYPT, origin_verify_value="Zq7" * 16),
    }


SCENARIOS = scenarios(APP)

CORE_KINDS = {"Namespace", "ServiceAccount", "Secret", "Deployment", "Service",
              "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Role",
              "RoleBinding"}
CUSTOM_KINDS = {"Gateway", "HTTPRoute", "ClusterIssuer", "Certificate"}


def objects(kinds: set[str]) -> Iterator[tuple[str, render.Manifest]]:
    for scenario, manifests in SCENARIOS.items():
        for i, manifest in enumerate(manifests):
            if manifest["kind"] in kinds:
                yield f"{scenario}[{i}]:{manifest['kind']}/{manifest['metadata']['name']}", manifest


def test_edge_names_and_origin_lock() -> None:
    manifests = {m["kind"]: m for m in SCENARIOS["edge-cdn"] if m["kind"] != "HTTPRoute"}
    routes = [m for m in SCENARIOS["edge-cdn"] if m["kind"] == "HTTPRoute"]
    own = "k8s-eu.origin.api.example.com"
    listeners = manifests["Gateway"]["spec"]["listeners"]
    assert [(li["name"], li["hostname"]) for li in listeners] == [
        ("http", APP.domain), ("https", APP.domain), ("http-1", own), ("https-1", own)]
    assert manifests["Certificate"]["spec"]["dnsNames"] == [APP.domain, own]
    https, redirect = routes
    assert [m.get("headers") for m in https["spec"]["rules"][0]["matches"]] == [
        [{"type": "Exact", "name": "X-Origin-Verify", "value": "Zq7" * 16}], None]
    assert https["spec"]["rules"][0]["matches"][1]["path"] == {"type": "Exact",
                                                               "value": "/readyz"}
    assert "headers" not in str(redirect) and redirect["spec"]["hostnames"] == [APP.domain, own]
    # Without edge routing nothing of it appears.
    assert "headers" not in str(render.https_route(APP))
    assert [li["name"] for li in render.gateway(APP)["spec"]["listeners"]] == ["http", "https"]


def test_scenarios_cover_every_kind() -> None:
    kinds = {m["kind"] for m in SCENARIOS["everything"]}
    assert kinds == CORE_KINDS | CUSTOM_KINDS
    assert [m["metadata"]["name"] for m in SCENARIOS["everything"]
            if m["kind"] == "Deployment"] == ["hello-gin", "hello-gin-canary"]


# --- pure rendering -------------------------------------------------------------------------


def test_stable_deployment_defaults() -> None:
    deployment = render.deployment(APP, image=f"{REPO}@{DIGEST}", version="1.4.2")
    spec = deployment["spec"]
    assert "replicas" not in spec   # the HPA's
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    [c] = spec["template"]["spec"]["containers"]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 5 + 10 + 5
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "1.4.2"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TRUSTED_PROXIES"] == ",".join(render.PRIVATE_NETWORKS)
    assert env["LOG_LEVEL"] == "info" and env["GIN_MODE"] == "release"


def test_canary_sizes_and_weights() -> None:
    assert [render.canary_replicas(APP, w) for w in (1, 10, 34, 50, 100)] == [1, 1, 2, 2, 3]
    route = render.https_route(APP, 25)
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [75, 25]
    assert [b["weight"] for b in render.https_route(APP)["spec"]["rules"][0][
        "backendRefs"]] == [100]


def test_hsts_header_and_label_values() -> None:
    assert hsts_value(63072000, True, True) == (
        "max-age=63072000; includeSubDomains; preload")
    assert hsts_value(300, False, False) == "max-age=300"
    deployment = render.deployment(APP, image="x", version="0.0.0+build/7 é")
    assert deployment["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/version"] == "0.0.0_build_7"


def test_dockerconfigjson_authenticates_the_registry_host() -> None:
    config = json.loads(render.dockerconfigjson("ghcr.io", "deploy", "tok"))
    assert config["auths"]["ghcr.io"]["auth"] == "ZGVwbG95OnRvaw=="


# --- core objects: the Kubernetes OpenAPI schemas ----------------------------------------------


@pytest.mark.parametrize("k8s_version", versions.KUBERNETES_VERSIONS)
def test_core_objects_match_the_kubernetes_openapi_schema(k8s_version: str) -> None:
    checked = set()
    for label, manifest in objects(CORE_KINDS):
        try:
            kubernetes_validate.validate(manifest, f"{k8s_version}.0", strict=True)
        except kubernetes_validate.ValidationError as err:
            path = "/".join(str(p) for p in err.path)
            pytest.fail(f"{label} invalid for Kubernetes {k8s_version} at {path}: "
                        f"{err.message.splitlines()[0]}")
        checked.add(manifest["kind"])
    assert checked == CORE_KINDS


def test_the_openapi_check_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(render.deployment(APP, image="x", version="1"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, f"{versions.KUBERNETES_VERSIONS[-1]}.0",
                                     strict=True)


# --- custom resources: the pinned CRD schemas --------------------------------------------------


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected, as `kubectl --validate=strict` does."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if ("properties" in result and "additionalProperties" not in result
            and not result.get("x-kubernetes-preserve-unknown-fields")):
        result["additionalProperties"] = False
    return result


@pytest.fixture(scope="session")
def crd_schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the pinned CRDs."""
    workdir = tmp_path_factory.mktemp("gomod")
    sources = [
        go_module_dir(versions.GATEWAY_API_MODULE, versions.GATEWAY_API_VERSION, workdir)
        / "config" / "crd" / "standard",
        go_module_dir(versions.CERT_MANAGER_MODULE, versions.CERT_MANAGER_MODULE_VERSION,
                      workdir) / "deploy" / "crds",
    ]
    schemas: dict[tuple[str, str], Any] = {}
    for directory in sources:
        files = sorted(directory.glob("*.yaml"))
        assert files, f"no CRD files in {directory}"
        for path in files:
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    if v.get("served"):
                        schemas[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = \
                            v["schema"]["openAPIV3Schema"]
    return schemas


def crd_errors(schemas: dict[tuple[str, str], Any], manifest: render.Manifest) -> list[str]:
    key = (manifest["apiVersion"], manifest["kind"])
    assert key in schemas, f"no CRD serves {key} at the pinned versions"
    validator = jsonschema.Draft7Validator(strict(schemas[key]))
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
            for e in validator.iter_errors(manifest)]


@pytest.mark.host
def test_gateway_api_and_cert_manager_objects_match_the_pinned_crds(
        crd_schemas: dict[tuple[str, str], Any]) -> None:
    checked = set()
    for label, manifest in objects(CUSTOM_KINDS):
        assert crd_errors(crd_schemas, manifest) == [], label
        checked.add(manifest["kind"])
    assert checked == CUSTOM_KINDS


@pytest.mark.host
def test_the_crd_check_rejects_unknown_fields_and_bad_values(
        crd_schemas: dict[tuple[str, str], Any]) -> None:
    route = copy.deepcopy(render.https_route(APP, 10))
    route["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 90
    assert any("wieght" in e for e in crd_errors(crd_schemas, route))
    gateway = copy.deepcopy(render.gateway(APP))
    gateway["spec"]["listeners"][0]["protocol"] = "HTTP/3"
    assert crd_errors(crd_schemas, gateway)
    issuer = copy.deepcopy(render.cluster_issuer(APP, LETS_ENCRYPT))
    issuer["spec"]["acme"]["solvers"][0]["http01"]["gatewayHttpRoute"] = {}
    assert crd_errors(crd_schemas, issuer)
    issuer = copy.deepcopy(render.cluster_issuer(APP, DNS01))
    issuer["spec"]["acme"]["solvers"][0]["dns01"]["route53"]["roleArn"] = ROLE
    assert any("roleArn" in e for e in crd_errors(crd_schemas, issuer))


def test_dns01_solver_and_its_credentials() -> None:
    [solver] = render.cluster_issuer(APP, DNS01)["spec"]["acme"]["solvers"]
    assert solver == {"dns01": {"route53": {"role": ROLE, "auth": {"kubernetes": {
        "serviceAccountRef": {"name": "hello-gin-gateway-acme-route53",
                              "audiences": ["sts.amazonaws.com"]}}}}}}
    kinds = [(m["kind"], m["metadata"]["namespace"]) for m in SCENARIOS["everything"]
             if m["metadata"].get("namespace") == "cert-manager"]
    assert kinds == [("ServiceAccount", "cert-manager"), ("Role", "cert-manager"),
                     ("RoleBinding", "cert-manager")]
    [secret] = [m for m in SCENARIOS["dns01-access-key"]
                if m["metadata"].get("namespace") == "cert-manager"]
    assert secret["stringData"] == {"access-key-id": "AKIAIOSFODNN7EXAMPLE",
                                    "secret-access-key": "not-a-real-key"}
    with pytest.raises(ValueError, match="role_arn or an access_key_id"):
        cert_manager.Route53Solver()


@pytest.mark.host
def test_cert_manager_values_match_the_charts_schema(tmp_path: Path) -> None:
    module = go_module_dir(versions.CERT_MANAGER_MODULE, versions.CERT_MANAGER_MODULE_VERSION,
                           tmp_path)
    chart = module / "deploy" / "charts" / "cert-manager"
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["name"] == "cert-manager"
    schema = json.loads((chart / "values.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert list(validator.iter_errors(helm_values.cert_manager_values())) == []
    assert list(validator.iter_errors({"crds": {"enable": True}})), "schema is not strict"
    # `config` is free-form in the chart: check our keys against the controller's own type.
    types = (module / "pkg" / "apis" / "config" / "controller" / "v1alpha1" / "types.go")
    source = types.read_text()
    assert 'GatewayAPIConfig GatewayAPIConfig `json:"gatewayAPI' in source
    gateway_api = source[source.index("type GatewayAPIConfig struct"):]
    assert re.search(r'Enabled \*bool\s+`json:"enabled', gateway_api)


# --- checkov -----------------------------------------------------------------------------------

# (check id, resource) -> why it does not apply; the reviewed list of every scanner's
# exceptions is tests/security_exceptions.toml.
CHECKOV_SKIPS = exceptions("checkov-kubernetes")


CORE_CHECKS = {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28",
               "CKV_K8S_31", "CKV_K8S_37", "CKV_K8S_38", "CKV_K8S_40", "CKV_K8S_10",
               "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13"}


@pytest.mark.host
@pytest.mark.timeout(900)   # the first run installs checkov into its cache (about a minute)
def test_checkov_kubernetes_checks_pass(tmp_path: Path) -> None:
    if shutil.which("python3") is None:
        pytest.skip("python3 is not installed (needed for checkov's own virtualenv)")
    seen: dict[tuple[str, str], int] = {}
    # "minimal" opts out of the NetworkPolicy, which checkov (rightly) flags: an
    # explicit opt-out (networkPolicy: false) is the user's call, so it is not scanned.
    for scenario, manifests in SCENARIOS.items():
        if scenario == "minimal":
            continue
        directory = tmp_path / scenario
        directory.mkdir()
        for i, manifest in enumerate(manifests):
            (directory / f"{i:02d}-{manifest['kind'].lower()}.yaml").write_text(
                yaml.safe_dump(manifest, sort_keys=False))
        done = subprocess.run(
            [str(ROOT / "scripts" / "checkov.sh"), "--skip-download", "--framework",
             "kubernetes", "--compact", "-o", "json", "-d", str(directory)],
            capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode in (0, 1), done.stderr[-2000:]
        reports = json.loads(done.stdout)
        [report] = reports if isinstance(reports, list) else [reports]
        assert report["summary"]["parsing_errors"] == 0
        assert report["summary"]["resource_count"] >= len(manifests), report["summary"]
        passed: dict[str, set[str]] = {}
        for check in report["results"]["passed_checks"]:
            passed.setdefault(check["resource"], set()).add(check["check_id"])
        for manifest in manifests:
            if manifest["kind"] == "Deployment":
                resource = f"Deployment.{manifest['metadata']['namespace']}." \
                           f"{manifest['metadata']['name']}"
                # Probes, no privilege escalation, read-only root, NET_RAW and all
                # capabilities dropped, seccomp, no token, high UID, requests/limits.
                assert passed.get(resource, set()) >= CORE_CHECKS, (scenario, resource)
        # The NetworkPolicy covers every pod (a graph check across the objects).
        pods = [r for r in passed if r.startswith("Pod.")]
        assert pods and all("CKV2_K8S_6" in passed[r] for r in pods), scenario
        for check in report["results"]["failed_checks"]:
            key = (check["check_id"], check["resource"])
            assert key in CHECKOV_SKIPS, f"{scenario}: {key} {check['check_name']}"
            seen[key] = seen.get(key, 0) + 1
    # Every skip is still needed (a stale justification is a defect too).
    assert set(seen) == set(CHECKOV_SKIPS)


# --- the README lists the pinned versions -----------------------------------------------------


def test_readme_lists_the_pinned_versions() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Kubernetes versions"):]
    for pinned in (versions.NGINX_GATEWAY_FABRIC.version, versions.NGINX_GATEWAY_FABRIC.chart,
                   versions.CERT_MANAGER.version, versions.CERT_MANAGER.repository,
                   versions.FLAGGER.version, versions.FLAGGER.repository,
                   versions.GATEWAY_API_VERSION, versions.KUBERNETES_VERSIONS[0],
                   versions.KUBERNETES_VERSIONS[-1]):
        assert pinned is not None and pinned in section, pinned
    script = (ROOT / "scripts" / "checkov.sh").read_text()
    match = re.search(r"^VERSION=(\S+)$", script, re.MULTILINE)
    assert match and f"`{match[1]}`" in section
