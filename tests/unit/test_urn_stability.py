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


def _reachable_urns(current: dict[str, Any]) -> dict[str, str]:
    """Every URN a current resource answers to -> that resource's URN.

    A child inherits its parent's aliases: its URN under each alias of the parent.
    """
    names: dict[str, set[str]] = {}

    def of(urn: str) -> set[str]:
        if urn in names:
            return names[urn]
        info = current[urn]
        found = {urn, *info["aliases"]}
        parent = info["parent"]
        if parent and parent in current:
            own_type, name = urn.split("::")[2].split("$")[-1], urn.split("::")[-1]
            for parent_urn in of(parent) - {parent}:
                parent_type = parent_urn.split("::")[2]
                stack_project = parent_urn.split("::")[0:2]
                found.add("::".join([*stack_project, f"{parent_type}${own_type}", name]))
        names[urn] = found
        return found

    return {alias: urn for urn in current for alias in of(urn)}


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    golden = json.loads((snapshot.GOLDEN / f"{request.param}.json").read_text())
    return golden, snapshot.take(request.param, snapshot.prepare_home())


def test_every_resource_of_an_existing_stack_keeps_its_urn(stack: Any) -> None:
    golden, current = stack
    reachable = _reachable_urns(current)
    lost = sorted(urn for urn in golden if urn not in reachable)
    assert not lost, "resources an existing stack would delete and re-create:\n" + "\n".join(lost)


def test_every_resource_of_an_existing_stack_keeps_its_inputs(stack: Any) -> None:
    golden, current = stack
    reachable = _reachable_urns(current)
    changed = [urn for urn, info in golden.items()
               if urn in reachable and current[reachable[urn]]["inputs"] != info["inputs"]]
    assert not changed, "inputs changed (an update on the next up): " + ", ".join(changed)
