"""How long `pulumi up` waits for a Kubernetes rollout: the Deployments' custom timeouts
(the provider's await honours them; its own default is 10 minutes)."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from gin_deploy.config import ConfigError
from tests.unit.harness import RecordingMocks, run_program
from tests.unit.test_kubernetes import k8s_config, prod_target


def timeouts(**target: Any) -> dict[str, Any]:
    """Custom timeouts by resource name, for every resource of the prod kubernetes target."""
    seen: dict[str, Any] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        custom = args.opts.custom_timeouts
        seen[args.name] = None if custom is None else (custom.create, custom.update)

    canary = {"version": "v1.3.0", "weight": 10}
    run_program(k8s_config(prod_target(canary=canary, **target)), stack="prod",
                transforms=(record,))
    return seen


def test_deployments_wait_ten_minutes_by_default_and_nothing_else_has_a_timeout() -> None:
    seen = timeouts()
    assert seen.pop("k8s-eu-deployment") == ("600s", "600s")
    assert seen.pop("k8s-eu-canary-deployment") == ("600s", "600s")
    assert {name: value for name, value in seen.items() if value is not None} == {}


def test_rollout_timeout_sets_how_long_up_waits() -> None:
    seen = timeouts(rolloutTimeout=90)
    assert seen["k8s-eu-deployment"] == seen["k8s-eu-canary-deployment"] == ("90s", "90s")


def test_a_rollout_timeout_below_30_seconds_is_refused() -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=r"targets\[0\]\.rolloutTimeout: must be >= 30"):
        run_program(k8s_config(prod_target(rolloutTimeout=5)), stack="prod", mocks=mocks)
    assert mocks.resources == []
