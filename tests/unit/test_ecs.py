"""EcsTarget under mocks: the prod stack's ECS part, asserted on what AWS would receive.

These tests run the real program with the prod stack's config reduced to its ecs
target, plus variants (secrets, blue/green, your own VPC, two regions); the whole
prod stack, and what edge routing asks of this target, is in tests/unit/test_edge.py.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from collections.abc import Callable
from typing import Any

import botocore.loaders
import botocore.model
import botocore.validate
import pulumi
import pytest
from parliament import analyze_policy_string

from gin_deploy import program
from gin_deploy.config import ConfigError
from tests.unit import harness
from tests.unit.harness import (
    RecordingMocks,
    Registered,
    is_secret,
    run_program,
    stack_config,
    unsecret,
)

ACCOUNT = "123456789012"
ALB_ZONE = "Z35SXDOTRQ7X7K"
HOSTED_ZONE = "Z0EXAMPLEZONE"
SECRET = "correct-horse-battery-staple"

# --- what AWS would answer -----------------------------------------------------

_REGIONS: dict[str, str] = {}  # provider resource name -> region


def _region(args: pulumi.runtime.MockResourceArgs) -> str:
    # A provider reference is "<urn>::<id>"; the URN ends in "::<name>".
    if not args.provider:
        return "us-east-1"
    return _REGIONS.get(args.provider.split("::")[-2], "us-east-1")


def _arn(service: str, resource: str, region: str = "") -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def _provider(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    _REGIONS[args.name] = args.inputs.get("region", "us-east-1")
    return {}


def _outputs(make: Any) -> Any:
    def factory(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        return make(args.name, _region(args), args.inputs)
    return factory


def _certificate(name: str, region: str, inputs: dict[str, Any]) -> dict[str, Any]:
    names = [inputs["domainName"], *(inputs.get("subjectAlternativeNames") or [])]
    return {
        "arn": _arn("acm", f"certificate/{name}", region),
        "domainValidationOptions": [{
            "domainName": d,
            "resourceRecordName": f"_abc.{d.removeprefix('*.')}.",
            "resourceRecordType": "CNAME",
            "resourceRecordValue": f"_xyz.{d.removeprefix('*.')}.acm-validations.aws.",
        } for d in names],
    }


def _parameter(name: str, region: str, inputs: dict[str, Any]) -> dict[str, Any]:
    # SSM gives a parameter a new version whenever its value changes.
    value = json.dumps(unsecret(inputs.get("value"))).encode()
    return {"name": name, "arn": _arn("ssm", f"parameter/{name}", region),
            "version": int(hashlib.sha256(value).hexdigest()[:6], 16)}


MOCK_OUTPUTS = {
    "pulumi:providers:aws": _provider,
    "aws:ecr/repository:Repository": _outputs(lambda n, r, i: {
        "arn": _arn("ecr", f"repository/{n}", r), "registryId": ACCOUNT, "name": n,
        "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{r}.amazonaws.com/{n}"}),
    "aws:cloudwatch/logGroup:LogGroup": _outputs(lambda n, r, i: {
        "name": n, "arn": _arn("logs", f"log-group:{n}", r)}),
    "aws:ssm/parameter:Parameter": _outputs(_parameter),
    "aws:iam/role:Role": _outputs(lambda n, r, i: {
        "name": n, "arn": f"arn:aws:iam::{ACCOUNT}:role/{n}"}),
    "aws:lb/loadBalancer:LoadBalancer": _outputs(lambda n, r, i: {
        "arn": _arn("elasticloadbalancing", f"loadbalancer/app/{n}/50dc6c495c0c9188", r),
        "arnSuffix": f"app/{n}/50dc6c495c0c9188",
        "dnsName": f"{n}-1234567890.{r}.elb.amazonaws.com", "zoneId": ALB_ZONE}),
    "aws:lb/targetGroup:TargetGroup": _outputs(lambda n, r, i: {
        "arn": _arn("elasticloadbalancing", f"targetgroup/{n}/73e2d6bc24d8a067", r),
        "arnSuffix": f"targetgroup/{n}/73e2d6bc24d8a067"}),
    "aws:lb/listener:Listener": _outputs(lambda n, r, i: {
        "arn": _arn("elasticloadbalancing", f"listener/app/{n}/1/2", r)}),
    "aws:lb/listenerRule:ListenerRule": _outputs(lambda n, r, i: {
        "arn": _arn("elasticloadbalancing", f"listener-rule/app/{n}/1/2/3", r)}),
    "aws:ecs/cluster:Cluster": _outputs(lambda n, r, i: {
        "name": n, "arn": _arn("ecs", f"cluster/{n}", r)}),
    "aws:ecs/taskDefinition:TaskDefinition": _outputs(lambda n, r, i: {
        "arn": _arn("ecs", f"task-definition/{i['family']}:1", r)}),
    "aws:ecs/service:Service": _outputs(lambda n, r, i: {
        "name": n, "arn": _arn("ecs", f"service/cluster/{n}", r)}),
    "aws:acm/certificate:Certificate": _outputs(_certificate),
    "aws:s3/bucket:Bucket": _outputs(lambda n, r, i: {
        "bucket": f"{n}-0a1b2c3", "arn": f"arn:aws:s3:::{n}-0a1b2c3"}),
    # A CloudFront web ACL lives in us-east-1's "global" scope, an ALB's in its region.
    "aws:wafv2/webAcl:WebAcl": _outputs(lambda n, r, i: {
        "arn": _arn("wafv2", f"global/webacl/{n}/a1b2c3", "us-east-1")
        if i.get("scope") == "CLOUDFRONT" else _arn("wafv2", f"regional/webacl/{n}/a1b2c3d4", r)}),
    "aws:cloudwatch/metricAlarm:MetricAlarm": _outputs(lambda n, r, i: {
        "name": n, "arn": _arn("cloudwatch", f"alarm:{n}", r)}),
    "aws:route53/record:Record": _outputs(lambda n, r, i: {"fqdn": i["name"]}),
}

CALLS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": lambda a: {
        "accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDA",
        "id": ACCOUNT},
    "aws:index/getPartition:getPartition": lambda a: {
        "partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws",
        "id": "aws"},
    "aws:index/getAvailabilityZones:getAvailabilityZones": lambda a: {
        "names": ["zz-mock-1c", "zz-mock-1a", "zz-mock-1b"],
        "zoneIds": ["use1-az3", "use1-az1", "use1-az2"], "id": "azs"},
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": lambda a: {
        "userName": "AWS", "password": "ecr-token", "authorizationToken": "QVdTOmVjci10b2tlbg==",
        "proxyEndpoint": "https://registry", "expiresAt": "2030-01-01T00:00:00Z",
        "registryId": a.get("registryId"), "id": "token"},
    "aws:route53/getZone:getZone": lambda a: {
        "zoneId": HOSTED_ZONE, "name": a["name"], "id": HOSTED_ZONE},
    "aws:ec2/getSubnet:getSubnet": lambda a: {
        "id": a["id"], "cidrBlock": f"10.9.{int(a['id'][-1], 16)}.0/24"},
}
harness.OUTPUT_FACTORIES.update(MOCK_OUTPUTS)
harness.CALL_RESULTS.update(CALLS)


# --- what AWS would accept: botocore's models of the APIs the provider calls ----------

def _model(service: str) -> botocore.model.ServiceModel:
    return botocore.model.ServiceModel(
        botocore.loaders.Loader().load_service_model(service, "service-2"), service)


ECS_MODEL = _model("ecs")
EC2_MODEL = _model("ec2")
CLOUDWATCH_MODEL = _model("cloudwatch")


def validate(model: botocore.model.ServiceModel, operation: str, params: dict[str, Any]) -> None:
    report = botocore.validate.ParamValidator().validate(
        params, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


class ProviderRecordingMocks(RecordingMocks):
    """Also records which provider each resource was registered with."""

    def __init__(self) -> None:
        super().__init__()
        self.providers: dict[str, str | None] = {}
        self.call_providers: list[tuple[str, str | None]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.providers[args.name] = args.provider
        return super().new_resource(args)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.call_providers.append((args.token, args.provider))
        return super().call(args)


# --- configs ----------------------------------------------------------------------

PROD = stack_config("prod")
ECS_PROD = next(t for t in PROD["gin-deploy:targets"] if t["kind"] == "ecs")


def ecs_only(*targets: dict[str, Any], **app: Any) -> dict[str, Any]:
    """The prod stack's config with only ecs targets (default: its own) and no edge."""
    config = copy.deepcopy(PROD)
    config.pop("gin-deploy:edge")
    config["gin-deploy:targets"] = [dict(t) for t in targets] or [dict(ECS_PROD)]
    config["gin-deploy:app"] = {**config["gin-deploy:app"], **app}
    return config


