"""EdgeRouting under mocks: the whole prod stack (ecs + kubernetes + host + edge with
CloudFront), each routing mode, the CloudFront settings, the origin lock on every
target kind with its secret kept secret, and the edge config rules."""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.edge.cdn import CACHING_DISABLED_POLICY_ID
from components.edge.origins import CLOUDFRONT_ORIGIN_FACING
from components.edge.routing import by_priority, record_type
from components.endpoint import TargetEndpoint
from gin_deploy import program
from gin_deploy.config import ConfigError, RawValue, parse_stack_config
from tests.unit import harness
from tests.unit.harness import (
    ROOT,
    RecordingMocks,
    Registered,
    is_secret,
    set_config,
    stack_config,
    unsecret,
)
from tests.unit.test_ecs import ALB_ZONE, CALLS, HOSTED_ZONE, MOCK_OUTPUTS

SECRET = "Zq7" * 16   # what the mocked RandomPassword generates (48 letters and digits)
CLOUDFRONT_ZONE = "Z2FDTNDATAQYW2"
CLOUDFRONT_CIDRS = ["130.176.0.0/18", "15.158.0.0/16", "3.172.0.0/18"]
GATEWAY_IP = "203.0.113.80"
DOMAIN = "api.example.com"
ROUTED = f"origin.{DOMAIN}"
CERTIFICATE = "aws:acm/certificate:Certificate"


def own(target: str) -> str:
    return f"{target}.origin.{DOMAIN}"


# --- what the clouds would answer ---------------------------------------------------------

def _gateway_status(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    # A cluster behind an AWS NLB reports a host name; one with IPv6 an IPv6 address.
    address = {"k8s-nlb": "a1b2c3.elb.us-east-1.amazonaws.com",
               "k8s-v6": "2001:db8::80"}.get(args.name.removesuffix("-gateway"), GATEWAY_IP)
    return {"status": {"addresses": [{"type": "IPAddress", "value": address}]}}


def install_mocks() -> None:
    """Ours, over whatever other test modules registered for the same types."""
    harness.OUTPUT_FACTORIES.update(MOCK_OUTPUTS)
    harness.OUTPUT_FACTORIES.update({
        "kubernetes:gateway.networking.k8s.io/v1:Gateway": _gateway_status,
        "random:index/randomPassword:RandomPassword": lambda a: {"result": SECRET},
        "aws:cloudfront/distribution:Distribution": lambda a: {
            "domainName": "d111111abcdef8.cloudfront.net", "hostedZoneId": CLOUDFRONT_ZONE,
            "arn": "arn:aws:cloudfront::123456789012:distribution/EDFDVBD6EXAMPLE"},
        # Auto-named resources: the names the provider would generate.
        "aws:cloudwatch/logDeliverySource:LogDeliverySource": lambda a: {
            "name": f"{a.name}-0a1b2c3",
            "arn": f"arn:aws:logs:us-east-1:123456789012:delivery-source:{a.name}-0a1b2c3"},
        "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination": lambda a: {
            "name": f"{a.name}-0a1b2c3", "arn":
            f"arn:aws:logs:us-east-1:123456789012:delivery-destination:{a.name}-0a1b2c3"},
    })
    harness.CALL_RESULTS.update(CALLS)
    harness.CALL_RESULTS["aws:ec2/getManagedPrefixList:getManagedPrefixList"] = lambda a: {
        "id": "pl-3b927c52", "name": a["name"], "addressFamily": "IPv4", "maxEntries": 55,
        "entries": [{"cidr": c, "description": ""} for c in CLOUDFRONT_CIDRS]}


@dataclass
class EdgeMocks(RecordingMocks):
    """Also records providers, and the stack outputs."""

    providers: dict[str, str | None] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.providers[args.name] = args.provider
        return super().new_resource(args)

    def input(self, name: str, key: str) -> Any:
        return unsecret(self.named(name).inputs[key])


PROD = stack_config("prod")


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The prod host target's key file (privateKeyPath ~/.ssh/gin-deploy-edge)."""
    path = tmp_path_factory.mktemp("home")
    (path / ".ssh").mkdir()
    (path / ".ssh" / "gin-deploy-edge").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(path))
        yield path


def prod_config(*, targets: list[dict[str, Any]] | None = None, **edge: Any) -> dict[str, Any]:
    config = copy.deepcopy(PROD)
    config["gin-deploy:edge"] = {**config["gin-deploy:edge"], **edge}
    if targets is not None:
        config["gin-deploy:targets"] = targets
    return config


def target(prod_name: str, /, **overrides: Any) -> dict[str, Any]:
    """A target of the prod stack file, with some fields changed."""
    [found] = [t for t in PROD["gin-deploy:targets"] if t["name"] == prod_name]
    return {**copy.deepcopy(found), **overrides}


def run(config: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> EdgeMocks:
    """The real program under mocks, with its stack outputs resolved."""
    install_mocks()
    mocks = EdgeMocks()
    pulumi.runtime.set_mocks(mocks, project="gin-deploy", stack="prod", preview=False)
    set_config(config, secret_keys)
    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[Any]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pulumi, "export", exports.__setitem__)
            program.main()
        return pulumi.Output.from_input(exports).apply(mocks.outputs.update)

    evaluate()
    return mocks


@pytest.fixture(scope="module")
def prod() -> EdgeMocks:
    return run(PROD)


