"""Existing stacks see no replacement from a change of code shape.

The golden snapshots (tests/unit/snapshot.py) were taken from the program before the
reshape into one-way layers. Every URN in them must still be registered, directly or
through an alias (own or inherited from a parent), and with the same inputs: then an
`up` of a stack created before the change moves nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit import snapshot

STACKS = ("dev", "prod")


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    golden = json.loads((snapshot.GOLDEN / f"{request.param}.json").read_text())
    return golden, snapshot.take(request.param, snapshot.prepare_home())


def test_every_resource_of_an_existing_stack_keeps_its_urn(stack: Any) -> None:
    golden, current = stack
    reachable = snapshot.reachable_urns(current)
    lost = sorted(urn for urn in golden if urn not in reachable)
    assert not lost, "resources an existing stack would delete and re-create:\n" + "\n".join(lost)


def test_every_resource_of_an_existing_stack_keeps_its_inputs(stack: Any) -> None:
    golden, current = stack
    reachable = snapshot.reachable_urns(current)
    changed = [urn for urn, info in golden.items()
               if urn in reachable and current[reachable[urn]]["inputs"] != info["inputs"]]
    assert not changed, "inputs changed (an update on the next up): " + ", ".join(changed)


def test_no_input_depends_on_where_the_project_is_checked_out(stack: Any) -> None:
    # A teammate's or CI's checkout elsewhere (a shared backend) must see no change.
    _golden, current = stack
    text = json.dumps(current)
    assert "<project>" not in text and "<python>" not in text
