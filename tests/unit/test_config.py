"""Each config rule, proven by input that only that rule rejects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.config import (
    FARGATE_SIZES,
    ConfigError,
    HostTargetConfig,
    RawValue,
    parse_stack_config,
)
from tests.unit.harness import HOST_KEY, ROOT, RecordingMocks, run_program, stack_config

HOST = {"name": "local", "kind": "host"}
ECS = {"name": "aws", "kind": "ecs", "region": "us-east-1", "cpu": 256, "memory": 512}
K8S = {"name": "k8s", "kind": "kubernetes", "context": "prod",
       "prometheusUrl": "http://prometheus.monitoring:9090",
       "registry": {"server": "ghcr.io/acme/hello-gin"}}
# ecs targets need a public name (an ACM certificate, a Route 53 record).
PUBLIC = {"domain": "api.example.com"}


def parse(config: dict[str, Any], secret: tuple[str, ...] = ()) -> Any:
    raw = {k: RawValue(v, k in secret) for k, v in config.items()}
    return parse_stack_config(raw, project="gin-deploy", stack="test", project_dir=ROOT)


def problems(config: dict[str, Any], secret: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(config, secret)
    return err.value.problems


def only_problem(config: dict[str, Any], secret: tuple[str, ...] = ()) -> str:
    found = problems(config, secret)
    assert len(found) == 1, found
    return found[0]


def test_minimal_host_config_is_valid_with_documented_defaults() -> None:
    cfg = parse({"targets": [HOST]})
    target = cfg.targets[0]
    assert isinstance(target, HostTargetConfig)
    assert (target.mode, target.http_port, target.https_port) == (
        "user", 8080, 8443)
    assert target.instance_ports == (9080, 9081)
    assert cfg.app.ready_path == "/readyz" and cfg.domain == "localhost"
    assert cfg.tls.mode == "self-signed"


@pytest.mark.parametrize("targets", [None, []])
def test_targets_are_required(targets: Any) -> None:
    config = {} if targets is None else {"targets": targets}
    assert only_problem(config).startswith("gin-deploy:targets: at least one target")


def test_duplicate_target_names() -> None:
    msg = only_problem({"targets": [HOST, {**HOST, "basePort": 9500}]})
    assert msg.startswith("gin-deploy:targets[1].name: duplicate target name 'local'")


def test_unknown_kind() -> None:
    msg = only_problem({"targets": [HOST, {"name": "x", "kind": "vm"}]})
    assert msg == "gin-deploy:targets[1].kind: must be one of host | ecs | kubernetes, got 'vm'"


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"targets": [{**HOST, "instnaces": 3}]}, "gin-deploy:targets[0].instnaces"),
        ({"targets": [HOST], "app": {"prot": 80}}, "gin-deploy:app.prot"),
        ({"targets": [HOST], "tls": {"hsts": {"maxage": 1}}}, "gin-deploy:tls.hsts.maxage"),
        ({"targets": [HOST], "taregts": []}, "gin-deploy:taregts"),
    ],
)
def test_unknown_keys_are_not_ignored(config: dict[str, Any], path: str) -> None:
    msg = only_problem(config)
    assert msg.startswith(f"{path}: unknown key")


@pytest.mark.parametrize(
    ("config", "path", "text"),
    [
        ({"targets": [HOST], "app": {"port": 0}}, "gin-deploy:app.port", "must be >= 1"),
        ({"targets": [HOST], "app": {"port": 65536}}, "gin-deploy:app.port", "must be <= 65535"),
        ({"targets": [HOST], "app": {"port": "http"}}, "gin-deploy:app.port", "an integer"),
        ({"targets": [{**HOST, "basePort": 80}]}, "gin-deploy:targets[0].basePort", ">= 1024"),
        ({"targets": [{**HOST, "httpsPort": 443}]}, "gin-deploy:targets[0].httpsPort",
         "443 needs root"),
        ({"targets": [{**HOST, "httpPort": 9081}]}, "gin-deploy:targets[0].httpPort",
         "collides with the instance ports"),
        ({"targets": [{**HOST, "httpPort": 8443}]}, "gin-deploy:targets[0].httpsPort",
         "must differ from httpPort"),
    ],
)
def test_invalid_ports(config: dict[str, Any], path: str, text: str) -> None:
    msg = only_problem(config)
    assert msg.startswith(path) and text in msg, msg


@pytest.mark.parametrize("key", ["healthPath", "readyPath"])
def test_health_paths_must_be_absolute(key: str) -> None:
    msg = only_problem({"targets": [HOST], "app": {key: "readyz"}})
    assert msg.startswith(f"gin-deploy:app.{key}: must be an absolute URL path")


@pytest.mark.parametrize(("cpu", "memory"), [(256, 4096), (512, 512), (1024, 1024), (4096, 31744)])
def test_fargate_cpu_memory_pairs_aws_rejects(cpu: int, memory: int) -> None:
    msg = only_problem({**PUBLIC, "targets": [{**ECS, "cpu": cpu, "memory": memory}]})
    assert msg.startswith(f"gin-deploy:targets[0].memory: {memory} MiB is not a Fargate size")


@pytest.mark.parametrize(
    ("cpu", "memory"), [(256, 512), (256, 2048), (4096, 30720), (16384, 122880)])
def test_fargate_pairs_aws_accepts(cpu: int, memory: int) -> None:
    cfg = parse({**PUBLIC, "targets": [{**ECS, "cpu": cpu, "memory": memory}]})
    assert cfg.targets[0].memory == memory


def test_fargate_table_matches_aws_documentation() -> None:
    # Spot checks of AWS's published table: counts per CPU size.
    assert {cpu: len(mem) for cpu, mem in FARGATE_SIZES.items()} == {
        256: 3, 512: 4, 1024: 7, 2048: 13, 4096: 23, 8192: 12, 16384: 12}


def test_fargate_cpu_must_be_a_fargate_size() -> None:
    msg = problems({**PUBLIC, "targets": [{**ECS, "cpu": 300}]})[0]
    assert msg.startswith("gin-deploy:targets[0].cpu: must be one of 256 | 512")


def test_negative_weight() -> None:
    msg = only_problem({"targets": [HOST, {**K8S, "weight": -1}]})
    assert msg == "gin-deploy:targets[1].weight: must be >= 0, got -1"


def test_all_zero_weights() -> None:
    msg = only_problem({"targets": [{**HOST, "weight": 0}, {**K8S, "weight": 0}]})
    assert msg.startswith("gin-deploy:targets: all weights are 0")


def test_some_zero_weights_are_fine() -> None:
    assert [t.weight for t in parse({"targets": [{**HOST, "weight": 0}, K8S]}).targets] == [0, 1]


@pytest.mark.parametrize("weight", [-1, 101])
def test_canary_weight_outside_0_to_100(weight: int) -> None:
    msg = only_problem({"targets": [{**K8S, "canary": {"version": "v2", "weight": weight}}]})
    assert msg.startswith("gin-deploy:targets[0].canary.weight: must be")


def test_canary_weight_bounds_accepted() -> None:
    for weight in (0, 100):
        cfg = parse({"targets": [{**K8S, "canary": {"version": "v2", "weight": weight},
                                  "release": {"strategy": "rolling"}}]})
        assert cfg.targets[0].canary.weight == weight


@pytest.mark.parametrize(
    "server",
    ["http://acme.example.com/directory", "ftp://acme.example.com/", "acme.example.com"],
)
def test_acme_server_must_be_https_outside_localhost(server: str) -> None:
    msg = only_problem({"targets": [HOST], "tls": {"acme": {"email": "a@b.io", "server": server}}})
    assert msg.startswith("gin-deploy:tls.acme.server: must be an https:// ACME directory URL")


@pytest.mark.parametrize(
    "server", ["https://acme-staging-v02.api.letsencrypt.org/directory",
               "http://localhost:14000/dir", "https://127.0.0.1:14000/dir"],
)
def test_acme_servers_accepted(server: str) -> None:
    cfg = parse({"targets": [HOST], "tls": {"acme": {"email": "a@b.io", "server": server}}})
    assert cfg.tls.mode == "acme"


@pytest.mark.parametrize("domain", ["bad_domain", "-a.example.com", "a..example.com",
                                    "example.com.", "x" * 64 + ".com", "ex ample.com"])
def test_domain_must_be_a_dns_name(domain: str) -> None:
    msg = only_problem({"targets": [HOST], "domain": domain})
    assert msg.startswith("gin-deploy:domain: must be a valid DNS name")


SSH = {"name": "edge", "kind": "host", "connection": "ssh", "host": "203.0.113.10",
       "user": "deploy", "hostKey": HOST_KEY, "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"}


def test_ssh_private_key_given_in_plain_text_is_rejected() -> None:
    msg = only_problem({"targets": [SSH]})
    assert msg.startswith("gin-deploy:targets[0].privateKey: must be a secret")
    assert "pulumi config set --secret --path 'targets[0].privateKey'" in msg


def test_ssh_private_key_stored_as_secret_is_accepted() -> None:
    assert parse({"targets": [SSH]}, secret=("targets",)).targets[0].private_key


def test_kubeconfig_given_in_plain_text_is_rejected() -> None:
    target = {**K8S, "context": None, "kubeconfig": "apiVersion: v1"}
    msg = only_problem({"targets": [target]})
    assert msg.startswith("gin-deploy:targets[0].kubeconfig: must be a secret")


def test_secret_env_must_be_stored_encrypted() -> None:
    config = {"targets": [HOST], "app": {"secretEnv": ["DB_PASSWORD"]}, "DB_PASSWORD": "hunter2"}
    msg = only_problem(config)
    assert msg.startswith("gin-deploy:app.secretEnv[0]: config key 'gin-deploy:DB_PASSWORD' is "
                          "stored in plain text")
    cfg = parse(config, secret=("DB_PASSWORD",))
    assert cfg.secret_env == {"DB_PASSWORD": "hunter2"}
    assert "hunter2" not in repr(cfg)


def test_secret_env_must_exist() -> None:
    msg = only_problem({"targets": [HOST], "app": {"secretEnv": ["API_TOKEN"]}})
    assert "'gin-deploy:API_TOKEN' is not set" in msg


def test_ssh_needs_host_user_and_key() -> None:
    found = problems({"targets": [{"name": "e", "kind": "host", "connection": "ssh"}]})
    assert [p.split(":")[1].split(" ")[0] for p in found] == [
        "targets[0].host", "targets[0].user", "targets[0].privateKey"]


def test_kubernetes_targets_need_a_registry() -> None:
    target = {k: v for k, v in K8S.items() if k != "registry"}
    msg = only_problem({"targets": [target]})
    assert msg.startswith("gin-deploy:targets[0].registry: is required for kubernetes targets")


def test_ecs_drain_and_longest_request_must_fit_fargates_stop_timeout() -> None:
    # The stop timeout covers a request that arrived just before SIGTERM, then the drain.
    msg = only_problem({**PUBLIC, "app": {"shutdownTimeout": 86}, "targets": [ECS]})
    assert msg.startswith("gin-deploy:app.shutdownTimeout: 86s does not fit Fargate's")
    assert "app.writeTimeout (30s" in msg
    assert parse({**PUBLIC, "app": {"shutdownTimeout": 85}, "targets": [ECS]})
    msg = only_problem({**PUBLIC, "app": {"writeTimeout": 50, "shutdownTimeout": 66},
                        "targets": [ECS]})
    assert msg.startswith("gin-deploy:app.shutdownTimeout: 66s does not fit")


def test_reserved_env_names() -> None:
    msg = only_problem({"targets": [HOST], "app": {"env": {"PORT": "1"}}})
    assert msg.startswith("gin-deploy:app.env: ['PORT'] are set by gin-deploy")


def test_source_must_hold_a_go_module(tmp_path: Path) -> None:
    msg = only_problem({"targets": [HOST], "app": {"source": "docs"}})
    assert msg.startswith("gin-deploy:app.source: 'docs' has no go.mod")


def test_every_problem_is_reported_at_once() -> None:
    config = {
        "app": {"port": 0, "healthPath": "x"},
        "domain": "bad_domain",
        "targets": [{**ECS, "memory": 4096, "weight": 0}, {**K8S, "weight": 0}, {"kind": "vm"}],
    }
    found = problems(config)
    assert [p.split(": ")[0] for p in found] == [
        "gin-deploy:app.port", "gin-deploy:app.healthPath", "gin-deploy:domain",
        "gin-deploy:targets[0].memory", "gin-deploy:targets[2].kind", "gin-deploy:targets",
        "gin-deploy:domain"]


def test_edge_rules() -> None:
    # More edge rules (and these through the program): tests/unit/test_edge.py.
    base: dict[str, Any] = {"domain": "api.example.com", "targets": [K8S]}
    msg = only_problem({**base, "edge": {"cdn": True}})
    assert msg.startswith("gin-deploy:edge.zone: is required")
    msg = only_problem({**base, "edge": {"zone": "example.com", "routing": "latency"}})
    assert msg.startswith("gin-deploy:targets[0].region: is required with edge.routing latency")
    msg = only_problem({**base, "edge": {"zone": "example.com", "routing": "failover"}})
    assert msg.startswith("gin-deploy:edge.routing: failover needs at least two targets")
    msg = only_problem({**base, "edge": {"zone": "other.org"}})
    assert msg.startswith("gin-deploy:domain: 'api.example.com' is not inside edge.zone")


# --- each section's own rules, one input per rule ----------------------------------

LONG_NS = "n" * 56  # a valid namespace whose default gateway namespace would not be
# A valid domain whose targets' own names at the edge (<target>.origin.<domain>) are too long.
LONG_DOMAIN = ".".join(["a" * 63] * 3) + "." + "b" * 50 + ".com"
KEY_FILE = str(ROOT / "Pulumi.yaml")  # any file that exists


@pytest.mark.parametrize(
    ("config", "secret", "expected"),
    [
        ({"app": {"secretEnv": ["DB"], "env": {"DB": "x"}}, "DB": "v"}, ("DB",),
         "gin-deploy:app.secretEnv[0]: 'DB' is also a plain env var in app.env"),
        ({"tls": {"mode": "acme"}}, (),
         "gin-deploy:tls.acme: is required when tls.mode is acme"),
        ({"tls": {"acme": {"email": "a@b.io", "caBundle": "no-such.pem"}}}, (),
         "gin-deploy:tls.acme.caBundle: file 'no-such.pem' does not exist"),
        ({"targets": [{**HOST, "host": "203.0.113.10"}]}, (),
         "gin-deploy:targets[0].host: only applies to connection: ssh"),
        ({"targets": [{**SSH, "privateKeyPath": KEY_FILE}]}, ("targets",),
         "gin-deploy:targets[0]: set only one of privateKey, privateKeyPath"),
        ({"targets": [{**SSH, "privateKey": None, "privateKeyPath": "no-such-key"}]}, (),
         "gin-deploy:targets[0].privateKeyPath: file 'no-such-key' does not exist"),
        ({"targets": [{**HOST, "supervisor": "systemd"}]}, (),
         "gin-deploy:targets[0].supervisor: systemd needs mode: system"),
        ({"targets": [{**HOST, "basePort": 65535}]}, (),
         "gin-deploy:targets[0].basePort: basePort + instances exceeds 65535"),
        ({**PUBLIC, "targets": [{**ECS, "region": None}]}, (),
         "gin-deploy:targets[0].region: is required for ecs targets"),
        ({**PUBLIC, "targets": [ECS], "app": {"secretEnv": ["DB"]}, "DB": "x" * 8193}, ("DB",),
         "gin-deploy:DB: secret is larger than the 8192 bytes an SSM parameter holds"),
        ({"targets": [{**K8S, "kubeconfig": "apiVersion: v1", "kubeconfigPath": KEY_FILE}]},
         ("targets",), "gin-deploy:targets[0]: set only one of kubeconfig, kubeconfigPath"),
        ({"targets": [{**K8S, "namespace": LONG_NS}]}, (),
         "gin-deploy:targets[0].gatewayNamespace: is required when namespace is longer than 55"),
        ({"targets": [{**K8S, "namespace": "api", "gatewayNamespace": "api"}]}, (),
         "gin-deploy:targets[0].gatewayNamespace: must differ from namespace"),
        ({"targets": [{**K8S, "maxSurge": "0%", "maxUnavailable": "0"}]}, (),
         "gin-deploy:targets[0].maxUnavailable: maxSurge and maxUnavailable cannot both be 0"),
        ({"targets": [{**K8S, "replicas": 3, "maxReplicas": 2}]}, (),
         "gin-deploy:targets[0].maxReplicas: must be >= replicas (3)"),
        ({"domain": LONG_DOMAIN, "targets": [K8S], "edge": {"zone": "b" * 50 + ".com"}}, (),
         f"gin-deploy:targets[0].name: 'k8s.origin.{LONG_DOMAIN}' (the target's own name at "
         "the edge) is not a valid DNS name"),
    ],
)
def test_section_rule(config: dict[str, Any], secret: tuple[str, ...], expected: str) -> None:
    config = {"targets": [HOST], **config}
    for target in config["targets"]:  # None drops a key of the shared examples
        for key in [k for k, v in target.items() if v is None]:
            del target[key]
    assert only_problem(config, secret).startswith(expected)


def test_env_names_are_matched_whole() -> None:
    # A trailing newline used to pass the anchored pattern ('$' matches before it).
    msg = only_problem({"targets": [HOST], "app": {"env": {"DEBUG\n": "1"}}})
    assert msg.startswith("gin-deploy:app.env: env var names must match [A-Za-z_][A-Za-z0-9_]*")


def test_a_sections_rules_never_judge_a_default_standing_in_for_a_rejected_value() -> None:
    # The acme object is rejected (bad email); "tls.acme is required" would be wrong.
    msg = only_problem({"targets": [HOST], "tls": {"mode": "acme", "acme": {"email": "ops"}}})
    assert msg.startswith("gin-deploy:tls.acme.email: must be an email address")


def test_problems_after_a_rejected_target_name_the_right_target() -> None:
    found = problems({"domain": "api.example.com", "edge": {"zone": "example.com",
                                                            "routing": "latency"},
                      "targets": [{**HOST, "instances": 0}, K8S]})
    assert [p.split(": ")[0] for p in found] == ["gin-deploy:targets[0].instances",
                                                 "gin-deploy:targets[1].region"]


def test_defaults_are_resolved_into_concrete_values_at_parse_time() -> None:
    k8s = {**K8S, "replicas": 3}
    ssh = {k: v for k, v in SSH.items() if k != "privateKey"} | {"privateKeyPath": KEY_FILE}
    base = {"domain": "api.dev.example.com", "app": {"name": "svc", "readyPath": "/ready"},
            "targets": [ECS, k8s, ssh]}
    cfg = parse(base)
    ecs, kube, host = cfg.targets
    assert (ecs.min_count, ecs.max_count, ecs.hosted_zone) == (2, 4, "dev.example.com")
    assert (kube.namespace, kube.gateway_namespace, kube.max_replicas) == (
        "svc", "svc-gateway", 9)
    assert (host.mode, host.http_port, host.https_port) == ("system", 80, 443)
    assert host.state_dir == "/srv/gin-deploy/gin-deploy-test-edge"  # project-stack-target
    local = parse({"targets": [HOST]}).targets[0]
    assert local.state_dir == str(Path.home() / ".local/state/gin-deploy/gin-deploy-test-local")
    # Defaults that need another section: the edge's zone and the app's ready path.
    cfg = parse({**base, "targets": [ECS, {**k8s, "namespace": "api"}],
                 "edge": {"zone": "example.com"}})
    assert cfg.targets[0].hosted_zone == "example.com"
    assert cfg.targets[1].gateway_namespace == "api-gateway"
    assert cfg.edge.health_check.path == "/ready"


# --- through the program, under mocks -------------------------------------------

def test_rejected_config_registers_zero_resources() -> None:
    config = copy.deepcopy(stack_config("dev"))
    config["gin-deploy:targets"][0]["instances"] = 0
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=r"gin-deploy:targets\[0\]\.instances: must be >= 1"):
        run_program(config, mocks=mocks)
    assert mocks.resources == []


def test_valid_config_does_register_resources() -> None:
    # The counterpart of the test above: the same recorder sees a valid program.
    mocks = RecordingMocks()
    run_program(stack_config("dev"), mocks=mocks)
    assert mocks.resources != []


def test_unimplemented_parts_fail_clearly_before_any_resource(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gin_deploy import program

    # A kind without a builder (as every kind was before its component landed).
    monkeypatch.delitem(program.TARGET_BUILDERS, "host")
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=r"targets\[0\]\.kind: 'host' targets are not "
                                          r"implemented yet"):
        run_program(stack_config("dev"), mocks=mocks)
    assert mocks.resources == []


def test_dev_stack_config_is_valid_under_the_program() -> None:
    mocks = run_program(stack_config("dev"))
    assert mocks.of_type("gin-deploy:build:GinBuild")


# Issue 16.6: unsafe trust is a config error, named by its key path.
@pytest.mark.parametrize(("config", "text"), [
    ({"targets": [{**HOST, "trustedProxies": ["0.0.0.0/0"]}]},
     "gin-deploy:targets[0].trustedProxies: '0.0.0.0/0' would trust every client's "
     "X-Forwarded-For"),
    ({"targets": [HOST], "app": {"trustedProxies": ["::/0"]}},
     "gin-deploy:app.trustedProxies: '::/0' would trust every client's X-Forwarded-For"),
    ({"targets": [{**HOST, "trustedProxies": ["10.0.0.1/8"]}]},
     "gin-deploy:targets[0].trustedProxies: must be a list of IP addresses or CIDRs, got "
     "'10.0.0.1/8' (10.0.0.1/8 has host bits set)"),
    ({"targets": [HOST], "app": {"trustedProxies": ["192.168.1.7/24"]}},
     "gin-deploy:app.trustedProxies: must be a list of IP addresses or CIDRs, got "
     "'192.168.1.7/24' (192.168.1.7/24 has host bits set)"),
    ({"targets": [HOST], "app": {"env": {"TRUSTED_PROXIES": "0.0.0.0/0"}}},
     "gin-deploy:app.env: TRUSTED_PROXIES cannot be overridden: set app.trustedProxies"),
    ({"targets": [HOST], "app": {"env": {"GIN_MODE": "debug"}}},
     "gin-deploy:app.env: GIN_MODE cannot be overridden: gin-deploy always runs the service "
     "with GIN_MODE=release"),
    ({"targets": [HOST], "app": {"secretEnv": ["GIN_MODE"]}, "GIN_MODE": "debug"},
     "gin-deploy:app.secretEnv: GIN_MODE cannot be overridden"),
])
def test_unsafe_trust_is_rejected_with_its_key_path(config: dict[str, Any], text: str) -> None:
    secret = ("GIN_MODE",) if "GIN_MODE" in config else ()
    assert only_problem(config, secret).startswith(text)


def test_trusted_proxy_ranges_and_single_addresses_are_accepted() -> None:
    cfg = parse({"targets": [{**HOST, "trustedProxies": ["10.0.0.0/8", "192.0.2.1"]}],
                 "app": {"trustedProxies": ["2001:db8::/32"]}})
    assert cfg.targets[0].trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