@pytest.fixture(scope="module")
def plain() -> EdgeMocks:
    """The prod stack without CloudFront: records for the domain itself, no lock."""
    return run(prod_config(cdn=False, cacheablePaths=[], waf=None))


def edge_resources(mocks: RecordingMocks, typ: str) -> list[Registered]:
    return [r for r in mocks.of_type(typ) if r.name.startswith("hello-gin-edge")]


def routing_records(mocks: RecordingMocks) -> dict[str, dict[str, Any]]:
    return {r.name.removeprefix("hello-gin-edge-").removesuffix("-route"): r.inputs
            for r in edge_resources(mocks, "aws:route53/record:Record")
            if r.name.endswith("-route")}


# --- the whole prod stack -------------------------------------------------------------------

_spec = importlib.util.spec_from_file_location("policy_rules", ROOT / "policy" / "rules.py")
assert _spec and _spec.loader
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)


def test_prod_stack_runs_end_to_end_with_three_targets_and_edge(prod: EdgeMocks) -> None:
    components = sorted((r.typ, r.name) for r in prod.resources
                        if r.typ.startswith("gin-deploy:"))
    assert components == [
        ("gin-deploy:build:GinBuild", "hello-gin"),
        ("gin-deploy:certificate:DnsValidatedCertificate", "aws-use1-cert"),
        ("gin-deploy:certificate:DnsValidatedCertificate", "hello-gin-edge-cert"),
        ("gin-deploy:ecs:EcsTarget", "aws-use1"),
        ("gin-deploy:edge:EdgeOrigins", "hello-gin-edge-origin"),
        ("gin-deploy:edge:EdgeRouting", "hello-gin-edge"),
        ("gin-deploy:host:HostTarget", "edge-sin"),
        ("gin-deploy:kubernetes:KubernetesTarget", "k8s-eu"),
    ]
    urns = [(r.typ, r.name) for r in prod.resources]
    assert len(urns) == len(set(urns)), "duplicate resource names"
    edge = sorted((r.typ, r.name.removeprefix("hello-gin-edge-")) for r in prod.resources
                  if r.name.startswith("hello-gin-edge-"))
    assert edge == sorted([
        ("pulumi:providers:aws", "aws"),
        # Before the targets: their names and the origin lock (its secret, and a
        # provider to look up CloudFront's address ranges).
        ("gin-deploy:edge:EdgeOrigins", "origin"),
        ("random:index/randomPassword:RandomPassword", "origin-verify"),
        ("pulumi:providers:aws", "origin-aws"),
        *((t, f"{n}-{role}") for n in ("aws-use1", "k8s-eu", "edge-sin")
          for t, role in (("aws:route53/record:Record", "origin"),
                          ("aws:route53/healthCheck:HealthCheck", "health"),
                          ("aws:route53/record:Record", "route"))),
        ("gin-deploy:certificate:DnsValidatedCertificate", "cert"),
        ("aws:acm/certificate:Certificate", "cert"),
        # No validation record: aws-use1's certificate writes the one for the domain.
        ("aws:acm/certificateValidation:CertificateValidation", "cert-validation"),
        ("aws:cloudfront/originRequestPolicy:OriginRequestPolicy", "api-requests"),
        ("aws:cloudfront/originRequestPolicy:OriginRequestPolicy", "cacheable-requests"),
        ("aws:cloudfront/cachePolicy:CachePolicy", "cache"),
        ("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy", "security-headers"),
        ("aws:cloudfront/distribution:Distribution", "cdn"),
        ("aws:route53/record:Record", "cdn-a"),
        ("aws:route53/record:Record", "cdn-aaaa"),
        ("aws:cloudwatch/metricAlarm:MetricAlarm", "cdn-cert-expiry"),
        ("aws:wafv2/webAcl:WebAcl", "waf"),
        # Access logs (tests/unit/test_edge_aws.py).
        ("aws:s3/bucket:Bucket", "logs"),
        *(("aws:s3/" + t, f"logs-{role}") for t, role in (
            ("bucketOwnershipControls:BucketOwnershipControls", "ownership"),
            ("bucketPublicAccessBlock:BucketPublicAccessBlock", "public-access"),
            ("bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             "encryption"),
            ("bucketLifecycleConfiguration:BucketLifecycleConfiguration", "lifecycle"),
            ("bucketPolicy:BucketPolicy", "policy"))),
        ("aws:cloudwatch/logDeliverySource:LogDeliverySource", "access-logs"),
        ("aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination",
         "access-logs-destination"),
        ("aws:cloudwatch/logDelivery:LogDelivery", "access-logs-delivery"),
    ])


def test_every_edge_resource_uses_the_us_east_1_provider(prod: EdgeMocks) -> None:
    provider = prod.named("hello-gin-edge-aws")
    assert provider.inputs["region"] == "us-east-1"
    for resource in prod.resources:
        if resource.name.startswith("hello-gin-edge-") and resource.typ.startswith("aws:"):
            assert "::hello-gin-edge-aws::" in str(prod.providers[resource.name]), resource.name
    zone_calls = [a for t, a in prod.calls if t == "aws:route53/getZone:getZone"]
    assert {"name": "example.com", "privateZone": False} in zone_calls
    prefix_calls = [a for t, a in prod.calls
                    if t == "aws:ec2/getManagedPrefixList:getManagedPrefixList"]
    # EdgeOrigins looks up CloudFront's ranges once; the ECS target (its own provider)
    # the prefix lists its load balancer admits (tests/unit/test_ecs.py). The invokes run
    # concurrently, so their order is not fixed.
    expected = [{"name": CLOUDFRONT_ORIGIN_FACING}, {"name": CLOUDFRONT_ORIGIN_FACING},
                {"name": "com.amazonaws.us-east-1.route53-healthchecks"}]
    assert sorted(prefix_calls, key=str) == sorted(expected, key=str)


def test_prod_stack_keeps_every_policy_promise(prod: EdgeMocks) -> None:
    checked = 0
    for resource in prod.resources:
        props = {k: unsecret(v) for k, v in resource.inputs.items()}
        assert rules.violations(resource.typ, props) == [], resource.name
        checked += resource.typ in rules.RULES
    assert checked >= 8   # listeners, security groups, task definition, deploy, distribution


def test_outputs_url_health_checks_and_distribution(prod: EdgeMocks) -> None:
    assert prod.outputs["url"] == f"https://{DOMAIN}"
    assert prod.outputs["healthChecks"] == {
        t: f"hello-gin-edge-{t}-health-id" for t in ("aws-use1", "k8s-eu", "edge-sin")}
    assert prod.outputs["distributionId"] == "hello-gin-edge-cdn-id"
    assert prod.outputs["distributionDomain"] == "d111111abcdef8.cloudfront.net"
    assert set(prod.outputs["endpoints"]) == {"aws-use1", "k8s-eu", "edge-sin"}


def test_without_cdn_there_is_no_distribution_and_no_lock(plain: EdgeMocks) -> None:
    assert "distributionId" not in plain.outputs and plain.outputs["url"] == f"https://{DOMAIN}"
    assert plain.of_type("aws:cloudfront/distribution:Distribution") == []
    assert plain.of_type("random:index/randomPassword:RandomPassword") == []
    assert plain.of_type("aws:lb/listenerRule:ListenerRule") == []
    assert plain.input("aws-use1-https", "defaultActions")[0]["type"] == "forward"
    assert plain.input("aws-use1-alb", "xffHeaderProcessingMode") == "append"
    route = plain.input("k8s-eu-https-route", "spec")
    assert [m for m in route["rules"][0]["matches"] if "headers" in m] == []
    deploy = plain.named("edge-sin-deploy").inputs["stdin"]
    assert not is_secret(deploy)
    site = json.loads(deploy)["nginx"]["site"]
    assert "return 403" not in site and "set_real_ip_from" not in site
    # Health checks and the targets' own names exist with or without the CDN.
    assert len(plain.of_type("aws:route53/healthCheck:HealthCheck")) == 3


# --- records per routing mode ------------------------------------------------------------------

def test_weighted_records_carry_weights_set_ids_and_health_checks(prod: EdgeMocks) -> None:
    records = routing_records(prod)
    assert sorted(records) == ["aws-use1", "edge-sin", "k8s-eu"]
    for name, record in records.items():
        assert record["name"] == ROUTED    # behind the CDN: CloudFront's origin name
        assert (record["type"], record["ttl"]) == ("CNAME", 60)
        assert record["records"] == [own(name)]
        assert record["setIdentifier"] == name
        assert record["healthCheckId"] == f"hello-gin-edge-{name}-health-id"
        assert record["zoneId"] == HOSTED_ZONE
        assert "latencyRoutingPolicies" not in record and "failoverRoutingPolicies" not in record
    weights = {n: r["weightedRoutingPolicies"] for n, r in records.items()}
    assert weights == {"aws-use1": [{"weight": 70}], "k8s-eu": [{"weight": 30}],
                       "edge-sin": [{"weight": 0}]}


def test_weight_zero_target_is_deployed_checked_and_out_of_rotation(prod: EdgeMocks) -> None:
    assert routing_records(prod)["edge-sin"]["weightedRoutingPolicies"] == [{"weight": 0}]
    assert prod.named("hello-gin-edge-edge-sin-health").inputs["fqdn"] == own("edge-sin")
    assert prod.named("hello-gin-edge-edge-sin-origin").inputs["records"] == ["203.0.113.10"]
    assert prod.named("edge-sin-deploy")   # still deployed


def test_without_cdn_the_records_are_for_the_domain_itself(plain: EdgeMocks) -> None:
    records = routing_records(plain)
    assert {r["name"] for r in records.values()} == {DOMAIN}
    assert {r["records"][0] for r in records.values()} == {own(t) for t in records}


def test_latency_records_by_region_skip_targets_out_of_rotation() -> None:
    mocks = run(prod_config(routing="latency"))
    records = routing_records(mocks)
    assert sorted(records) == ["aws-use1", "k8s-eu"]
    assert records["aws-use1"]["latencyRoutingPolicies"] == [{"region": "us-east-1"}]
    assert records["k8s-eu"]["latencyRoutingPolicies"] == [{"region": "eu-west-1"}]
    assert all("weightedRoutingPolicies" not in r for r in records.values())
    assert all(r["setIdentifier"] == n for n, r in records.items())
    # Out of rotation: no record, still its own name and a health check.
    assert mocks.named("hello-gin-edge-edge-sin-health")
    assert mocks.named("hello-gin-edge-edge-sin-origin")


def test_latency_with_the_standby_in_rotation_routes_to_every_region() -> None:
    mocks = run(prod_config(routing="latency", targets=[
        target("aws-use1"), target("k8s-eu"), target("edge-sin", weight=1)]))
    regions = {n: r["latencyRoutingPolicies"][0]["region"]
               for n, r in routing_records(mocks).items()}
    assert regions == {"aws-use1": "us-east-1", "k8s-eu": "eu-west-1",
                       "edge-sin": "ap-southeast-1"}


def test_failover_primary_and_secondary_by_target_order() -> None:
    mocks = run(prod_config(routing="failover", targets=[
        target("k8s-eu"), target("aws-use1"), target("edge-sin")]))
    records = routing_records(mocks)
    roles = {n: r["failoverRoutingPolicies"] for n, r in records.items()}
    assert roles == {"k8s-eu": [{"type": "PRIMARY"}], "aws-use1": [{"type": "SECONDARY"}]}
    assert all(r["healthCheckId"] == f"hello-gin-edge-{n}-health-id"
               for n, r in records.items())
    # The CDN's failover origin is the target DNS would pick next.
    [group] = mocks.input("hello-gin-edge-cdn", "originGroups")
    assert [m["originId"] for m in group["members"]] == ["routed", own("aws-use1")]


def test_priority_weight_then_order() -> None:
    def endpoint(name: str, weight: int) -> TargetEndpoint:
        out = pulumi.Output.from_input("x")
        return TargetEndpoint(name=name, kind="host", url=out, origin_host=out, weight=weight)

    endpoints = [endpoint("a", 10), endpoint("b", 0), endpoint("c", 50), endpoint("d", 10)]
    assert [e.name for e in by_priority("weighted", endpoints)] == ["c", "a", "d"]
    assert [e.name for e in by_priority("failover", endpoints)] == [
        "a", "c", "d"]


# --- each target's own name and health check -----------------------------------------------------

def test_each_target_has_its_own_name_by_its_kind(prod: EdgeMocks) -> None:
    ecs = prod.named("hello-gin-edge-aws-use1-origin").inputs
    assert (ecs["name"], ecs["type"]) == (own("aws-use1"), "A")
    assert ecs["aliases"] == [{"name": "aws-use1-alb-1234567890.us-east-1.elb.amazonaws.com",
                               "zoneId": ALB_ZONE, "evaluateTargetHealth": True}]
    k8s = prod.named("hello-gin-edge-k8s-eu-origin").inputs
    assert (k8s["name"], k8s["type"], k8s["records"], k8s["ttl"]) == (
        own("k8s-eu"), "A", [GATEWAY_IP], 60)
    host = prod.named("hello-gin-edge-edge-sin-origin").inputs
    assert (host["type"], host["records"]) == ("A", ["203.0.113.10"])


def test_host_names_and_ipv6_get_cname_and_aaaa_records() -> None:
    mocks = run(prod_config(targets=[
        target("aws-use1"),
        target("k8s-eu", name="k8s-nlb"),
        target("k8s-eu", name="k8s-v6", weight=0),
        target("edge-sin", host="sin.edge.example.net"),
    ]))
    types = {n: mocks.named(f"hello-gin-edge-{n}-origin").inputs["type"]
             for n in ("k8s-nlb", "k8s-v6", "edge-sin")}
    assert types == {"k8s-nlb": "CNAME", "k8s-v6": "AAAA", "edge-sin": "CNAME"}
    assert mocks.named("hello-gin-edge-edge-sin-origin").inputs["records"] == [
        "sin.edge.example.net"]


@pytest.mark.parametrize(("address", "kind"), [
    ("203.0.113.7", "A"), ("2001:db8::1", "AAAA"), ("lb.example.net", "CNAME")])
def test_record_type_by_address(address: str, kind: str) -> None:
    assert record_type(address) == kind


def test_a_target_without_an_address_fails_clearly() -> None:
    with pytest.raises(ValueError, match="no address"):
        record_type("")


def test_health_checks_are_https_with_sni_on_the_targets_own_names(prod: EdgeMocks) -> None:
    for name in ("aws-use1", "k8s-eu", "edge-sin"):
        check = prod.named(f"hello-gin-edge-{name}-health").inputs
        assert check["type"] == "HTTPS" and check["enableSni"] is True
        assert (check["fqdn"], check["port"], check["resourcePath"]) == (own(name), 443,
                                                                         "/readyz")
        assert (check["requestInterval"], check["failureThreshold"]) == (30, 3)
        assert check["tags"] == {"Name": f"hello-gin-prod-{name}"}


def test_health_check_path_interval_and_threshold_are_configurable() -> None:
    mocks = run(prod_config(healthCheck={"path": "/healthz", "interval": 10,
                                         "failureThreshold": 2}))
    check = mocks.named("hello-gin-edge-k8s-eu-health").inputs
    assert (check["resourcePath"], check["requestInterval"], check["failureThreshold"]) == (
        "/healthz", 10, 2)
    # The lock opens exactly the path the health checks ask for.
    rule = mocks.input("aws-use1-open-path", "conditions")
    assert rule == [{"pathPattern": {"values": ["/healthz"]}}]
    site = json.loads(mocks.input("edge-sin-deploy", "stdin"))["nginx"]["site"]
    assert 'if ($uri = "/healthz")' in site and 'if ($uri = "/readyz")' not in site


def test_targets_answer_and_certify_their_own_names(prod: EdgeMocks) -> None:
    cert = prod.named("aws-use1-cert", CERTIFICATE).inputs
    assert (cert["domainName"], cert["subjectAlternativeNames"]) == (DOMAIN, [own("aws-use1")])
    validations = [r.inputs["name"] for r in prod.of_type("aws:route53/record:Record")
                   if r.name.startswith("aws-use1-cert-validation-")]
    assert sorted(validations) == sorted([f"_abc.{DOMAIN}.", f"_abc.{own('aws-use1')}."])
    assert prod.input("k8s-eu-certificate", "spec")["dnsNames"] == [DOMAIN, own("k8s-eu")]
    listeners = prod.input("k8s-eu-gateway", "spec")["listeners"]
    assert [(li["name"], li["hostname"]) for li in listeners] == [
        ("http", DOMAIN), ("https", DOMAIN), ("http-1", own("k8s-eu")),
        ("https-1", own("k8s-eu"))]
    # Behind the CDN names are proved by DNS-01 (tests/unit/test_dns01.py), the own too.
    [solver] = prod.input("k8s-eu-cluster-issuer", "spec")["acme"]["solvers"]
    assert "selector" not in solver and set(solver) == {"dns01"}
    for route, section in (("k8s-eu-https-route", "https"), ("k8s-eu-redirect-route", "http")):
        spec = prod.input(route, "spec")
        assert spec["hostnames"] == [DOMAIN, own("k8s-eu")]
        assert [p["sectionName"] for p in spec["parentRefs"]] == [section, f"{section}-1"]
    payload = json.loads(prod.input("edge-sin-deploy", "stdin"))
    assert payload["tls"]["domains"] == [DOMAIN, own("edge-sin")]
    assert f"server_name {DOMAIN} localhost {own('edge-sin')};" in payload["nginx"]["site"]


# --- CloudFront ---------------------------------------------------------------------------------

def test_distribution_serves_https_only_with_modern_tls_http3_and_ipv6(prod: EdgeMocks) -> None:
    cdn = prod.named("hello-gin-edge-cdn").inputs
    assert cdn["enabled"] is True and cdn["aliases"] == [DOMAIN]
    assert cdn["viewerCertificate"] == {
        "acmCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/hello-gin-edge-cert",
        "sslSupportMethod": "sni-only", "minimumProtocolVersion": "TLSv1.2_2021"}
    assert cdn["httpVersion"] == "http2and3" and cdn["isIpv6Enabled"] is True
    assert cdn["priceClass"] == "PriceClass_All"
    assert cdn["restrictions"] == {"geoRestriction": {"restrictionType": "none"}}
    behaviors = [cdn["defaultCacheBehavior"], *cdn["orderedCacheBehaviors"]]
    assert {b["viewerProtocolPolicy"] for b in behaviors} == {"redirect-to-https"}
    assert {b["responseHeadersPolicyId"] for b in behaviors} == {
        "hello-gin-edge-security-headers-id"}


def test_certificate_is_issued_in_us_east_1_and_dns_validated(prod: EdgeMocks) -> None:
    cert = prod.named("hello-gin-edge-cert", CERTIFICATE).inputs
    assert (cert["domainName"], cert["validationMethod"]) == (DOMAIN, "DNS")
    # The domain's validation record is aws-use1's certificate's (tests/unit/test_dns_owners.py).
    record = prod.named("aws-use1-cert-validation-0").inputs
    assert (record["name"], record["type"], record["allowOverwrite"]) == (
        f"_abc.{DOMAIN}.", "CNAME", True)
    validation = prod.named("hello-gin-edge-cert-validation").inputs
    assert validation["validationRecordFqdns"] == [f"_abc.{DOMAIN}."]
    assert "::hello-gin-edge-aws::" in str(prod.providers["hello-gin-edge-cert"])


def test_the_api_is_never_cached_and_gets_every_header(prod: EdgeMocks) -> None:
    default = prod.input("hello-gin-edge-cdn", "defaultCacheBehavior")
    assert default["targetOriginId"] == "routed"
    assert default["cachePolicyId"] == CACHING_DISABLED_POLICY_ID
    assert sorted(default["allowedMethods"]) == [
        "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    assert default["originRequestPolicyId"] == "hello-gin-edge-api-requests-id"
    policy = prod.named("hello-gin-edge-api-requests").inputs
    assert policy["headersConfig"] == {"headerBehavior": "allViewerAndWhitelistCloudFront",
                                       "headers": {"items": ["CloudFront-Viewer-Address"]}}
    assert policy["cookiesConfig"] == {"cookieBehavior": "all"}
    assert policy["queryStringsConfig"] == {"queryStringBehavior": "all"}


def test_cacheable_paths_are_opt_in_read_only_and_fail_over(prod: EdgeMocks) -> None:
    [behavior] = prod.input("hello-gin-edge-cdn", "orderedCacheBehaviors")
    assert behavior["pathPattern"] == "/version"
    assert behavior["targetOriginId"] == "failover"
    assert behavior["allowedMethods"] == ["GET", "HEAD", "OPTIONS"]
    assert behavior["cachePolicyId"] == "hello-gin-edge-cache-id"
    assert behavior["originRequestPolicyId"] == "hello-gin-edge-cacheable-requests-id"
    cache = prod.named("hello-gin-edge-cache").inputs
    assert (cache["minTtl"], cache["defaultTtl"], cache["maxTtl"]) == (0, 300, 86400)
    key = cache["parametersInCacheKeyAndForwardedToOrigin"]
    assert key["cookiesConfig"] == {"cookieBehavior": "none"}
    assert key["headersConfig"] == {"headerBehavior": "whitelist",
                                    "headers": {"items": ["Host"]}}
    assert key["queryStringsConfig"] == {"queryStringBehavior": "all"}
    requests = prod.named("hello-gin-edge-cacheable-requests").inputs
    assert requests["cookiesConfig"] == {"cookieBehavior": "none"}
    # The two highest-priority origins: the routing name (weights 70/30/0 across all
    # targets), then the target the weights prefer next.
    [group] = prod.input("hello-gin-edge-cdn", "originGroups")
    assert group["originId"] == "failover"
    assert [m["originId"] for m in group["members"]] == ["routed", own("k8s-eu")]
    assert group["failoverCriteria"] == {"statusCodes": [500, 502, 503, 504]}


def test_without_cacheable_paths_nothing_is_cached_and_there_is_no_group() -> None:
    mocks = run(prod_config(cacheablePaths=[]))
    cdn = mocks.named("hello-gin-edge-cdn").inputs
    assert "orderedCacheBehaviors" not in cdn and "originGroups" not in cdn
    assert [o["originId"] for o in unsecret(cdn["origins"])] == ["routed"]
    assert mocks.of_type("aws:cloudfront/cachePolicy:CachePolicy") == []


def test_origins_are_https_only_and_carry_the_secret_header(prod: EdgeMocks) -> None:
    origins = prod.named("hello-gin-edge-cdn").inputs["origins"]
    assert is_secret(origins)
    by_id = {o["originId"]: o for o in unsecret(origins)}
    assert {i: o["domainName"] for i, o in by_id.items()} == {
        "routed": ROUTED, own("k8s-eu"): own("k8s-eu")}
    for o in by_id.values():
        assert o["customOriginConfig"] == {
            "httpPort": 80, "httpsPort": 443, "originProtocolPolicy": "https-only",
            "originSslProtocols": ["TLSv1.2"], "originReadTimeout": 30,
            "originKeepaliveTimeout": 5, "ipAddressType": "ipv4"}
        assert o["customHeaders"] == [{"name": "X-Origin-Verify", "value": SECRET}]
        assert (o["connectionAttempts"], o["connectionTimeout"]) == (2, 5)


def test_response_headers_policy_sets_hsts_and_security_headers(prod: EdgeMocks) -> None:
    security = prod.named("hello-gin-edge-security-headers").inputs["securityHeadersConfig"]
    assert security["strictTransportSecurity"] == {
        "accessControlMaxAgeSec": 63072000, "includeSubdomains": True, "preload": False,
        "override": True}
    assert security["contentTypeOptions"] == {"override": True}
    assert security["frameOptions"] == {"frameOption": "DENY", "override": True}
    assert security["referrerPolicy"] == {"referrerPolicy": "no-referrer", "override": True}
    assert security["contentSecurityPolicy"] == {
        "contentSecurityPolicy": "default-src 'none'; frame-ancestors 'none'", "override": True}


def test_domain_points_at_cloudfront_over_ipv4_and_ipv6(prod: EdgeMocks) -> None:
    for kind in ("a", "aaaa"):
        record = prod.named(f"hello-gin-edge-cdn-{kind}").inputs
        assert (record["name"], record["type"]) == (DOMAIN, kind.upper())
        assert record["aliases"] == [{"name": "d111111abcdef8.cloudfront.net",
                                      "zoneId": CLOUDFRONT_ZONE, "evaluateTargetHealth": False}]
    # Nothing else claims the domain (the ECS target leaves it to the edge).
    claims = [r.name for r in prod.of_type("aws:route53/record:Record")
              if r.inputs.get("name") == DOMAIN]
    assert sorted(claims) == ["hello-gin-edge-cdn-a", "hello-gin-edge-cdn-aaaa"]


def test_price_class_follows_config() -> None:
    mocks = run(prod_config(priceClass="PriceClass_100"))
    assert mocks.named("hello-gin-edge-cdn").inputs["priceClass"] == "PriceClass_100"


# --- the origin lock and its secret ---------------------------------------------------------------

def _plain_leaks(value: Any, secret: str, path: str = "") -> list[str]:
    """Where `secret` appears in `value` outside a secret wrapper."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _plain_leaks(v, secret, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _plain_leaks(v, secret, f"{path}[{i}]")]
    return [path] if isinstance(value, str) and secret in value else []


def test_the_origin_secret_is_random_and_a_secret_everywhere(prod: EdgeMocks) -> None:
    password = prod.named("hello-gin-edge-origin-verify").inputs
    assert password["length"] == 48 and password["special"] is False
    carriers = []
    for resource in prod.resources:
        assert _plain_leaks(resource.inputs, SECRET) == [], resource.name
        if SECRET in json.dumps(resource.inputs, default=str):
            carriers.append(resource.name)
    # Proof that the scan sees it: exactly these carry it, each wrapped as a secret.
    assert sorted(carriers) == ["aws-use1-origin-verify", "edge-sin-deploy", "hello-gin-edge-cdn",
                                "k8s-eu-https-route"]
    assert _plain_leaks({"x": [SECRET]}, SECRET) == [".x[0]"]
    assert SECRET not in json.dumps(prod.outputs)


def test_alb_answers_403_unless_the_header_or_the_health_path(prod: EdgeMocks) -> None:
    assert prod.input("aws-use1-https", "defaultActions") == [{
        "type": "fixed-response", "fixedResponse": {
            "contentType": "text/plain", "messageBody": "forbidden", "statusCode": "403"}}]
    forward = [{"type": "forward", "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:"
                "123456789012:targetgroup/aws-use1-tg/73e2d6bc24d8a067"}]
    verify = prod.named("aws-use1-origin-verify").inputs
    assert is_secret(verify["conditions"])
    assert unsecret(verify["conditions"]) == [{"httpHeader": {
        "httpHeaderName": "X-Origin-Verify", "values": [SECRET]}}]
    assert (verify["priority"], verify["actions"]) == (20, forward)
    open_path = prod.named("aws-use1-open-path").inputs
    assert open_path["conditions"] == [{"pathPattern": {"values": ["/readyz"]}}]
    assert (open_path["priority"], open_path["actions"]) == (10, forward)
    assert verify["listenerArn"] == open_path["listenerArn"] == (
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/aws-use1-https/1/2")


def test_gateway_route_matches_only_the_header_or_the_health_path(prod: EdgeMocks) -> None:
    spec = prod.named("k8s-eu-https-route").inputs["spec"]
    assert is_secret(spec)
    [rule] = unsecret(spec)["rules"]
    assert rule["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/"},
         "headers": [{"type": "Exact", "name": "X-Origin-Verify", "value": SECRET}]},
        {"path": {"type": "Exact", "value": "/readyz"}},
    ]
    assert [b["name"] for b in rule["backendRefs"]] == ["hello-gin"]


def test_nginx_answers_403_unless_the_header_or_the_health_path(prod: EdgeMocks) -> None:
    deploy = prod.named("edge-sin-deploy").inputs["stdin"]
    assert is_secret(deploy)
    site = json.loads(unsecret(deploy))["nginx"]["site"]
    lock = site[site.index("location / {"):site.index("proxy_pass")]
    assert f'if ($http_x_origin_verify = "{SECRET}")' in lock
    assert 'if ($uri = "/readyz")' in lock
    assert 'return 403;' in lock


def test_a_custom_header_name_reaches_every_kind() -> None:
    mocks = run(prod_config(originVerifyHeader="X-Cdn-Key"))
    cdn = unsecret(mocks.named("hello-gin-edge-cdn").inputs["origins"])
    assert {h["name"] for o in cdn for h in o["customHeaders"]} == {"X-Cdn-Key"}
    rule = mocks.input("aws-use1-origin-verify", "conditions")
    assert rule[0]["httpHeader"]["httpHeaderName"] == "X-Cdn-Key"
    route = mocks.input("k8s-eu-https-route", "spec")
    assert route["rules"][0]["matches"][0]["headers"][0]["name"] == "X-Cdn-Key"
    site = json.loads(mocks.input("edge-sin-deploy", "stdin"))["nginx"]["site"]
    assert "$http_x_cdn_key" in site


# --- the client address through CloudFront ----------------------------------------------------

def test_each_hop_trusts_only_the_hop_before_it(prod: EdgeMocks) -> None:
    # Behind the lock only CloudFront reaches the ALB: it passes CloudFront's
    # X-Forwarded-For on unchanged, and the app trusts the ALB's subnets only.
    assert prod.input("aws-use1-alb", "xffHeaderProcessingMode") == "preserve"
    [container] = json.loads(prod.input("aws-use1-task", "containerDefinitions"))
    env = {e["name"]: e["value"] for e in container["environment"]}
    subnets = {r.name: r.inputs["cidrBlock"] for r in prod.of_type("aws:ec2/subnet:Subnet")}
    alb_subnets = [subnets[f"aws-use1-public-{i}"] for i in range(3)]
    assert env["TRUSTED_PROXIES"].split(",") == alb_subnets
    # nginx (host) and NGINX Gateway Fabric take the address from CloudFront's peers only.
    site = json.loads(prod.input("edge-sin-deploy", "stdin"))["nginx"]["site"]
    assert [line.strip() for line in site.splitlines() if "set_real_ip_from" in line] == [
        f"set_real_ip_from {c};" for c in CLOUDFRONT_CIDRS]
    assert "real_ip_header X-Forwarded-For;" in site
    values = prod.named("k8s-eu-nginx-gateway-fabric").inputs["values"]
    assert values["nginx"]["config"]["rewriteClientIP"] == {
        "mode": "XForwardedFor", "setIPRecursively": True,
        "trustedAddresses": [{"type": "CIDR", "value": c} for c in CLOUDFRONT_CIDRS]}


def test_cloudfront_ranges_join_the_users_own_trusted_proxies() -> None:
    mocks = run(prod_config(targets=[
        target("aws-use1"), target("k8s-eu", trustedProxies=["10.20.0.0/16"]),
        target("edge-sin", trustedProxies=["192.0.2.0/24"])]))
    values = mocks.named("k8s-eu-nginx-gateway-fabric").inputs["values"]
    trusted = [a["value"] for a in values["nginx"]["config"]["rewriteClientIP"][
        "trustedAddresses"]]
    assert trusted == ["10.20.0.0/16", *CLOUDFRONT_CIDRS]
    site = json.loads(mocks.input("edge-sin-deploy", "stdin"))["nginx"]["site"]
    assert "set_real_ip_from 192.0.2.0/24;" in site
    assert f"set_real_ip_from {CLOUDFRONT_CIDRS[0]};" in site


# --- config rules ---------------------------------------------------------------------------------

def parse(config: dict[str, Any]) -> Any:
    raw = {k.split(":", 1)[1]: RawValue(v, False) for k, v in
           {**harness.project_defaults(), **config}.items()}
    return parse_stack_config(raw, project="gin-deploy", stack="prod", project_dir=ROOT)


def problems_of(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(config)
    return err.value.problems


def test_the_prod_stack_file_is_valid() -> None:
    cfg = parse(PROD)
    assert cfg.edge is not None and cfg.edge.cdn and cfg.edge.cacheable_paths == ("/version",)
    assert cfg.edge.origin_verify_header == "X-Origin-Verify"
    assert cfg.edge.health_check.path == "/readyz"


@pytest.mark.parametrize(("edge", "targets", "expected"), [
    # latency routing without regions
    ({"routing": "latency"}, [target("k8s-eu", region=None), target("aws-use1")],
     ["gin-deploy:targets[0].region: is required with edge.routing latency"]),
    # failover with fewer than two targets
    ({"routing": "failover"}, [target("aws-use1")],
     ["gin-deploy:edge.routing: failover needs at least two targets (primary, secondary)"]),
    # failover with three in rotation
    ({"routing": "failover"}, [target("aws-use1"), target("k8s-eu"),
                               target("edge-sin", weight=5)],
     ["gin-deploy:edge.routing: failover pairs exactly two targets in rotation"]),
    # cdn without a Route 53 zone
    ({"zone": None}, None,
     ["gin-deploy:edge.zone: is required for edge routing: the Route 53 hosted zone holding "
      "'api.example.com' (the Route 53 records and health checks, CloudFront's alias"]),
    # all-zero weights
    ({}, [target("aws-use1", weight=0), target("k8s-eu", weight=0), target("edge-sin")],
     ["gin-deploy:targets: all weights are 0"]),
    ({"zone": "other.org"}, None,
     ["gin-deploy:targets[0].hostedZone: 'api.example.com' is not inside the Route 53 zone",
      "gin-deploy:domain: 'api.example.com' is not inside edge.zone 'other.org'"]),
    ({"cdn": True}, [target("edge-sin", weight=1, connection="local", host=None, user=None,
                            hostKey=None, privateKeyPath=None, supervisor="supervisord")],
     ["gin-deploy:targets[0].connection: edge routing needs hosts reachable",
      "gin-deploy:targets[0].httpsPort: 8443: edge routing sends users"]),
    ({}, [target("edge-sin", weight=1, httpsPort=8443)],
     ["gin-deploy:targets[0].httpsPort: 8443: edge routing sends users"]),
    ({}, [target("k8s-eu", waitForAddress=False)],
     ["gin-deploy:targets[0].waitForAddress: must be true with edge routing"]),
    ({}, [target("k8s-eu", trustedProxies=["10.0.0.0/8"], clientIpMode="ProxyProtocol")],
     ["gin-deploy:targets[0].clientIpMode: ProxyProtocol would name CloudFront"]),
    ({}, [target("aws-use1", release={"strategy": "blueGreen"})],
     ["gin-deploy:targets[0].release.strategy: blueGreen cannot be combined with edge.cdn"]),
    ({"cdn": False, "waf": None}, None,
     ["gin-deploy:edge.cacheablePaths: only applies with edge.cdn"]),
    ({"cacheablePaths": ["static/*"]}, None,
     ["gin-deploy:edge.cacheablePaths: must be CloudFront path patterns"]),
    ({"originVerifyHeader": "X-Forwarded-Secret"}, None,
     ["gin-deploy:edge.originVerifyHeader: 'X-Forwarded-Secret' is a header CloudFront"]),
    ({"originVerifyHeader": "X Origin"}, None,
     ["gin-deploy:edge.originVerifyHeader: must be a header name"]),
    ({"healthCheck": {"path": "readyz"}}, None,
     ["gin-deploy:edge.healthCheck.path: must be an absolute URL path"]),
    ({"priceClass": "PriceClass_1"}, None, ["gin-deploy:edge.priceClass: must be one of"]),
])
def test_invalid_edge_config_fails_naming_the_key(
        edge: dict[str, Any], targets: list[dict[str, Any]] | None,
        expected: list[str]) -> None:
    config = prod_config(targets=targets, **edge)
    config["gin-deploy:edge"] = {k: v for k, v in config["gin-deploy:edge"].items()
                                 if v is not None}
    found = problems_of(config)
    assert len(found) == len(expected), found
    for problem, prefix in zip(found, expected, strict=True):
        assert problem.startswith(prefix), problem


def test_the_zone_apex_needs_the_cdn() -> None:
    config = prod_config(cdn=False, cacheablePaths=[], waf=None)
    config["gin-deploy:domain"] = "example.com"
    [problem] = problems_of(config)
    assert problem.startswith("gin-deploy:domain: 'example.com' is the zone apex")
    config = prod_config()
    config["gin-deploy:domain"] = "example.com"
    assert parse(config).domain == "example.com"   # behind CloudFront: an alias at the apex


def test_invalid_edge_config_registers_nothing() -> None:
    install_mocks()
    mocks = EdgeMocks()
    with pytest.raises(ConfigError, match=r"edge\.routing: failover needs"):
        harness.run_program(prod_config(routing="failover", targets=[target("aws-use1")]),
                            stack="prod", mocks=mocks)
    assert mocks.resources == []
