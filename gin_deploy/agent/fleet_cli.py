"""The fleet's agent commands (hooked into cli.py):

    fleet-release      (FleetPayload, deploying machine) release every host, batch by batch
    member-deploy      (DeployPayload, a fleet host) deploy; also says the release before
    member-rollback    --state DIR --to RELEASE: back to RELEASE, readiness-gated
    balance            (BalancerPayload, a balancer) TLS + site with this step's members
    balancer-members   --state DIR: the hosts the balancer has in rotation
    balancer-destroy   (BalancerTarget) remove the balancer's site and state
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from gin_deploy.agent import balancer, fleet
from gin_deploy.agent.fleet_payload import BalancerPayload, BalancerTarget
from gin_deploy.agent.payload import DeployPayload

FLEET_COMMANDS = ("fleet-release", "member-deploy", "member-rollback", "balance",
                  "balancer-members", "balancer-destroy")


def fleet_commands(sub: Any) -> None:
    for name in ("fleet-release", "member-deploy", "balance", "balancer-destroy"):
        sub.add_parser(name, help=f"{name} (JSON payload on stdin)")
    rb = sub.add_parser("member-rollback")
    rb.add_argument("--state", required=True)
    rb.add_argument("--to", required=True)
    sub.add_parser("balancer-members").add_argument("--state", required=True)


def run_fleet_command(args: argparse.Namespace,
                      read_payload: Callable[..., Any]) -> dict[str, Any]:
    """`read_payload` is cli's: a DeployPayload with its paths and secrets handled."""
    command = args.command
    if command == "fleet-release":
        return fleet.release(fleet.read_fleet(sys.stdin))
    if command == "member-deploy":
        return fleet.member_deploy(read_payload(DeployPayload, sys.stdin))
    if command == "member-rollback":
        return fleet.member_rollback(args.state, args.to)
    if command == "balance":
        return balancer.balance(fleet.read_message(BalancerPayload, sys.stdin))
    if command == "balancer-members":
        return balancer.members(args.state)
    return balancer.destroy_balancer(fleet.read_message(BalancerTarget, sys.stdin))