def with_target(**fields: Any) -> dict[str, Any]:
    return ecs_only({**ECS_PROD, **fields})


@pytest.fixture(scope="module")
def prod() -> RecordingMocks:
    return run_program(ecs_only(), stack="prod")


@pytest.fixture(scope="module")
def prod_secret() -> RecordingMocks:
    config = ecs_only(secretEnv=["DB_PASSWORD"])
    config["gin-deploy:DB_PASSWORD"] = SECRET
    return run_program(config, stack="prod", secret_keys=["gin-deploy:DB_PASSWORD"])


CERT_ARN = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/0f1e2d3c"
TASK_POLICY = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"


@pytest.fixture(scope="module")
def variant() -> RecordingMocks:
    """One run with many non-default fields (each test below checks its own)."""
    return run_program(with_target(
        arch="arm64", nat="single", azCount=2, spot=70, certificateArn=CERT_ARN,
        ingressCidrs=["198.51.100.0/24", "2001:db8::/32"], accessLogsBucket="acme-alb-logs",
        taskPolicyArns=[TASK_POLICY], logRetentionDays=90, keepImages=5), stack="prod")


def one(mocks: RecordingMocks, typ: str) -> Registered:
    [resource] = mocks.of_type(typ)
    return resource


def containers(mocks: RecordingMocks) -> list[dict[str, Any]]:
    task = one(mocks, "aws:ecs/taskDefinition:TaskDefinition")
    return json.loads(unsecret(task.inputs["containerDefinitions"]))


# --- registry and image -----------------------------------------------------------


def test_ecr_repository_is_immutable_scanned_and_pruned(prod: RecordingMocks) -> None:
    repo = prod.named("aws-use1-repo")
    assert repo.typ == "aws:ecr/repository:Repository"
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["forceDelete"] is False
    lifecycle = json.loads(prod.named("aws-use1-repo-lifecycle").inputs["policy"])
    [rule] = lifecycle["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan",
                                 "countNumber": 20}
    assert rule["action"] == {"type": "expire"}


def test_image_is_pushed_to_ecr_with_a_secret_token_and_run_by_digest(
        prod: RecordingMocks) -> None:
    [image] = prod.of_type("docker:index/image:Image")
    [push] = prod.of_type("docker:index/registryImage:RegistryImage")
    repo_url = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/aws-use1-repo"
    assert unsecret(push.inputs["name"]).startswith(f"{repo_url}:0.0.0-src.")
    assert unsecret(image.inputs["build"])["platform"] == "linux/amd64"
    [provider] = prod.of_type("pulumi:providers:docker")
    assert is_secret(provider.inputs["registryAuth"])
    [registry] = json.loads(unsecret(provider.inputs["registryAuth"]))
    assert registry["address"] == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    assert (registry["username"], registry["password"]) == ("AWS", "ecr-token")
    token_call = "aws:ecr/getAuthorizationToken:getAuthorizationToken"
    tokens = [a for t, a in prod.calls if t == token_call]
    assert tokens == [{"registryId": ACCOUNT}]
    [container] = containers(prod)
    assert container["image"] == f"{repo_url}@sha256:{'ab' * 32}"


def test_arm64_builds_and_runs_arm64(variant: RecordingMocks) -> None:
    mocks = variant
    [image] = mocks.of_type("docker:index/image:Image")
    assert unsecret(image.inputs["build"])["platform"] == "linux/arm64"
    task = one(mocks, "aws:ecs/taskDefinition:TaskDefinition")
    assert task.inputs["runtimePlatform"] == {"cpuArchitecture": "ARM64",
                                              "operatingSystemFamily": "LINUX"}


