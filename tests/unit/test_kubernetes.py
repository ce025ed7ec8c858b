"""KubernetesTarget under mocks: the prod stack's Kubernetes part, as the engine would get it.

The prod stack file is run with only its kubernetes target(s) and no edge (the
other kinds have their own tests); a second cluster, canaries, secrets and
opt-outs are variations of it. Recorded inputs are compared with the renderer's
output, which the render tests validate against the real schemas and checkov.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.kubernetes import KubernetesTarget
from gin_deploy import program
from gin_deploy.config import ConfigError, KubernetesTargetConfig, parse_stack_config
from gin_deploy.program.kubernetes import kubernetes_target_args
from gin_deploy.render import kubernetes as render
from gin_deploy.render import kubernetes_versions as versions
from tests.unit import harness
from tests.unit.harness import (
    ROOT,
    RecordingMocks,
    Registered,
    is_secret,
    run_program,
    stack_config,
    unsecret,
)

PROD = stack_config("prod")
GATEWAY_ADDRESS = "203.0.113.80"
DIGEST = "sha256:" + "ab" * 32   # what the harness's docker mock reports
REPO = "ghcr.io/example/hello-gin"


def _secret_name(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    """Auto-naming, as pulumi-kubernetes does it: `<logical name>-<random suffix>`."""
    metadata = dict(unsecret(args.inputs.get("metadata")) or {})
    metadata.setdefault("name", f"{args.name}-{hashlib.sha256(args.name.encode()).hexdigest()[:8]}")
    return {"metadata": metadata}


def _gateway_status(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    return {"status": {"addresses": [{"type": "IPAddress", "value": GATEWAY_ADDRESS}]}}


harness.OUTPUT_FACTORIES.update({
    "kubernetes:core/v1:Secret": _secret_name,
    "kubernetes:gateway.networking.k8s.io/v1:Gateway": _gateway_status,
})


@dataclass
class ProviderMocks(RecordingMocks):
    """Also records which provider each resource was registered with."""

    providers: dict[str, str | None] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.providers[args.name] = args.provider
        return super().new_resource(args)


def k8s_config(*targets: dict[str, Any], **app: Any) -> dict[str, Any]:
    """The prod stack with only kubernetes targets (the prod one by default), no edge.

    Alone behind its domain the prod target proves it by HTTP-01: without its Route 53
    credentials (DNS-01: tests/unit/test_dns01.py)."""
    config = copy.deepcopy(PROD)
    prod_k8s = [prod_target()]
    config["gin-deploy:targets"] = list(targets) or prod_k8s
    config.pop("gin-deploy:edge")
    if app:
        config["gin-deploy:app"] = {**config["gin-deploy:app"], **app}
    return config


def prod_target(**overrides: Any) -> dict[str, Any]:
    [target] = [t for t in PROD["gin-deploy:targets"] if t["kind"] == "kubernetes"]
    target = {k: v for k, v in copy.deepcopy(target).items() if k != "route53"}
    return {**target, **overrides}


def run(*targets: dict[str, Any], secret_keys: tuple[str, ...] = (), **app: Any) -> ProviderMocks:
    mocks = ProviderMocks()
    run_program(k8s_config(*targets, **app), stack="prod", secret_keys=secret_keys, mocks=mocks)
    return mocks


@pytest.fixture(scope="module")
def prod() -> ProviderMocks:
    return run()


def of_target(mocks: RecordingMocks, target: str) -> Iterator[Registered]:
    return (r for r in mocks.resources if r.name.startswith(f"{target}-"))


def spec_of(mocks: RecordingMocks, name: str) -> dict[str, Any]:
    return dict(mocks.named(name).inputs["spec"])


def container(mocks: RecordingMocks, name: str = "k8s-eu-deployment") -> dict[str, Any]:
    [only] = spec_of(mocks, name)["template"]["spec"]["containers"]
    return dict(only)


def expected_app(**overrides: Any) -> render.KubernetesApp:
    """The plain values the prod stack file should produce, written out independently."""
    values: dict[str, Any] = {
        "name": "hello-gin", "namespace": "hello-gin", "gateway_namespace": "hello-gin-gateway",
        "domain": "api.example.com", "version": "", "replicas": 3, "max_replicas": 10,
        "env": {"LOG_LEVEL": "info"},
        "hsts": "max-age=63072000; includeSubDomains",
    }
    values.update(overrides)
    return render.KubernetesApp(**values)


# --- the whole target ------------------------------------------------------------------

PROD_RESOURCES = [
    ("gin-deploy:kubernetes:KubernetesTarget", "k8s-eu"),
    ("pulumi:providers:kubernetes", "k8s-eu-provider"),
    ("kubernetes:core/v1:Namespace", "k8s-eu-namespace"),
    ("kubernetes:core/v1:Namespace", "k8s-eu-gateway-namespace"),
    ("kubernetes:yaml/v2:ConfigFile", "k8s-eu-gateway-api-crds"),
    ("kubernetes:helm.sh/v3:Release", "k8s-eu-nginx-gateway-fabric"),
    ("kubernetes:helm.sh/v3:Release", "k8s-eu-cert-manager"),
    ("kubernetes:core/v1:ServiceAccount", "k8s-eu-service-account"),
    ("kubernetes:apps/v1:Deployment", "k8s-eu-deployment"),
    ("kubernetes:core/v1:Service", "k8s-eu-service"),
    ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "k8s-eu-hpa"),
    ("kubernetes:policy/v1:PodDisruptionBudget", "k8s-eu-pdb"),
    ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "k8s-eu-network-policy"),
    ("kubernetes:cert-manager.io/v1:ClusterIssuer", "k8s-eu-cluster-issuer"),
    ("kubernetes:cert-manager.io/v1:Certificate", "k8s-eu-certificate"),
    ("kubernetes:gateway.networking.k8s.io/v1:Gateway", "k8s-eu-gateway"),
    ("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "k8s-eu-https-route"),
    ("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "k8s-eu-redirect-route"),
]


def test_prod_kubernetes_target_registers_exactly_its_objects(prod: ProviderMocks) -> None:
    assert sorted((r.typ, r.name) for r in of_target(prod, "k8s-eu")) == sorted(
        (t, n) for t, n in PROD_RESOURCES if n != "k8s-eu")
    assert prod.named("k8s-eu").typ == "gin-deploy:kubernetes:KubernetesTarget"
    # The image is built once and pushed to the target's registry.
    [image] = prod.of_type("docker:index/registryImage:RegistryImage")
    assert image.inputs["name"].startswith(f"{REPO}:0.0.0-src.")


def test_every_object_goes_through_the_targets_own_provider(prod: ProviderMocks) -> None:
    provider = prod.named("k8s-eu-provider")
    assert provider.inputs["context"] == "eu-prod"
    assert "kubeconfig" not in provider.inputs   # context of the local kubeconfig
    for r in of_target(prod, "k8s-eu"):
        if r.typ.startswith("kubernetes:"):
            ref = prod.providers[r.name]
            assert ref is not None and "::k8s-eu-provider::" in ref, (r.name, ref)


def test_every_object_is_a_child_of_its_target_component() -> None:
    """Parents as the program sets them (seen through a stack transformation)."""
    parents: dict[str, Any] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        parents[args.name] = args.opts.parent

    pulumi.runtime.set_mocks(RecordingMocks(), project="gin-deploy", stack="prod",
                             preview=False)
    harness.set_config(k8s_config(prod_target(route53=ROUTE53_ROLE), US), ["gin-deploy:targets"])

    @pulumi.runtime.test
    def evaluate() -> None:
        pulumi.runtime.register_stack_transformation(record)
        program.main()

    evaluate()
    components = {}
    for target in ("k8s-eu", "k8s-us"):
        children = [n for n in parents if n.startswith(f"{target}-") and "-image-" not in n]
        assert len(children) >= len(PROD_RESOURCES) - 1
        [component] = {id(parents[n]): parents[n] for n in children}.values()
        assert isinstance(component, KubernetesTarget)
        components[target] = component
    assert components["k8s-eu"] is not components["k8s-us"]


def test_recorded_inputs_are_the_rendered_manifests(prod: ProviderMocks) -> None:
    """What the engine receives is what the render tests validate, leaf for leaf."""
    # The pushed tag is <version>-<content address>.
    tag = prod.of_type("docker:index/registryImage:RegistryImage")[0].inputs["name"]
    version = tag.split(":")[-1].rsplit("-", 1)[0]
    app = expected_app(version=version)
    acme = render.Acme("ops@example.com", "https://acme-v02.api.letsencrypt.org/directory")
    stable = render.deployment(app, image=f"{REPO}@{DIGEST}", version=version, pinned=True)
    expected = {
        "k8s-eu-namespace": render.app_namespace(app),
        "k8s-eu-gateway-namespace": render.gateway_namespace(app),
        "k8s-eu-service-account": render.service_account(app),
        "k8s-eu-deployment": stable,
        "k8s-eu-service": render.service(app),
        "k8s-eu-hpa": render.horizontal_pod_autoscaler(app),
        "k8s-eu-pdb": render.pod_disruption_budget(app),
        "k8s-eu-network-policy": render.network_policy(app),
        "k8s-eu-cluster-issuer": render.cluster_issuer(app, acme),
        "k8s-eu-certificate": render.certificate(app, acme),
        "k8s-eu-gateway": render.gateway(app),
        "k8s-eu-https-route": render.https_route(app),
        "k8s-eu-redirect-route": render.redirect_route(app),
    }
    for name, manifest in expected.items():
        inputs = {k: v for k, v in prod.named(name).inputs.items() if k != "status"}
        assert inputs == manifest, name


# --- the defaults the issue asks for, on recorded inputs ---------------------------------


def test_namespace_enforces_restricted_pod_security(prod: ProviderMocks) -> None:
    labels = prod.named("k8s-eu-namespace").inputs["metadata"]["labels"]
    assert prod.named("k8s-eu-namespace").inputs["metadata"]["name"] == "hello-gin"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    gateway = prod.named("k8s-eu-gateway-namespace").inputs["metadata"]
    assert gateway["name"] == "hello-gin-gateway"
    assert gateway["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert gateway["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


def test_deployment_runs_the_pushed_digest_with_a_surge_only_rollout(prod: ProviderMocks) -> None:
    spec = spec_of(prod, "k8s-eu-deployment")
    assert container(prod)["image"] == f"{REPO}@{DIGEST}"
    assert container(prod)["imagePullPolicy"] == "IfNotPresent"
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    # The HPA owns the replica count; a fixed one would fight it on every `pulumi up`.
    assert "replicas" not in spec
    assert prod.named("k8s-eu-deployment").inputs["metadata"]["namespace"] == "hello-gin"


def test_probes_drain_and_grace_period(prod: ProviderMocks) -> None:
    c = container(prod)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 60
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    pod = spec_of(prod, "k8s-eu-deployment")["template"]["spec"]
    # preStop 5 s + app.shutdownTimeout 10 s + 5 s headroom.
    assert pod["terminationGracePeriodSeconds"] == 20
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SHUTDOWN_TIMEOUT"] == "10s" and env["PORT"] == "8080"


def test_resources_and_security_context(prod: ProviderMocks) -> None:
    c = container(prod)
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "128Mi"}}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = spec_of(prod, "k8s-eu-deployment")["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "hello-gin"
    assert prod.named("k8s-eu-service-account").inputs["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pods_spread_across_zones_and_nodes(prod: ProviderMocks) -> None:
    pod = spec_of(prod, "k8s-eu-deployment")["template"]["spec"]
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "hello-gin", "gin-deploy/track": "stable"}


def test_plain_env_without_secrets(prod: ProviderMocks) -> None:
    c = container(prod)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["GIN_MODE"] == "release" and env["LOG_LEVEL"] == "info"
    assert env["TRUSTED_PROXIES"] == ",".join(render.PRIVATE_NETWORKS)
    assert "envFrom" not in c
    assert prod.of_type("kubernetes:core/v1:Secret") == []


def test_service_hpa_pdb_and_network_policy(prod: ProviderMocks) -> None:
    service = spec_of(prod, "k8s-eu-service")
    assert service["type"] == "ClusterIP"
    assert service["selector"] == {"app.kubernetes.io/name": "hello-gin",
                                   "gin-deploy/track": "stable"}
    hpa = spec_of(prod, "k8s-eu-hpa")
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert hpa["scaleTargetRef"]["name"] == "hello-gin"
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
               for m in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}
    assert spec_of(prod, "k8s-eu-pdb")["maxUnavailable"] == 1
    policy = spec_of(prod, "k8s-eu-network-policy")
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "hello-gin-gateway"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_gateway_fabric_and_cert_manager_are_pinned_helm_releases(prod: ProviderMocks) -> None:
    ngf = prod.named("k8s-eu-nginx-gateway-fabric").inputs
    assert (ngf["chart"], ngf["version"]) == (versions.NGINX_GATEWAY_FABRIC.chart,
                                              versions.NGINX_GATEWAY_FABRIC.version)
    assert ngf["chart"].startswith("oci://") and ngf["namespace"] == "nginx-gateway"
    assert ngf["values"]["nginxGateway"]["gatewayClassName"] == "nginx"
    assert "config" not in ngf["values"]["nginx"]   # no trusted proxies configured
    cm = prod.named("k8s-eu-cert-manager").inputs
    assert (cm["chart"], cm["version"], cm["repositoryOpts"]["repo"]) == (
        "cert-manager", versions.CERT_MANAGER.version, "https://charts.jetstack.io")
    assert cm["values"]["crds"]["enabled"] is True
    assert cm["values"]["config"]["gatewayAPI"] == {"enabled": True}
    crds = prod.named("k8s-eu-gateway-api-crds").inputs
    assert crds["file"] == versions.GATEWAY_API_CRDS_URL
    assert versions.GATEWAY_API_VERSION in crds["file"]


def test_gateway_listeners_routes_redirect_and_hsts(prod: ProviderMocks) -> None:
    gateway = prod.named("k8s-eu-gateway").inputs
    assert gateway["metadata"]["namespace"] == "hello-gin-gateway"
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert (listeners["http"]["port"], listeners["https"]["port"]) == (80, 443)
    assert listeners["https"]["tls"]["certificateRefs"][0]["name"] == "hello-gin-tls"
    assert {item["hostname"] for item in listeners.values()} == {"api.example.com"}
    route = spec_of(prod, "k8s-eu-https-route")
    assert route["parentRefs"][0]["sectionName"] == "https"
    [rule] = route["rules"]
    assert rule["backendRefs"] == [{"group": "", "kind": "Service", "name": "hello-gin",
                                    "port": 80, "weight": 100}]
    [hsts] = rule["filters"]
    assert hsts["responseHeaderModifier"]["set"] == [
        {"name": "Strict-Transport-Security", "value": "max-age=63072000; includeSubDomains"}]
    redirect = spec_of(prod, "k8s-eu-redirect-route")
    assert redirect["parentRefs"][0]["sectionName"] == "http"
    assert redirect["rules"][0]["filters"] == [{"type": "RequestRedirect", "requestRedirect": {
        "scheme": "https", "statusCode": 301}}]


def test_certificate_from_lets_encrypt_through_the_gateway(prod: ProviderMocks) -> None:
    issuer = spec_of(prod, "k8s-eu-cluster-issuer")["acme"]
    assert issuer["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert issuer["email"] == "ops@example.com"
    [solver] = issuer["solvers"]
    assert solver["http01"]["gatewayHTTPRoute"]["parentRefs"] == [{
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "hello-gin",
        "namespace": "hello-gin-gateway", "sectionName": "http"}]
    cert = prod.named("k8s-eu-certificate").inputs
    assert cert["metadata"]["namespace"] == "hello-gin-gateway"
    assert cert["spec"]["dnsNames"] == ["api.example.com"]
    assert cert["spec"]["secretName"] == "hello-gin-tls"
    assert cert["spec"]["issuerRef"]["name"] == prod.named(
        "k8s-eu-cluster-issuer").inputs["metadata"]["name"]


def test_staging_or_any_acme_server_and_self_signed() -> None:
    config = k8s_config()
    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    config["gin-deploy:tls"] = {**config["gin-deploy:tls"],
                                "acme": {"email": "ops@example.com", "server": staging}}
    mocks = RecordingMocks()
    run_program(config, stack="prod", mocks=mocks)
    assert spec_of(mocks, "k8s-eu-cluster-issuer")["acme"]["server"] == staging
    config["gin-deploy:tls"] = {"mode": "self-signed"}
    mocks = run_program(config, stack="prod")
    assert spec_of(mocks, "k8s-eu-cluster-issuer") == {"selfSigned": {}}


# --- canary ----------------------------------------------------------------------------------


@pytest.mark.parametrize("canary", [None, {"version": "v1.3.0", "weight": 0}])
def test_no_canary_without_weight(canary: dict[str, Any] | None) -> None:
    target = prod_target(**({"canary": canary} if canary else {}))
    mocks = run(target)
    names = {r.name for r in mocks.resources}
    assert not {n for n in names if "canary" in n}
    [rule] = spec_of(mocks, "k8s-eu-https-route")["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == ["hello-gin"]


def test_canary_runs_the_tagged_release_and_splits_by_weight() -> None:
    mocks = run(prod_target(canary={"version": "v1.3.0", "weight": 10}))
    canary = container(mocks, "k8s-eu-canary-deployment")
    assert canary["image"] == f"{REPO}:v1.3.0"
    assert canary["imagePullPolicy"] == "Always"   # a tag may move
    spec = spec_of(mocks, "k8s-eu-canary-deployment")
    assert spec["replicas"] == 1   # ceil(3 x 10%)
    assert spec["selector"]["matchLabels"]["gin-deploy/track"] == "canary"
    assert container(mocks)["image"] == f"{REPO}@{DIGEST}"   # stable stays on the build
    assert spec_of(mocks, "k8s-eu-canary-service")["selector"]["gin-deploy/track"] == "canary"
    [rule] = spec_of(mocks, "k8s-eu-https-route")["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [
        ("hello-gin", 90), ("hello-gin-canary", 10)]
    # Stable and canary pods are both behind the PDB and the NetworkPolicy.
    assert spec_of(mocks, "k8s-eu-pdb")["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "hello-gin"}


def test_canary_by_digest_is_pinned() -> None:
    digest = "sha256:" + "cd" * 32
    mocks = run(prod_target(canary={"version": digest, "weight": 50}))
    canary = container(mocks, "k8s-eu-canary-deployment")
    assert canary["image"] == f"{REPO}@{digest}"
    assert canary["imagePullPolicy"] == "IfNotPresent"
    assert spec_of(mocks, "k8s-eu-canary-deployment")["replicas"] == 2   # ceil(3 x 50%)


# --- two clusters --------------------------------------------------------------------------

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n# a throwaway, secret kubeconfig\n"
# Two clusters behind one domain prove it by DNS-01: a role (IRSA) here, a key there.
ROUTE53_ROLE = {"roleArn": "arn:aws:iam::111122223333:role/hello-gin-cert-manager-dns01"}
US: dict[str, Any] = {
    "name": "k8s-us", "kind": "kubernetes", "kubeconfig": KUBECONFIG, "context": "us-prod",
    "region": "us-east-1", "replicas": 2, "weight": 20, "release": {"strategy": "rolling"},
    "registry": {"server": "us-docker.pkg.dev/example/apps/hello-gin",
                 "username": "_json_key", "password": "registry-s3cret"},
    "route53": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}


@pytest.fixture(scope="module")
def two() -> ProviderMocks:
    return run(prod_target(route53=ROUTE53_ROLE), US, secret_keys=("gin-deploy:targets",))


def test_two_clusters_have_no_name_collisions(two: ProviderMocks) -> None:
    keys = [(r.typ, r.name) for r in two.resources]
    assert len(keys) == len(set(keys))
    eu = {n.removeprefix("k8s-eu-") for _t, n in keys if n.startswith("k8s-eu-")}
    us = {n.removeprefix("k8s-us-") for _t, n in keys if n.startswith("k8s-us-")}
    # Beside a pull secret, us authenticates to Route 53 by access key, eu by web identity.
    web_identity = {"route53-service-account", "route53-token-role", "route53-token-binding"}
    assert us == (eu - web_identity) | {"registry-credentials", "route53-credentials"}
    # Two registries: two pushes of the same build.
    images = sorted(i.inputs["name"].rsplit(":", 1)[0]
                    for i in two.of_type("docker:index/registryImage:RegistryImage"))
    assert images == sorted([REPO, US["registry"]["server"]])
    assert len(two.of_type("docker:index/image:Image")) == 1


def test_each_cluster_has_its_own_provider(two: ProviderMocks) -> None:
    eu, us = two.named("k8s-eu-provider"), two.named("k8s-us-provider")
    assert eu.inputs["context"] == "eu-prod" and us.inputs["context"] == "us-prod"
    assert is_secret(us.inputs["kubeconfig"]) and unsecret(us.inputs["kubeconfig"]) == KUBECONFIG
    for r in two.resources:
        for target in ("k8s-eu", "k8s-us"):
            if r.name.startswith(f"{target}-") and r.typ.startswith("kubernetes:"):
                assert f"::{target}-provider::" in str(two.providers[r.name]), r.name
    assert spec_of(two, "k8s-us-hpa")["minReplicas"] == 2
    assert container(two, "k8s-us-deployment")["image"] == (
        f"{US['registry']['server']}@{DIGEST}")


def test_registry_credentials_are_a_secret_pull_secret(two: ProviderMocks) -> None:
    secret = two.named("k8s-us-registry-credentials").inputs
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert is_secret(secret["stringData"])
    config = json.loads(unsecret(secret["stringData"])[".dockerconfigjson"])
    assert config["auths"]["us-docker.pkg.dev"]["password"] == "registry-s3cret"
    pod = spec_of(two, "k8s-us-deployment")["template"]["spec"]
    generated = _secret_name(pulumi.runtime.MockResourceArgs("", "k8s-us-registry-credentials", {}))
    assert pod["imagePullSecrets"] == [{"name": generated["metadata"]["name"]}]
    assert "imagePullSecrets" not in spec_of(two, "k8s-eu-deployment")["template"]["spec"]
    assert_never_plain(two, "registry-s3cret")


def assert_never_plain(mocks: RecordingMocks, text: str) -> None:
    for resource in mocks.resources:
        for key, value in resource.inputs.items():
            if not is_secret(value):
                assert text not in json.dumps(value, default=str), (resource.name, key)


def test_two_clusters_share_one_push_per_repository() -> None:
    us = {**US, "registry": {"server": REPO}}
    mocks = run(prod_target(route53=ROUTE53_ROLE), us, secret_keys=("gin-deploy:targets",))
    assert len(mocks.of_type("docker:index/image:Image")) == 1
    assert container(mocks, "k8s-us-deployment")["image"] == f"{REPO}@{DIGEST}"


def test_kubeconfig_file_is_read_as_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    mocks = run(prod_target(context=None, kubeconfigPath=str(path)))
    kubeconfig = mocks.named("k8s-eu-provider").inputs["kubeconfig"]
    assert is_secret(kubeconfig) and unsecret(kubeconfig) == KUBECONFIG


# --- secrets ---------------------------------------------------------------------------------


def test_secret_env_reaches_pods_only_through_an_immutable_secret() -> None:
    config = k8s_config(secretEnv=["DB_PASSWORD"])
    config["gin-deploy:DB_PASSWORD"] = "correct-horse-battery"
    mocks = ProviderMocks()
    run_program(config, stack="prod", secret_keys=["gin-deploy:DB_PASSWORD"], mocks=mocks)
    [secret] = mocks.of_type("kubernetes:core/v1:Secret")
    assert secret.name == "k8s-eu-env"
    assert secret.inputs["immutable"] is True and secret.inputs["type"] == "Opaque"
    assert "name" not in secret.inputs["metadata"]   # auto-named: a change rolls the pods
    assert is_secret(secret.inputs["stringData"])
    assert unsecret(secret.inputs["stringData"]) == {"DB_PASSWORD": "correct-horse-battery"}
    generated = _secret_name(pulumi.runtime.MockResourceArgs("", "k8s-eu-env", {}))
    assert container(mocks)["envFrom"] == [{"secretRef": {
        "name": generated["metadata"]["name"]}}]
    assert_never_plain(mocks, "correct-horse-battery")


# --- options ---------------------------------------------------------------------------------


def test_reusing_the_clusters_gateway_class_and_cert_manager() -> None:
    mocks = run(prod_target(installGateway=False, installCertManager=False,
                            gatewayClassName="shared-nginx", networkPolicy=False))
    types = {r.typ for r in of_target(mocks, "k8s-eu")}
    assert "kubernetes:helm.sh/v3:Release" not in types
    assert "kubernetes:yaml/v2:ConfigFile" not in types
    assert "kubernetes:networking.k8s.io/v1:NetworkPolicy" not in types
    assert spec_of(mocks, "k8s-eu-gateway")["gatewayClassName"] == "shared-nginx"


def test_trusted_load_balancer_addresses_configure_real_client_ips() -> None:
    mocks = run(prod_target(trustedProxies=["10.0.0.0/16", "192.0.2.7"],
                            clientIpMode="ProxyProtocol"))
    values = mocks.named("k8s-eu-nginx-gateway-fabric").inputs["values"]
    assert values["nginx"]["config"]["rewriteClientIP"] == {
        "mode": "ProxyProtocol", "setIPRecursively": True, "trustedAddresses": [
            {"type": "CIDR", "value": "10.0.0.0/16"}, {"type": "CIDR", "value": "192.0.2.7/32"}]}
    assert values["nginx"]["service"]["externalTrafficPolicy"] == "Local"


def test_rollout_resources_and_autoscaling_are_configurable() -> None:
    mocks = run(prod_target(maxSurge="25%", maxUnavailable="1", cpuRequest="250m",
                            cpuLimit="1", memoryRequest="128Mi", memoryLimit="256Mi",
                            cpuTarget=60, memoryTarget=75, preStopSleep=0,
                            namespace="api", gatewayNamespace="edge"),
                shutdownTimeout=20)
    spec = spec_of(mocks, "k8s-eu-deployment")
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 1}
    c = container(mocks)
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"}
    assert "lifecycle" not in c
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 25
    assert [m["resource"]["target"]["averageUtilization"]
            for m in spec_of(mocks, "k8s-eu-hpa")["metrics"]] == [60, 75]
    assert mocks.named("k8s-eu-deployment").inputs["metadata"]["namespace"] == "api"
    assert mocks.named("k8s-eu-gateway").inputs["metadata"]["namespace"] == "edge"


# --- outputs ---------------------------------------------------------------------------------


def test_outputs_url_address_and_namespaces() -> None:
    pulumi.runtime.set_mocks(RecordingMocks(), project="gin-deploy", stack="prod", preview=False)
    cfg = parse_file_config(k8s_config())
    [target] = cfg.targets
    assert isinstance(target, KubernetesTargetConfig)
    seen: list[Any] = []

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[Any]:
        component = KubernetesTarget("k8s-eu", kubernetes_target_args(
            target, cfg, image=f"{REPO}@{DIGEST}", version="1.2.3"))
        seen.append((component.namespace, component.gateway_namespace))
        return pulumi.Output.all(component.url, component.address).apply(seen.append)

    evaluate()
    assert seen == [("hello-gin", "hello-gin-gateway"),
                    ["https://api.example.com", GATEWAY_ADDRESS]]


def parse_file_config(config: dict[str, Any]) -> Any:
    from gin_deploy.config import RawValue
    raw = {k.split(":", 1)[1]: RawValue(v, False) for k, v in
           {**harness.project_defaults(), **config}.items()}
    return parse_stack_config(raw, project="gin-deploy", stack="prod", project_dir=ROOT)


# --- config rules ----------------------------------------------------------------------------


def test_a_target_without_registry_fails_naming_the_key() -> None:
    target = prod_target()
    del target["registry"]
    with pytest.raises(ConfigError, match=r"gin-deploy:targets\[0\]\.registry: is required"):
        run(target)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"context": None}, r"targets\[0\]\.context: one of context, kubeconfig"),
    ({"maxSurge": "0", "maxUnavailable": "0%"}, r"maxUnavailable: maxSurge and maxUnavailable"),
    ({"maxSurge": "two"}, r"maxSurge: must be a count or a percentage"),
    ({"cpuRequest": "2", "cpuLimit": "500m"}, r"cpuLimit: 500m is below cpuRequest 2"),
    ({"memoryRequest": "lots"}, r"memoryRequest: must be a positive Kubernetes quantity"),
    ({"canary": {"version": "v2 beta", "weight": 5}}, r"canary\.version: must be an image tag"),
    ({"namespace": "api", "gatewayNamespace": "api"}, r"gatewayNamespace: must differ"),
    ({"namespace": "a.b"}, r"namespace: must be a DNS label"),
    ({"clientIpMode": "ProxyProtocol"}, r"trustedProxies: is required with clientIpMode"),
    ({"trustedProxies": ["not-an-ip"]}, r"trustedProxies\[?.*must be a list of IP"),
])
def test_invalid_kubernetes_settings_fail_before_any_resource(
        overrides: dict[str, Any], message: str) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=message):
        run_program(k8s_config(prod_target(**overrides)), stack="prod", mocks=mocks)
    assert mocks.resources == []
