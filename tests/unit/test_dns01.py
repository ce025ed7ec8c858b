"""Certificates that issue behind the CDN and weighted records: when more than one
target (or CloudFront) answers the domain, ACME's HTTP-01 request lands on any of
them, so the stack proves names by DNS-01 in Route 53 - cert-manager's Route 53
solver on Kubernetes, and the host payload says so for certbot's Route 53 plugin."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gin_deploy.config import (
    DNS_01_ROUTE53,
    HTTP_01,
    ConfigError,
    KubernetesTargetConfig,
    RawValue,
    parse_stack_config,
)
from tests.unit import harness
from tests.unit.harness import ROOT, is_secret, unsecret
from tests.unit.test_edge import (
    DOMAIN,
    PROD,
    EdgeMocks,
    home,  # noqa: F401  (autouse: the prod host target's key file)
    prod_config,
    run,
    target,
)

ROLE = "arn:aws:iam::111122223333:role/hello-gin-cert-manager-dns01"
ISSUER_CREDENTIALS = "hello-gin-gateway-acme-route53"
KEY_ID, KEY = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def parse(config: dict[str, Any], secret: tuple[str, ...] = ()) -> Any:
    raw = {k.split(":", 1)[1]: RawValue(v, k in secret) for k, v in
           {**harness.project_defaults(), **config}.items()}
    return parse_stack_config(raw, project="gin-deploy", stack="prod", project_dir=ROOT)


def problems_of(config: dict[str, Any], secret: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(config, secret)
    return err.value.problems


def with_challenge(config: dict[str, Any], challenge: str | None) -> dict[str, Any]:
    config = copy.deepcopy(config)
    acme = config["gin-deploy:tls"]["acme"]
    if challenge is None:
        acme.pop("challenge", None)
    else:
        acme["challenge"] = challenge
    return config


def alone(name: str, **overrides: Any) -> dict[str, Any]:
    """The prod stack with one target and no edge."""
    config = prod_config(targets=[target(name, **overrides)])
    config.pop("gin-deploy:edge")
    return config


# --- the decision, at parse time -------------------------------------------------------------

def test_the_prod_stack_proves_its_names_by_dns01() -> None:
    cfg = parse(PROD)
    assert cfg.tls.acme.challenge == DNS_01_ROUTE53
    [k8s] = [t for t in cfg.targets if isinstance(t, KubernetesTargetConfig)]
    assert k8s.route53 is not None and k8s.route53.role_arn == ROLE


@pytest.mark.parametrize(("config", "challenge"), [
    # One target alone answers the domain: HTTP-01 reaches it.
    (alone("k8s-eu", route53=None), HTTP_01),
    (alone("edge-sin", weight=1), HTTP_01),
    # Route 53 credentials given: DNS-01.
    (alone("k8s-eu"), DNS_01_ROUTE53),
    # Behind CloudFront, even a single target.
    (prod_config(targets=[target("edge-sin", weight=1)]), DNS_01_ROUTE53),
    # Two targets without a CDN (weighted records).
    (prod_config(cdn=False, cacheablePaths=[], waf=None,
                 targets=[target("aws-use1"), target("edge-sin", weight=1)]), DNS_01_ROUTE53),
])
def test_the_default_challenge_follows_the_stacks_shape(config: dict[str, Any],
                                                        challenge: str) -> None:
    assert parse(config).tls.acme.challenge == challenge


def test_http01_where_several_targets_answer_is_a_config_error() -> None:
    [problem] = problems_of(with_challenge(prod_config(), HTTP_01))
    assert problem.startswith("gin-deploy:tls.acme.challenge: http-01 cannot issue "
                              "'api.example.com' for k8s-eu, edge-sin: CloudFront")
    # Two ECS targets alone get ACM certificates: no ACME client, nothing to refuse.
    config = prod_config(targets=[target("aws-use1"),
                                  target("aws-use1", name="aws-euw1", region="eu-west-1")])
    assert parse(with_challenge(config, HTTP_01)).tls.acme.challenge == HTTP_01


@pytest.mark.parametrize(("config", "secret", "expected"), [
    (prod_config(targets=[target("k8s-eu", route53=None), target("aws-use1")]), (),
     "gin-deploy:targets[0].route53: is required with tls.acme.challenge dns-01-route53"),
    (with_challenge(alone("k8s-eu"), HTTP_01), (),
     "gin-deploy:targets[0].route53: only applies with tls.acme.challenge dns-01-route53"),
    (alone("k8s-eu", route53={"roleArn": "cert-manager"}), (),
     "gin-deploy:targets[0].route53.roleArn: must be an IAM role ARN"),
    (alone("k8s-eu", route53={}), (),
     "gin-deploy:targets[0].route53: set roleArn (a role cert-manager assumes by web identity"),
    (alone("k8s-eu", route53={"accessKeyId": KEY_ID}), (),
     "gin-deploy:targets[0].route53.secretAccessKey: accessKeyId and secretAccessKey go "
     "together"),
    (alone("k8s-eu", route53={"accessKeyId": KEY_ID, "secretAccessKey": KEY}), (),
     "gin-deploy:targets[0].route53.secretAccessKey: must be a secret"),
    (alone("k8s-eu", route53={"roleArn": ROLE, "hostedZoneId": "example.com"}), (),
     "gin-deploy:targets[0].route53.hostedZoneId: must be a Route 53 hosted zone id"),
    (with_challenge(PROD, "dns-01"), (), "gin-deploy:tls.acme.challenge: must be one of"),
])
def test_invalid_dns01_config_fails_naming_the_key(config: dict[str, Any],
                                                   secret: tuple[str, ...],
                                                   expected: str) -> None:
    [problem] = problems_of(config, secret)
    assert problem.startswith(expected), problem


# --- what the targets get ------------------------------------------------------------------

@pytest.fixture(scope="module")
def prod() -> EdgeMocks:
    return run(PROD)


def test_cert_manager_solves_dns01_in_route53_by_web_identity(prod: EdgeMocks) -> None:
    [solver] = prod.input("k8s-eu-cluster-issuer", "spec")["acme"]["solvers"]
    assert solver == {"dns01": {"route53": {"role": ROLE, "auth": {"kubernetes": {
        "serviceAccountRef": {"name": ISSUER_CREDENTIALS, "audiences": ["sts.amazonaws.com"]}}}}}}
    account = prod.named("k8s-eu-route53-service-account").inputs
    assert account["metadata"]["name"] == ISSUER_CREDENTIALS
    assert account["metadata"]["namespace"] == "cert-manager"
    assert account["automountServiceAccountToken"] is False
    [rule] = prod.named("k8s-eu-route53-token-role").inputs["rules"]
    assert rule == {"apiGroups": [""], "resources": ["serviceaccounts/token"],
                    "resourceNames": [ISSUER_CREDENTIALS], "verbs": ["create"]}
    binding = prod.named("k8s-eu-route53-token-binding").inputs
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cert-manager",
                                    "namespace": "cert-manager"}]
    assert binding["roleRef"]["name"] == f"{ISSUER_CREDENTIALS}-token"
    # Every name of the target's certificate: the domain and its own name at the edge.
    assert prod.input("k8s-eu-certificate", "spec")["dnsNames"] == [
        DOMAIN, f"k8s-eu.origin.{DOMAIN}"]


def test_an_access_key_reaches_cert_manager_only_as_a_secret() -> None:
    config = prod_config(targets=[
        target("aws-use1"),
        target("k8s-eu", route53={"accessKeyId": KEY_ID, "secretAccessKey": KEY, "roleArn": ROLE,
                                  "hostedZoneId": "Z0EXAMPLEZONE"})])
    mocks = run(config, secret_keys=("gin-deploy:targets",))
    [solver] = mocks.input("k8s-eu-cluster-issuer", "spec")["acme"]["solvers"]
    assert solver["dns01"]["route53"] == {
        "hostedZoneID": "Z0EXAMPLEZONE", "role": ROLE,
        "accessKeyIDSecretRef": {"name": ISSUER_CREDENTIALS, "key": "access-key-id"},
        "secretAccessKeySecretRef": {"name": ISSUER_CREDENTIALS, "key": "secret-access-key"}}
    secret = mocks.named("k8s-eu-route53-credentials").inputs
    assert secret["metadata"]["namespace"] == "cert-manager"
    assert is_secret(secret["stringData"])
    assert unsecret(secret["stringData"]) == {"access-key-id": KEY_ID,
                                              "secret-access-key": KEY}
    assert [r for r in mocks.resources if "route53-service-account" in r.name] == []
    for resource in mocks.resources:
        for key, value in resource.inputs.items():
            if not is_secret(value):
                assert KEY not in json.dumps(value), (resource.name, key)


def test_the_host_payload_says_which_challenge(prod: EdgeMocks) -> None:
    payload = json.loads(prod.input("edge-sin-deploy", "stdin"))
    assert payload["tls"]["challenge"] == DNS_01_ROUTE53
    assert payload["tls"]["domains"] == [DOMAIN, f"edge-sin.origin.{DOMAIN}"]
    single = run(prod_config(cdn=False, cacheablePaths=[], waf=None,
                             targets=[target("edge-sin", weight=1)]))
    assert json.loads(single.input("edge-sin-deploy", "stdin"))["tls"]["challenge"] == HTTP_01


def test_every_certificate_of_the_prod_stack_would_issue(prod: EdgeMocks) -> None:
    """ECS and CloudFront: ACM, DNS-validated in the zone. Kubernetes and hosts: ACME by
    DNS-01, the one challenge that reaches the zone rather than a random target."""
    cfg = parse(PROD)
    acme_targets = [t for t in cfg.targets if t.acme_certificates]
    assert {t.kind for t in acme_targets} == {"kubernetes", "host"}
    assert cfg.tls.acme.challenge == DNS_01_ROUTE53
    for validation in prod.of_type("aws:acm/certificateValidation:CertificateValidation"):
        assert validation.inputs["validationRecordFqdns"], validation.name
    [solver] = prod.input("k8s-eu-cluster-issuer", "spec")["acme"]["solvers"]
    assert list(solver) == ["dns01"]
    assert json.loads(prod.input("edge-sin-deploy", "stdin"))["tls"]["challenge"] == \
        DNS_01_ROUTE53
