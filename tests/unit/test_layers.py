"""Components take typed args of their own with concrete values (documented defaults
on the args dataclasses); only gin_deploy.program maps stack config to them. These
tests check that a default stack config maps to exactly the components' own defaults
(so the two sets of defaults cannot drift), and that the components refuse
contradictory args by name. The import layers themselves: test_import_layers.py.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.certificate import ValidationRecords
from components.ecs import (
    EcsContainerArgs,
    EcsLoadBalancerArgs,
    EcsNetworkArgs,
    EcsRelease,
    EcsServiceArgs,
    EcsTargetArgs,
)
from components.edge import AccessLogsArgs, CdnArgs, EdgeOriginsArgs, EdgeRoutingArgs, WafArgs
from components.endpoint import EdgeOrigin, TargetEndpoint
from components.kubernetes import KubernetesTargetArgs
from gin_deploy.config import (
    EcsTargetConfig,
    KubernetesTargetConfig,
    RawValue,
    StackConfig,
    parse_stack_config,
)
from gin_deploy.program.ecs import ecs_target_args
from gin_deploy.program.edge import edge_origins_args, edge_routing_args
from gin_deploy.program.kubernetes import kubernetes_target_args
from gin_deploy.render import flagger
from gin_deploy.render import kubernetes as render
from gin_deploy.render.cert_manager import Route53Solver
from tests.unit.harness import ROOT

DOMAIN = "api.example.com"


# --- a default stack config maps to the components' own defaults ---------------------------

def _config(**raw: Any) -> StackConfig:
    values = {"domain": DOMAIN, **raw}
    return parse_stack_config({k: RawValue(v, False) for k, v in values.items()},
                              project="gin-deploy", stack="test", project_dir=ROOT)


def _push(*_: Any) -> pulumi.Output[str]:
    raise AssertionError("not called: nothing is built here")


def test_default_ecs_config_maps_to_the_components_defaults() -> None:
    cfg = _config(targets=[{"name": "aws", "kind": "ecs", "region": "us-east-1"}])
    [target] = cfg.targets
    assert isinstance(target, EcsTargetConfig)
    mapped = ecs_target_args(target, cfg, _push)
    assert mapped == EcsTargetArgs(
        region="us-east-1", domain=DOMAIN, zone_name="example.com", stack="test",
        container=EcsContainerArgs(name="hello-gin"), push_image=_push)


def test_default_kubernetes_config_maps_to_the_components_defaults() -> None:
    # Two replicas by default: a canary release, which Flagger runs with the defaults.
    cfg = _config(targets=[{"name": "k8s", "kind": "kubernetes", "context": "prod",
                            "prometheusUrl": "http://prometheus:9090",
                            "registry": {"server": "ghcr.io/acme/hello-gin"}}])
    [target] = cfg.targets
    assert isinstance(target, KubernetesTargetConfig)
    mapped = kubernetes_target_args(target, cfg, image="img", version="1.0.0")
    assert mapped == KubernetesTargetArgs(
        app=render.KubernetesApp(name="hello-gin", namespace="hello-gin",
                                 gateway_namespace="hello-gin-gateway", domain=DOMAIN,
                                 version="1.0.0"),
        image="img", registry="ghcr.io/acme/hello-gin", context="prod",
        analysis=flagger.Analysis(steps=(10, 50, 100), bake_seconds=60, max_error_rate=0.01,
                                  max_p95_ms=500, min_requests=100,
                                  prometheus_url="http://prometheus:9090"))


def test_default_edge_config_maps_to_the_components_defaults() -> None:
    # Behind the CDN an ecs target deploys rolling (test_ecs_release.py).
    targets = [{"name": "aws", "kind": "ecs", "region": "us-east-1",
                "release": {"strategy": "rolling"}}]
    cfg = _config(targets=targets, edge={"zone": "example.com", "cdn": True})
    assert cfg.edge is not None
    names = {"aws": f"aws.origin.{DOMAIN}"}
    assert edge_origins_args(cfg, cfg.edge) == EdgeOriginsArgs(
        names=names, app="hello-gin", stack="test", cdn=True)
    url = pulumi.Output.from_input("x")
    endpoints = (TargetEndpoint(name="aws", kind="ecs", url=url, origin_host=url, weight=1),)
    assert edge_routing_args(cfg, cfg.edge, endpoints, "secret") == EdgeRoutingArgs(
        domain=DOMAIN, zone="example.com", endpoints=endpoints, origin_names=names,
        app="hello-gin", project="gin-deploy", stack="test",
        cdn=CdnArgs(routed_name=f"origin.{DOMAIN}", verify_header="X-Origin-Verify",
                    verify_value="secret"))


# --- contradictory args fail by name, before any resource ------------------------------

def _endpoint(name: str, weight: int = 1, region: str | None = None) -> TargetEndpoint:
    url = pulumi.Output.from_input("x")
    return TargetEndpoint(name=name, kind="host", url=url, origin_host=url, weight=weight,
                          region=region)


def _routing(**overrides: Any) -> EdgeRoutingArgs:
    values: dict[str, Any] = {
        "domain": DOMAIN, "zone": "example.com", "endpoints": (_endpoint("a"),),
        "origin_names": {"a": f"a.origin.{DOMAIN}"}, "app": "app", "project": "p",
        "stack": "s", **overrides}
    return EdgeRoutingArgs(**values)


LOCKED = EdgeOrigin(names=("a.origin.x",), verify_header="X-Origin-Verify", verify_value="s")


@pytest.mark.parametrize(("build", "message"), [
    (lambda: EcsNetworkArgs(nat="some"), "nat must be one of"),
    (lambda: EcsNetworkArgs(vpc_id="vpc-1", public_subnet_ids=("subnet-1",)),
     "public_subnet_ids: with vpc_id, at least two"),
    (lambda: EcsNetworkArgs(vpc_id="vpc-1", public_subnet_ids=("subnet-1", "subnet-2")),
     "private_subnet_ids: with vpc_id"),
    (lambda: EcsServiceArgs(desired_count=5), r"desired_count 5 must lie within min_count"),
    (lambda: EcsServiceArgs(arch="riscv"), "arch must be one of"),
    (lambda: EcsLoadBalancerArgs(access_logs=False, access_logs_bucket="logs"),
     "access_logs_bucket: only applies with access_logs"),
    (lambda: EcsTargetArgs(region="us-east-1", domain=DOMAIN, zone_name="example.com",
                           stack="s", container=EcsContainerArgs(name="app"),
                           push_image=_push, load_balancer=EcsLoadBalancerArgs(waf=True),
                           edge=LOCKED),
     "load_balancer.waf cannot be combined with a locked edge origin"),
    (lambda: EcsContainerArgs(name="app", secret_env={"A": "x"}, secret_arns={"A": "arn"}),
     r"secret_arns: \['A'\] are also in secret_env"),
    (lambda: EcsContainerArgs(name="app", kms_key_arns=("arn:aws:kms:x",)),
     "kms_key_arns: only applies with secret_arns"),
    (lambda: EcsTargetArgs(region="", domain=DOMAIN, zone_name="example.com", stack="s",
                           container=EcsContainerArgs(name="app"), push_image=_push),
     "region is required"),
    (lambda: EcsTargetArgs(region="us-east-1", domain=DOMAIN, zone_name="example.com",
                           stack="s", container=EcsContainerArgs(name="app"),
                           push_image=_push,
                           service=EcsServiceArgs(release=EcsRelease(strategy="blueGreen")),
                           edge=LOCKED),
     "service.release.strategy blueGreen cannot be combined with a locked edge origin"),
    (lambda: EcsRelease(steps=(10, 50, 100)), r"release.steps: \[10, 50, 100\] has no ECS"),
    (lambda: EcsTargetArgs(region="us-east-1", domain=DOMAIN, zone_name="example.com",
                           stack="s", container=EcsContainerArgs(name="app"),
                           push_image=_push, network=EcsNetworkArgs(ingress_cidrs=("10.0.0.0/8",)),
                           edge=LOCKED),
     "network.ingress_cidrs cannot be combined with a locked edge origin"),
    (lambda: _routing(routing="random"), "routing must be one of"),
    (lambda: _routing(origin_names={}), "origin_names: no name for target"),
    (lambda: _routing(endpoints=(_endpoint("a", weight=0),)), "at least one target needs"),
    (lambda: _routing(routing="latency"), "latency routing needs a region for a"),
    (lambda: CdnArgs(routed_name="o", verify_header="h", verify_value="v", price_class="x"),
     "price_class must be one of"),
    (lambda: EdgeOriginsArgs(names={}, app="app", stack="s"), "names: at least one target"),
    (lambda: KubernetesTargetArgs(app=render.KubernetesApp("a", "a", "a-gw", DOMAIN, "1"),
                                  image="i", registry=""), "registry is required"),
    (lambda: KubernetesTargetArgs(app=render.KubernetesApp("a", "a", "a-gw", DOMAIN, "1"),
                                  image="i", registry="r", client_ip_mode="Magic"),
     "client_ip_mode must be one of"),
    (lambda: KubernetesTargetArgs(app=render.KubernetesApp("a", "a", "a-gw", DOMAIN, "1"),
                                  image="i", registry="r",
                                  edge=EdgeOrigin(names=("a.origin.x",), verify_value="s")),
     "edge: a locked origin needs verify_header"),
    (lambda: KubernetesTargetArgs(app=render.KubernetesApp("a", "a", "a-gw", DOMAIN, "1"),
                                  image="i", registry="r", acme=render.Acme(
                                      "ops@example.com", "https://acme.example",
                                      route53=Route53Solver(access_key_id="AKIAEXAMPLE0000"))),
     "route53_secret_access_key: required with acme.route53's access key"),
    (lambda: WafArgs(rate_limit=5), "rate_limit must be >= 10"),
    (lambda: WafArgs(action="allow"), "action must be one of"),
    (lambda: AccessLogsArgs(retention_days=0), "retention_days must be >= 1"),
    (lambda: AccessLogsArgs(output_format="csv"), "output_format must be one of"),
    (lambda: ValidationRecords().in_zone(""), "zone: the hosted zone's name is required"),
])
def test_contradictory_component_args_fail_naming_the_argument(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