# --- network ------------------------------------------------------------------------


def test_vpc_spans_three_azs_with_private_task_subnets_and_a_nat_per_az(
        prod: RecordingMocks) -> None:
    vpc = one(prod, "aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    assert vpc.inputs["enableDnsHostnames"] is True
    subnets = {s.name: s.inputs for s in prod.of_type("aws:ec2/subnet:Subnet")}
    public = [subnets[f"aws-use1-public-{i}"] for i in range(3)]
    private = [subnets[f"aws-use1-private-{i}"] for i in range(3)]
    assert len(subnets) == 6
    assert [s["availabilityZone"] for s in public] == ["zz-mock-1a", "zz-mock-1b", "zz-mock-1c"]
    assert [s["availabilityZone"] for s in private] == [s["availabilityZone"] for s in public]
    nets = [ipaddress.IPv4Network(s["cidrBlock"]) for s in public + private]
    assert all(n.subnet_of(ipaddress.IPv4Network("10.0.0.0/16")) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert all(s["mapPublicIpOnLaunch"] is False for s in public + private)
    # Survive an AZ: each AZ's tasks leave through a NAT gateway in their own AZ.
    nats = {n.name: n.inputs for n in prod.of_type("aws:ec2/natGateway:NatGateway")}
    assert {n: i["subnetId"] for n, i in nats.items()} == {
        f"aws-use1-nat-{i}": f"aws-use1-public-{i}-id" for i in range(3)}
    routes = {r.name: r.inputs for r in prod.of_type("aws:ec2/route:Route")}
    assert routes["aws-use1-public-default"]["gatewayId"] == "aws-use1-igw-id"
    for i in range(3):
        assert routes[f"aws-use1-private-default-{i}"]["natGatewayId"] == f"aws-use1-nat-{i}-id"
    # The default security group is emptied: nothing can fall back to it.
    default_sg = one(prod, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not default_sg.inputs.get("ingress") and not default_sg.inputs.get("egress")
    network = unsecret(one(prod, "aws:ecs/service:Service").inputs["networkConfiguration"])
    assert network["assignPublicIp"] is False
    assert sorted(network["subnets"]) == [f"aws-use1-private-{i}-id" for i in range(3)]


def test_nat_single_is_one_gateway_for_every_private_subnet(variant: RecordingMocks) -> None:
    mocks = variant
    [nat] = mocks.of_type("aws:ec2/natGateway:NatGateway")
    assert nat.inputs["subnetId"] == "aws-use1-public-0-id"
    routes = {r.name: r.inputs for r in mocks.of_type("aws:ec2/route:Route")}
    assert routes["aws-use1-private-default-1"]["natGatewayId"] == "aws-use1-nat-0-id"
    assert len(mocks.of_type("aws:ec2/subnet:Subnet")) == 4


def test_nat_none_runs_public_ip_tasks_in_public_subnets_without_gateways() -> None:
    mocks = run_program(with_target(nat="none"), stack="prod")
    assert mocks.of_type("aws:ec2/natGateway:NatGateway") == []
    assert mocks.of_type("aws:ec2/eip:Eip") == []
    assert mocks.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") == []  # no private route tables
    assert all("public" in s.name for s in mocks.of_type("aws:ec2/subnet:Subnet"))
    network = one(mocks, "aws:ecs/service:Service").inputs["networkConfiguration"]
    assert network["assignPublicIp"] is True
    assert sorted(network["subnets"]) == [f"aws-use1-public-{i}-id" for i in range(3)]


def test_own_vpc_creates_no_network_and_trusts_the_alb_subnets() -> None:
    mocks = run_program(with_target(
        vpcId="vpc-0abc", publicSubnetIds=["subnet-a1", "subnet-a2"],
        privateSubnetIds=["subnet-b1", "subnet-b2"]), stack="prod")
    # Your VPC keeps its own flow logs (flowLogs defaults to false with vpcId).
    for typ in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway",
                "aws:ec2/internetGateway:InternetGateway", "aws:ec2/vpcEndpoint:VpcEndpoint",
                "aws:ec2/flowLog:FlowLog"):
        assert mocks.of_type(typ) == [], typ
    assert one(mocks, "aws:lb/loadBalancer:LoadBalancer").inputs["subnets"] == [
        "subnet-a1", "subnet-a2"]
    assert one(mocks, "aws:lb/targetGroup:TargetGroup").inputs["vpcId"] == "vpc-0abc"
    for sg in mocks.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert sg.inputs["vpcId"] == "vpc-0abc"
    network = one(mocks, "aws:ecs/service:Service").inputs["networkConfiguration"]
    assert network["subnets"] == ["subnet-b1", "subnet-b2"]
    env = {e["name"]: e["value"] for e in containers(mocks)[0]["environment"]}
    assert env["TRUSTED_PROXIES"] == "10.9.1.0/24,10.9.2.0/24"


def test_security_groups_allow_only_world_to_alb_and_alb_to_tasks(prod: RecordingMocks) -> None:
    ingress = prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    egress = prod.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    alb_sg, task_sg = "aws-use1-alb-sg-id", "aws-use1-task-sg-id"
    world = [r.inputs for r in ingress if r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6")]
    assert sorted((r["securityGroupId"], r["fromPort"], r["toPort"], r["cidrIpv4"])
                  for r in world) == [(alb_sg, 80, 80, "0.0.0.0/0"),
                                      (alb_sg, 443, 443, "0.0.0.0/0")]
    [to_tasks] = [r.inputs for r in ingress if r.inputs["securityGroupId"] == task_sg]
    assert to_tasks["referencedSecurityGroupId"] == alb_sg
    assert (to_tasks["fromPort"], to_tasks["toPort"], to_tasks["ipProtocol"]) == (
        8080, 8080, "tcp")
    assert "cidrIpv4" not in to_tasks and "cidrIpv6" not in to_tasks
    [alb_out] = [r.inputs for r in egress if r.inputs["securityGroupId"] == alb_sg]
    assert alb_out["referencedSecurityGroupId"] == task_sg
    assert (alb_out["fromPort"], alb_out["toPort"]) == (8080, 8080)
    # No inline rules on the groups themselves (they would fight the rule resources).
    for sg in prod.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert not sg.inputs.get("ingress") and not sg.inputs.get("egress")


def test_ingress_cidrs_restrict_the_load_balancer(variant: RecordingMocks) -> None:
    mocks = variant
    ingress = [r.inputs for r in mocks.of_type(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == "aws-use1-alb-sg-id"]
    sources = sorted((r["fromPort"], r.get("cidrIpv4") or r.get("cidrIpv6")) for r in ingress)
    assert sources == [(80, "198.51.100.0/24"), (80, "2001:db8::/32"),
                       (443, "198.51.100.0/24"), (443, "2001:db8::/32")]


# --- TLS, load balancer, DNS ------------------------------------------------------------


def test_certificate_is_dns_validated_and_gates_the_https_listener(prod: RecordingMocks) -> None:
    cert = one(prod, "aws:acm/certificate:Certificate")
    assert cert.inputs["domainName"] == "api.example.com"
    assert cert.inputs["validationMethod"] == "DNS"
    record = prod.named("aws-use1-cert-validation-0")
    assert record.inputs["zoneId"] == HOSTED_ZONE
    assert (record.inputs["name"], record.inputs["type"]) == ("_abc.api.example.com.", "CNAME")
    assert record.inputs["records"] == ["_xyz.api.example.com.acm-validations.aws."]
    validation = one(prod, "aws:acm/certificateValidation:CertificateValidation")
    assert validation.inputs["validationRecordFqdns"] == ["_abc.api.example.com."]
    https = prod.named("aws-use1-https")
    assert https.inputs["certificateArn"] == _arn("acm", "certificate/aws-use1-cert",
                                                  "us-east-1")
    zones = [a for t, a in prod.calls if t == "aws:route53/getZone:getZone"]
    assert zones == [{"name": "example.com", "privateZone": False}]


def test_wildcard_san_shares_the_apex_validation_record() -> None:
    mocks = run_program(with_target(sans=["*.api.example.com", "www.example.com"]),
                        stack="prod")
    cert = one(mocks, "aws:acm/certificate:Certificate")
    assert cert.inputs["subjectAlternativeNames"] == ["*.api.example.com", "www.example.com"]
    records = sorted(r.inputs["name"] for r in mocks.of_type("aws:route53/record:Record")
                     if r.name.startswith("aws-use1-cert-validation-"))
    assert records == ["_abc.api.example.com.", "_abc.www.example.com."]


def test_existing_certificate_arn_skips_acm(variant: RecordingMocks) -> None:
    mocks, arn = variant, CERT_ARN
    assert mocks.of_type("aws:acm/certificate:Certificate") == []
    assert mocks.named("aws-use1-https").inputs["certificateArn"] == arn


def test_https_listener_uses_tls13_policy_hsts_and_nosniff(prod: RecordingMocks) -> None:
    https = prod.named("aws-use1-https").inputs
    assert (https["port"], https["protocol"]) == (443, "HTTPS")
    assert https["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
    assert https["routingHttpResponseStrictTransportSecurityHeaderValue"] == \
        "max-age=63072000; includeSubDomains"
    assert https["routingHttpResponseXContentTypeOptionsHeaderValue"] == "nosniff"
    assert https["routingHttpResponseServerEnabled"] is False
    [action] = https["defaultActions"]
    assert action == {"type": "forward", "targetGroupArn": _arn(
        "elasticloadbalancing", "targetgroup/aws-use1-tg/73e2d6bc24d8a067", "us-east-1")}


def test_http_listener_only_redirects_to_https(prod: RecordingMocks) -> None:
    http = prod.named("aws-use1-http").inputs
    assert (http["port"], http["protocol"]) == (80, "HTTP")
    assert http["defaultActions"] == [{"type": "redirect", "redirect": {
        "protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]
    assert len(prod.of_type("aws:lb/listener:Listener")) == 2


def test_load_balancer_drops_invalid_headers_and_appends_xff(prod: RecordingMocks) -> None:
    alb = one(prod, "aws:lb/loadBalancer:LoadBalancer").inputs
    assert alb["loadBalancerType"] == "application" and alb["internal"] is False
    assert alb["dropInvalidHeaderFields"] is True
    assert alb["xffHeaderProcessingMode"] == "append"
    assert alb["enableXffClientPort"] is False
    assert alb["idleTimeout"] == 55  # below the app's IDLE_TIMEOUT (60 s)
    assert alb["securityGroups"] == ["aws-use1-alb-sg-id"]
    assert sorted(alb["subnets"]) == [f"aws-use1-public-{i}-id" for i in range(3)]
    assert alb["enableDeletionProtection"] is True


def test_access_logs_go_to_the_given_bucket(variant: RecordingMocks) -> None:
    mocks = variant
    logs = one(mocks, "aws:lb/loadBalancer:LoadBalancer").inputs["accessLogs"]
    assert logs == {"bucket": "acme-alb-logs", "enabled": True,
                    "prefix": "hello-gin/prod/aws-use1"}
    assert mocks.of_type("aws:s3/bucket:Bucket") == []


def test_target_group_checks_readiness_and_drains_like_the_app(prod: RecordingMocks) -> None:
    tg = one(prod, "aws:lb/targetGroup:TargetGroup").inputs
    assert (tg["targetType"], tg["protocol"], tg["port"]) == ("ip", "HTTP", 8080)
    # The longest request (app.writeTimeout 30 s) plus the drain (app.shutdownTimeout 10 s).
    assert tg["deregistrationDelay"] == 40
    health = tg["healthCheck"]
    assert health["path"] == "/readyz" and health["matcher"] == "200"
    assert (health["healthyThreshold"], health["unhealthyThreshold"]) == (2, 3)
    assert health["interval"] == 10 and health["timeout"] == 5


def test_alias_record_points_the_domain_at_the_alb(prod: RecordingMocks) -> None:
    alias = prod.named("aws-use1-alias").inputs
    assert (alias["name"], alias["type"], alias["zoneId"]) == ("api.example.com", "A",
                                                               HOSTED_ZONE)
    assert alias["aliases"] == [{"name": "aws-use1-alb-1234567890.us-east-1.elb.amazonaws.com",
                                 "zoneId": ALB_ZONE, "evaluateTargetHealth": True}]


# --- task definition -----------------------------------------------------------------------


def register_task_definition_input(task: Registered) -> dict[str, Any]:
    """The RegisterTaskDefinition call the provider makes from the recorded inputs."""
    i = task.inputs
    params = {
        "family": i["family"],
        "containerDefinitions": json.loads(unsecret(i["containerDefinitions"])),
        "cpu": i["cpu"], "memory": i["memory"], "networkMode": i["networkMode"],
        "requiresCompatibilities": i["requiresCompatibilities"],
        "runtimePlatform": i["runtimePlatform"], "executionRoleArn": i["executionRoleArn"],
    }
    if "taskRoleArn" in i:
        params["taskRoleArn"] = i["taskRoleArn"]
    return params


def put_metric_alarm_input(alarm: Registered) -> dict[str, Any]:
    """The PutMetricAlarm call the provider makes from the recorded inputs."""
    i = alarm.inputs
    metrics = []
    for q in i.get("metricQueries", []):
        query: dict[str, Any] = {"Id": q["id"], "ReturnData": q["returnData"]}
        query.update({api: q[key] for key, api in (("expression", "Expression"),
                                                   ("label", "Label")) if key in q})
        if "metric" in q:
            m = q["metric"]
            query["MetricStat"] = {
                "Metric": {"Namespace": m["namespace"], "MetricName": m["metricName"],
                           "Dimensions": [{"Name": k, "Value": v}
                                         for k, v in sorted(m["dimensions"].items())]},
                "Period": int(m["period"]), "Stat": m["stat"]}
        metrics.append(query)
    single: dict[str, Any] = {}
    if "metricName" in i:   # one metric (e.g. ACM's DaysToExpiry), not a query set
        single = {"MetricName": i["metricName"], "Namespace": i["namespace"],
                  "Statistic": i["statistic"], "Period": int(i["period"]),
                  "Dimensions": [{"Name": k, "Value": v}
                                 for k, v in sorted(i.get("dimensions", {}).items())]}
    return {"AlarmName": alarm.name, "AlarmDescription": i["alarmDescription"],
            **({"Metrics": metrics} if metrics else single),
            "ComparisonOperator": i["comparisonOperator"],
            # The engine hands numbers over as floats; the provider sends integers.
            "Threshold": i["threshold"], "EvaluationPeriods": int(i["evaluationPeriods"]),
            **({"DatapointsToAlarm": int(i["datapointsToAlarm"])}
               if "datapointsToAlarm" in i else {}),
            "TreatMissingData": i["treatMissingData"]}


def create_service_input(service: Registered) -> dict[str, Any]:
    """The CreateService call the provider makes from the recorded inputs."""
    i = service.inputs
    network = i["networkConfiguration"]
    config: dict[str, Any] = {
        "deploymentCircuitBreaker": i["deploymentCircuitBreaker"],
        "maximumPercent": int(i["deploymentMaximumPercent"]),
        "minimumHealthyPercent": int(i["deploymentMinimumHealthyPercent"]),
        "alarms": {"alarmNames": i["alarms"]["alarmNames"], "enable": i["alarms"]["enable"],
                   "rollback": i["alarms"]["rollback"]},
        "strategy": i["deploymentConfiguration"]["strategy"],
    }
    d = i["deploymentConfiguration"]
    if "bakeTimeInMinutes" in d:
        config["bakeTimeInMinutes"] = int(d["bakeTimeInMinutes"])
    if "canaryConfiguration" in d:
        c = d["canaryConfiguration"]
        config["canaryConfiguration"] = {
            "canaryPercent": float(c["canaryPercent"]),
            "canaryBakeTimeInMinutes": int(c["canaryBakeTimeInMinutes"])}
    if "linearConfiguration" in d:
        c = d["linearConfiguration"]
        config["linearConfiguration"] = {
            "stepPercent": float(c["stepPercent"]),
            "stepBakeTimeInMinutes": int(c["stepBakeTimeInMinutes"])}
    return {
        "cluster": i["cluster"], "serviceName": service.name,
        "taskDefinition": i["taskDefinition"], "desiredCount": int(i["desiredCount"]),
        "capacityProviderStrategy": [
            {"capacityProvider": c["capacityProvider"], "base": int(c["base"]),
             "weight": int(c["weight"])} for c in i["capacityProviderStrategies"]],
        "platformVersion": i["platformVersion"],
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": network["subnets"], "securityGroups": network["securityGroups"],
            "assignPublicIp": "ENABLED" if network["assignPublicIp"] else "DISABLED"}},
        "loadBalancers": [{**lb, "containerPort": int(lb["containerPort"])}
                          for lb in i["loadBalancers"]],
        "healthCheckGracePeriodSeconds": int(i["healthCheckGracePeriodSeconds"]),
        "deploymentController": i["deploymentController"],
        "deploymentConfiguration": config,
        "availabilityZoneRebalancing": i["availabilityZoneRebalancing"],
        "enableECSManagedTags": i["enableEcsManagedTags"], "propagateTags": i["propagateTags"],
        "enableExecuteCommand": i["enableExecuteCommand"],
    }


def test_task_definition_is_valid_for_the_ecs_api(prod_secret: RecordingMocks) -> None:
    task = one(prod_secret, "aws:ecs/taskDefinition:TaskDefinition")
    params = register_task_definition_input(task)
    shape = ECS_MODEL.operation_model("RegisterTaskDefinition").input_shape
    report = botocore.validate.ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    assert params["family"] == "hello-gin-prod-aws-use1"
    assert (params["cpu"], params["memory"]) == ("256", "512")
    assert params["requiresCompatibilities"] == ["FARGATE"]
    assert params["executionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/aws-use1-execution-role"
    assert "taskRoleArn" not in params  # no task role unless asked


def test_container_is_hardened_and_logs_with_retention(prod: RecordingMocks) -> None:
    [c] = containers(prod)
    assert c["user"] == "65532:65532"
    assert c["readonlyRootFilesystem"] is True and c["privileged"] is False
    assert c["linuxParameters"]["initProcessEnabled"] is True
    assert c["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert c["stopTimeout"] == 45  # writeTimeout 30 + shutdownTimeout 10 + 5
    assert c["portMappings"][0]["containerPort"] == 8080
    log = c["logConfiguration"]
    assert log["logDriver"] == "awslogs"
    assert log["options"]["awslogs-group"] == "aws-use1-logs"
    assert log["options"]["awslogs-region"] == "us-east-1"
    assert prod.named("aws-use1-logs").inputs["retentionInDays"] == 30
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env["PORT"] == "8080" and env["READY_PATH"] == "/readyz"
    assert env["SHUTDOWN_TIMEOUT"] == "10s" and env["LOG_LEVEL"] == "info"
    assert (env["IDLE_TIMEOUT"], env["WRITE_TIMEOUT"]) == ("60s", "30s")
    assert env["TRUSTED_PROXIES"] == "10.0.192.0/22,10.0.196.0/22,10.0.200.0/22"
    assert c["secrets"] == []


def test_secrets_are_ssm_secure_strings_referenced_never_plain(
        prod_secret: RecordingMocks) -> None:
    [param] = prod_secret.of_type("aws:ssm/parameter:Parameter")
    assert param.name == "aws-use1-secret-DB_PASSWORD"
    assert param.inputs["type"] == "SecureString"
    assert is_secret(param.inputs["value"]) and unsecret(param.inputs["value"]) == SECRET
    [c] = containers(prod_secret)
    arn = _arn("ssm", "parameter/aws-use1-secret-DB_PASSWORD", "us-east-1")
    assert c["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": arn}]
    assert "DB_PASSWORD" not in {e["name"] for e in c["environment"]}
    for resource in prod_secret.resources:
        for key, value in resource.inputs.items():
            if not is_secret(value):
                assert SECRET not in json.dumps(value), (resource.name, key)


# --- IAM -------------------------------------------------------------------------------


def parliament_findings(document: str, community: bool = False) -> list[str]:
    policy = analyze_policy_string(document, include_community_auditors=community)
    return [f"{f.issue}: {f.location.get('actions', f.detail)}" for f in policy.findings]


def assert_lints_clean(document: str) -> None:
    """parliament: no findings; its community auditors flag only what ECS itself requires."""
    assert parliament_findings(document) == []
    # ecr:GetAuthorizationToken returns registry credentials: that is what the agent
    # needs it for (an ECS requirement for private ECR images), and it exists only on "*".
    assert parliament_findings(document, community=True) == [
        "CREDENTIALS_EXPOSURE: ['ecr:getauthorizationtoken']"]


def test_execution_role_reads_exactly_its_repo_logs_and_secrets(
        prod_secret: RecordingMocks) -> None:
    document = prod_secret.named("aws-use1-execution-policy").inputs["policy"]
    assert_lints_clean(document)
    statements = json.loads(document)["Statement"]
    resources = {s["Sid"]: s["Resource"] for s in statements}
    assert resources == {
        "EcrAuth": "*",
        "EcrPullThisRepository": _arn("ecr", "repository/aws-use1-repo", "us-east-1"),
        "LogsToThisGroup": _arn("logs", "log-group:aws-use1-logs:log-stream:*", "us-east-1"),
        "ReadTheseParameters": [_arn("ssm", "parameter/aws-use1-secret-DB_PASSWORD",
                                     "us-east-1")],
    }
    [auth] = [s for s in statements if s["Resource"] == "*"]
    assert auth["Action"] == "ecr:GetAuthorizationToken"
    trust = json.loads(prod_secret.named("aws-use1-execution-role").inputs["assumeRolePolicy"])
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    # No managed policy (AmazonECSTaskExecutionRolePolicy grants every repo and log group).
    assert prod_secret.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []


def test_execution_policy_without_secrets_has_no_ssm(prod: RecordingMocks) -> None:
    document = prod.named("aws-use1-execution-policy").inputs["policy"]
    assert_lints_clean(document)
    assert "ssm:" not in document


def test_task_role_only_when_policies_are_given(variant: RecordingMocks) -> None:
    mocks, policy = variant, TASK_POLICY
    role = mocks.named("aws-use1-task-role")
    [attachment] = mocks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs == {"role": "aws-use1-task-role", "policyArn": policy}
    task = one(mocks, "aws:ecs/taskDefinition:TaskDefinition")
    assert task.inputs["taskRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{role.name}"


# --- service and scaling ------------------------------------------------------------------------


def test_service_rolls_safely_with_circuit_breaker_rollback(prod: RecordingMocks) -> None:
    service = one(prod, "aws:ecs/service:Service").inputs
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["deploymentMinimumHealthyPercent"] == 100
    assert service["deploymentMaximumPercent"] == 200
    assert service["deploymentConfiguration"] == {"strategy": "ROLLING"}
    assert service["healthCheckGracePeriodSeconds"] == 30
    assert service["waitForSteadyState"] is True
    assert service["desiredCount"] == 2
    assert service["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "base": 0, "weight": 1}]
    assert service["taskDefinition"] == _arn("ecs", "task-definition/hello-gin-prod-aws-use1:1",
                                             "us-east-1")
    [lb] = service["loadBalancers"]
    assert (lb["containerName"], lb["containerPort"]) == ("hello-gin", 8080)
    assert service["networkConfiguration"]["securityGroups"] == ["aws-use1-task-sg-id"]
    cluster = one(prod, "aws:ecs/cluster:Cluster").inputs
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_retention_and_kept_images_follow_config(variant: RecordingMocks) -> None:
    assert variant.named("aws-use1-logs").inputs["retentionInDays"] == 90
    lifecycle = json.loads(one(variant, "aws:ecr/lifecyclePolicy:LifecyclePolicy")
                           .inputs["policy"])
    assert lifecycle["rules"][0]["selection"]["countNumber"] == 5


def test_spot_mix_keeps_one_task_on_demand(variant: RecordingMocks) -> None:
    mocks = variant
    service = one(mocks, "aws:ecs/service:Service").inputs
    assert service["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 30},
        {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 70}]


def test_autoscaling_tracks_cpu_and_requests_scaling_in_slower(prod: RecordingMocks) -> None:
    target = one(prod, "aws:appautoscaling/target:Target").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 6)
    assert target["resourceId"] == "service/aws-use1-cluster/aws-use1-service"
    policies = {p.name: p.inputs for p in prod.of_type("aws:appautoscaling/policy:Policy")}
    assert sorted(policies) == ["aws-use1-scale-cpu", "aws-use1-scale-requests"]
    for policy in policies.values():
        tracking = policy["targetTrackingScalingPolicyConfiguration"]
        assert policy["policyType"] == "TargetTrackingScaling"
        assert tracking["scaleInCooldown"] > tracking["scaleOutCooldown"]
    cpu = policies["aws-use1-scale-cpu"]["targetTrackingScalingPolicyConfiguration"]
    assert cpu["predefinedMetricSpecification"]["predefinedMetricType"] == \
        "ECSServiceAverageCPUUtilization"
    assert cpu["targetValue"] == 60
    requests = policies["aws-use1-scale-requests"]["targetTrackingScalingPolicyConfiguration"]
    spec = requests["predefinedMetricSpecification"]
    assert spec["predefinedMetricType"] == "ALBRequestCountPerTarget"
    assert spec["resourceLabel"] == ("app/aws-use1-alb/50dc6c495c0c9188/"
                                     "targetgroup/aws-use1-tg/73e2d6bc24d8a067")


@pytest.fixture(scope="module")
def blue_green() -> RecordingMocks:
    return run_program(with_target(release={"strategy": "blueGreen", "bakeSeconds": 900}),
                       stack="prod")


def test_blue_green_uses_native_ecs_strategy_with_bake_time(blue_green: RecordingMocks) -> None:
    mocks = blue_green
    service = one(mocks, "aws:ecs/service:Service").inputs
    assert service["deploymentConfiguration"] == {"strategy": "BLUE_GREEN",
                                                  "bakeTimeInMinutes": "15"}
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    [lb] = service["loadBalancers"]
    advanced = lb["advancedConfiguration"]
    assert advanced["alternateTargetGroupArn"].split("/")[1] == "aws-use1-tg-green"
    assert advanced["productionListenerRule"].split("/")[2] == "aws-use1-https-rule"
    assert advanced["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/aws-use1-ecs-lb-role"
    # Least privilege instead of the managed policy: this rule, listener and pair only.
    assert mocks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    policy = mocks.named("aws-use1-ecs-lb-policy").inputs
    assert policy["role"] == "aws-use1-ecs-lb-role"
    # parliament reports a resource of an action with ALB and NLB forms that matches
    # only one of them; an ALB's rule and listener are `app/` ARNs, never `net/`.
    assert {f.split("'required_format': ")[1].split("/")[1]
            for f in parliament_findings(policy["policy"])} == {"net"}
    assert [f.split(": ")[0] for f in parliament_findings(policy["policy"])] == [
        "RESOURCE_MISMATCH", "RESOURCE_MISMATCH"]
    document = json.loads(policy["policy"])
    resources = {s["Sid"]: s["Resource"] for s in document["Statement"]}
    assert resources["ShiftProductionRule"] == [advanced["productionListenerRule"]]
    assert {r.split("/")[1] for r in resources["MoveTasks"]} == {"aws-use1-tg",
                                                                  "aws-use1-tg-green"}
    assert resources["ProductionListener"][0].split(":")[5].startswith("listener/")
    rule = mocks.named("aws-use1-https-rule").inputs
    weights = [g["weight"] for g in rule["actions"][0]["forward"]["targetGroups"]]
    assert weights == [100, 0]
    # The request-count metric would follow one target group only: CPU scaling remains.
    names = [p.name for p in mocks.of_type("aws:appautoscaling/policy:Policy")]
    assert names == ["aws-use1-scale-cpu"]


# --- outputs and endpoint ---------------------------------------------------------------------


def test_endpoint_and_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import ecs as ecs_module
    from gin_deploy.config import load_stack_config
    from gin_deploy.program import ecs as program_ecs

    created: list[ecs_module.EcsTarget] = []

    class Recorded(ecs_module.EcsTarget):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(program_ecs, "EcsTarget", Recorded)
    seen: dict[str, Any] = {}
    pulumi.runtime.set_mocks(RecordingMocks(), project="gin-deploy", stack="prod",
                             preview=False)
    harness.set_config(ecs_only())

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[Any]:
        cfg = load_stack_config()
        build = program.GinBuild("hello-gin", program.GinBuildArgs(
            app_name="hello-gin", source_dir=cfg.project_dir / "app",
            output_dir=cfg.project_dir / "build", build_binary=False))
        endpoint = program.TARGET_BUILDERS["ecs"](cfg.targets[0], cfg, build)
        assert (endpoint.kind, endpoint.weight, endpoint.region) == ("ecs", 70, "us-east-1")
        [ecs] = created
        keys = ["url", "origin", "zone", "dns", "service", "cluster", "image", "logs"]
        return pulumi.Output.all(
            endpoint.url, endpoint.origin_host, endpoint.alias_zone_id, ecs.alb_dns_name,
            ecs.service_arn, ecs.cluster_arn, ecs.image, ecs.log_group_name,
        ).apply(lambda v: seen.update(zip(keys, v, strict=True)))

    evaluate()
    assert seen["url"] == "https://api.example.com"
    assert seen["origin"] == seen["dns"] == \
        "aws-use1-alb-1234567890.us-east-1.elb.amazonaws.com"
    assert seen["zone"] == ALB_ZONE
    assert seen["service"].endswith(":service/cluster/aws-use1-service")
    assert seen["cluster"].endswith(":cluster/aws-use1-cluster")
    assert seen["image"].endswith(f"/aws-use1-repo@sha256:{'ab' * 32}")
    assert seen["logs"] == "aws-use1-logs"


# --- regions ---------------------------------------------------------------------------------


def test_every_aws_resource_uses_the_targets_own_provider() -> None:
    mocks = ProviderRecordingMocks()
    run_program(ecs_only(), stack="prod", mocks=mocks)
    [provider] = mocks.of_type("pulumi:providers:aws")
    assert provider.name == "aws-use1-aws" and provider.inputs["region"] == "us-east-1"
    aws_resources = [r for r in mocks.resources if r.typ.startswith("aws:")]
    assert len(aws_resources) > 40
    for resource in aws_resources:
        reference = mocks.providers[resource.name]
        assert reference is not None and "::aws-use1-aws::" in reference, resource.name
    invokes = {t: p for t, p in mocks.call_providers if t.startswith("aws:")}
    assert "aws:ecr/getAuthorizationToken:getAuthorizationToken" in invokes
    assert "aws:index/getAvailabilityZones:getAvailabilityZones" in invokes
    for token, reference in invokes.items():
        assert reference is not None and "::aws-use1-aws::" in reference, token


def test_two_regions_two_providers_and_no_name_collisions() -> None:
    # Edge routing owns the name when several targets serve it (its own resources,
    # in us-east-1, are checked in tests/unit/test_edge.py).
    config = ecs_only(
        {**ECS_PROD, "name": "aws-use1", "region": "us-east-1"},
        {**ECS_PROD, "name": "aws-euw1", "region": "eu-west-1", "nat": "none"},
    )
    config["gin-deploy:edge"] = {"routing": "latency", "zone": "example.com"}
    mocks = ProviderRecordingMocks()
    run_program(config, stack="prod", mocks=mocks)
    providers = {p.name: p.inputs["region"] for p in mocks.of_type("pulumi:providers:aws")}
    assert providers == {"aws-use1-aws": "us-east-1", "aws-euw1-aws": "eu-west-1",
                         "hello-gin-edge-aws": "us-east-1"}
    urns = [(r.typ, r.name) for r in mocks.resources]
    assert len(urns) == len(set(urns)), "duplicate resource names"
    for resource in mocks.resources:
        if resource.typ.startswith("aws:") and not resource.name.startswith("hello-gin-edge"):
            prefix = resource.name.split("-", 2)[:2]
            assert mocks.providers[resource.name] is not None
            assert f"::{'-'.join(prefix)}-aws::" in str(mocks.providers[resource.name])
    # Edge owns the domain: no alias records; each region validates its own certificate.
    assert [r.name for r in mocks.of_type("aws:route53/record:Record")
            if not r.name.startswith("hello-gin-edge")
            and not r.name.endswith(tuple(f"-cert-validation-{i}" for i in range(3)))] == []
    assert len(mocks.of_type("aws:acm/certificate:Certificate")) == 2
    families = sorted(t.inputs["family"] for t in mocks.of_type(
        "aws:ecs/taskDefinition:TaskDefinition"))
    assert families == ["hello-gin-prod-aws-euw1", "hello-gin-prod-aws-use1"]
    images = sorted(unsecret(i.inputs["name"]).split(":")[0]
                    for i in mocks.of_type("docker:index/registryImage:RegistryImage"))
    assert images == [f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/aws-euw1-repo",
                      f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/aws-use1-repo"]


# --- config rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"vpcId": "vpc-1", "publicSubnetIds": ["subnet-1"]}, r"publicSubnetIds: with vpcId"),
    ({"vpcId": "vpc-1", "publicSubnetIds": ["subnet-1", "subnet-2"]},
     r"privateSubnetIds: with vpcId"),
    ({"publicSubnetIds": ["subnet-1", "subnet-2"]}, r"publicSubnetIds: only applies with vpcId"),
    ({"vpcCidr": "10.0.0.0/24"}, r"vpcCidr: must be an IPv4 CIDR from /16 to /20"),
    ({"certificateArn": f"arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/x"},
     r"certificateArn: is in eu-west-1"),
    ({"sans": ["www.other.org"]}, r"hostedZone: 'www.other.org' is not inside"),
    ({"desiredCount": 9, "minCount": 2, "maxCount": 6}, r"desiredCount: 9 is outside"),
    ({"nat": "all"}, r"nat: must be one of none \| single \| perAz"),
    ({"logRetentionDays": 10}, r"logRetentionDays: must be one of"),
    ({"accessLogs": False, "accessLogsBucket": "acme-logs"},
     r"accessLogsBucket: only applies with accessLogs: true"),
    ({"wafRateLimit": 5}, r"wafRateLimit: must be >= 10"),
])
def test_invalid_ecs_config_fails_before_any_resource(fields: dict[str, Any],
                                                      message: str) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=message):
        run_program(with_target(**fields), stack="prod", mocks=mocks)
    assert mocks.resources == []


def test_two_ecs_targets_need_edge_to_share_the_domain() -> None:
    config = ecs_only({**ECS_PROD}, {**ECS_PROD, "name": "aws-euw1", "region": "eu-west-1"})
    with pytest.raises(ConfigError, match=r"2 ecs targets would each point 'api.example.com'"):
        run_program(config, stack="prod")


def test_drain_longer_than_fargate_allows_is_refused() -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=r"app.shutdownTimeout: 200s does not fit"):
        run_program(ecs_only(shutdownTimeout=200), stack="prod", mocks=mocks)
    assert [r for r in mocks.resources if r.typ.startswith(("aws:", "gin-deploy:ecs"))] == []


def test_ecs_needs_a_public_domain() -> None:
    config = ecs_only()
    config["gin-deploy:domain"] = "localhost"
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=r"gin-deploy:domain: ecs targets \(targets\[0\]\) "
                                          r"need a public DNS"):
        run_program(config, stack="prod", mocks=mocks)
    assert mocks.resources == []


def test_hosted_zone_can_be_set_explicitly() -> None:
    mocks = run_program(with_target(hostedZone="api.example.com"), stack="prod")
    zones = [a["name"] for t, a in mocks.calls if t == "aws:route53/getZone:getZone"]
    assert zones == ["api.example.com"]
