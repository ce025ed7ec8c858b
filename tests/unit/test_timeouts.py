"""The chain of timeouts (docs/ecs.md#timeouts), on every kind of target.

The app's idle timeout must exceed that of whatever proxy keeps connections to it
(the ALB, nginx), so the proxy closes idle connections and never sends a request on
one the app is closing (a 502); every proxy must wait at least the app's write
timeout for an answer, and deregistration and stop timeouts must cover it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.config import RawValue, parse_stack_config
from gin_deploy.config.schema import ConfigError
from tests.unit import test_edge
from tests.unit.harness import ROOT, RecordingMocks, unsecret
from tests.unit.test_edge import home  # noqa: F401  (the prod host target's key file)


def _prod(**app: Any) -> dict[str, Any]:
    config = copy.deepcopy(test_edge.PROD)
    config["gin-deploy:app"] = {**config["gin-deploy:app"], **app}
    return config


@pytest.fixture(scope="module")
def prod(home: Path) -> RecordingMocks:  # noqa: F811
    """The whole prod stack (ecs, kubernetes, host behind CloudFront), longer timeouts."""
    return test_edge.run(_prod(idleTimeout=90, writeTimeout=45))


def _env(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in pairs}


def test_every_kind_passes_the_timeouts_to_the_app(prod: RecordingMocks) -> None:
    task = prod.named("aws-use1-task").inputs
    [ecs] = json.loads(unsecret(task["containerDefinitions"]))
    [k8s] = unsecret(prod.named("k8s-eu-deployment").inputs["spec"])["template"]["spec"][
        "containers"]
    host = json.loads(unsecret(prod.named("edge-sin-deploy").inputs["stdin"]))["env"]
    for env in (_env(ecs["environment"]), _env(k8s["env"]), host):
        assert (env["IDLE_TIMEOUT"], env["WRITE_TIMEOUT"]) == ("90s", "45s")


def test_the_load_balancer_sits_between_the_apps_write_and_idle_timeouts(
        prod: RecordingMocks) -> None:
    alb = prod.named("aws-use1-alb").inputs
    assert alb["idleTimeout"] == 85          # app.idleTimeout - 5, above writeTimeout 45
    tg = prod.named("aws-use1-tg").inputs
    assert tg["deregistrationDelay"] == 55   # writeTimeout 45 + shutdownTimeout 10
    [container] = json.loads(unsecret(prod.named("aws-use1-task").inputs[
        "containerDefinitions"]))
    assert container["stopTimeout"] == 60    # + 5 s before SIGKILL


def test_cloudfront_and_nginx_wait_as_long_as_the_app_may_take(prod: RecordingMocks) -> None:
    distribution = prod.named("hello-gin-edge-cdn").inputs
    for origin in unsecret(distribution["origins"]):
        assert origin["customOriginConfig"]["originReadTimeout"] == 45
        # CloudFront's keep-alive to the origins stays below the ALB's idle timeout.
        assert origin["customOriginConfig"]["originKeepaliveTimeout"] < 85
    site = json.loads(unsecret(prod.named("edge-sin-deploy").inputs["stdin"]))["nginx"]["site"]
    assert re.findall(r"proxy_read_timeout (\d+)s;", site) == ["45"]
    # nginx closes idle upstream connections before the app (90 s) would: the instances'
    # pool and the candidates' (edge-sin releases as a canary).
    keepalives = re.findall(r"keepalive_timeout (\d+)s;", site)
    assert len(keepalives) == 2 and all(int(k) < 90 for k in keepalives)


# --- the pairs, as config errors with their key paths ------------------------------------

# rolling: some cases put it behind the CDN, where ECS traffic shifting is refused.
ECS = {"name": "aws", "kind": "ecs", "region": "us-east-1", "release": {"strategy": "rolling"}}
HOST = {"name": "local", "kind": "host"}


def _problems(targets: list[dict[str, Any]], edge: dict[str, Any] | None = None,
              **app: Any) -> list[str]:
    raw = {"domain": "api.example.com", "targets": targets, "app": app}
    if edge is not None:
        raw["edge"] = edge
    try:
        parse_stack_config({k: RawValue(v, False) for k, v in raw.items()},
                           project="gin-deploy", stack="test", project_dir=ROOT)
    except ConfigError as error:
        return error.problems
    return []


def test_defaults_hold_the_chain() -> None:
    assert _problems([ECS]) == [] and _problems([HOST]) == []
    assert _problems([ECS], {"zone": "example.com", "cdn": True}) == []


@pytest.mark.parametrize(("targets", "edge", "app", "expected"), [
    ([{**ECS, "idleTimeout": 60}], None, {},
     "gin-deploy:targets[0].idleTimeout: 60s must be below app.idleTimeout (60s)"),
    ([ECS], None, {"idleTimeout": 35},
     "gin-deploy:targets[0].idleTimeout: 30s (default app.idleTimeout - 5) must exceed "
     "app.writeTimeout (30s)"),
    ([{**ECS, "idleTimeout": 20}], None, {},
     "gin-deploy:targets[0].idleTimeout: 20s (default app.idleTimeout - 5) must exceed"),
    ([HOST], None, {"idleTimeout": 30},
     "gin-deploy:app.idleTimeout: 30s must exceed nginx's upstream keepalive_timeout (30s)"),
    ([ECS], {"zone": "example.com", "cdn": True}, {"writeTimeout": 50, "idleTimeout": 120},
     None),
    ([ECS], {"zone": "example.com", "cdn": True}, {"writeTimeout": 61, "idleTimeout": 120},
     "gin-deploy:app.writeTimeout: 61s exceeds CloudFront's origin response timeout"),
    ([HOST], None, {"env": {"IDLE_TIMEOUT": "75s"}},
     "gin-deploy:app.env: ['IDLE_TIMEOUT'] are set from app.idleTimeout"),
])
def test_a_broken_pair_is_a_config_error_naming_the_key(
        targets: list[dict[str, Any]], edge: dict[str, Any] | None, app: dict[str, Any],
        expected: str | None) -> None:
    found = _problems(targets, edge, **app)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(expected), found


def test_an_explicit_load_balancer_idle_timeout_inside_the_chain_is_kept() -> None:
    raw = {"domain": "api.example.com", "targets": [{**ECS, "idleTimeout": 40}]}
    cfg = parse_stack_config({k: RawValue(v, False) for k, v in raw.items()},
                             project="gin-deploy", stack="test", project_dir=ROOT)
    assert cfg.targets[0].idle_timeout == 40
