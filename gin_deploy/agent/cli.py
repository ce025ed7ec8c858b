"""gin-deploy host agent: installs and runs one Gin app stack on the host it runs on.

The program ships the agent to the host as one file (gin_deploy.agent.bundle) and runs

    python3 hostctl.py <command> [options]  < payload.json

Standard library only (Python >= 3.9). Progress goes to stderr as ``hostctl: ...`` lines,
the result to stdout as one JSON object. Errors exit 1 with one message saying what failed
and what to do; the values of ``secretEnvKeys`` are never printed.

Commands
    deploy        (DeployPayload) install a release, TLS, supervisor, rolling restart, nginx
    destroy       (TargetPayload: app, stateDir, mode, supervisor, instances) remove everything
    status        (TargetPayload, or --state DIR) current release and instance readiness
    run           --state DIR --port P --name N [--release candidate]: exec the current release
                  (or the candidate being judged beside it) - a supervisord program
    guard         --state DIR: until stdin closes, then undo a release its deploy left
                  half done (started by deploy; see gin_deploy.agent.guard)
    reload-nginx  --state DIR: validate and reload this target's nginx (certbot deploy hook)
    renew         --state DIR [--force] [--min-days N]: certbot renew (ACME targets); --force
                  renews now (certbot --force-renewal) even when the certificate is not due.
                  Records the run in renewal.json and logs/renew.log; fails when certbot
                  fails or the served certificate has fewer than N (14) days left
    renew-loop    --state DIR --interval-seconds N: renew forever, every N seconds
    fleet-release and the fleet's host and balancer commands: see agent/fleet_cli.py
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import IO, TypeVar

from gin_deploy.agent.deploy import deploy, destroy, status, status_from_state
from gin_deploy.agent.fleet_cli import FLEET_COMMANDS, fleet_commands, run_fleet_command
from gin_deploy.agent.guard import guard
from gin_deploy.agent.nginx import nginx_for_state
from gin_deploy.agent.output import HostError, emit, log, set_secrets
from gin_deploy.agent.payload import DeployPayload, PayloadError, TargetPayload, parse
from gin_deploy.agent.releases import RELEASE_LINKS, run_instance
from gin_deploy.agent.tls import RENEW_MIN_DAYS, renew, renew_loop

P = TypeVar("P", bound=TargetPayload)


def read_payload(cls: type[P], stream: IO[str]) -> P:
    """The payload on stdin, with its paths as this host sees them."""
    text = stream.read()
    if not text.strip():
        raise HostError("no JSON payload on stdin; pipe the payload into hostctl.py")
    try:
        payload = parse(cls, text)
    except PayloadError as exc:
        raise HostError(str(exc)) from None
    payload = dataclasses.replace(payload, state_dir=os.path.normpath(payload.state_dir))
    if isinstance(payload, DeployPayload):
        set_secrets([*(payload.env[k] for k in payload.secret_env_keys if k in payload.env),
                     *payload.secret_values])
        # A relative binary path starts at the working directory (over SSH: the login
        # user's home, where files are staged).
        release = dataclasses.replace(payload.release,
                                      binary=os.path.abspath(payload.release.binary))
        payload = dataclasses.replace(payload, release=release)
    return payload


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostctl.py",
                                     description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("deploy", "destroy"):
        sub.add_parser(name, help=f"{name} (JSON payload on stdin)")
    st = sub.add_parser("status", help="status (JSON payload on stdin, or --state)")
    st.add_argument("--state")
    run = sub.add_parser("run", help="exec the current release (used by supervisord)")
    run.add_argument("--state", required=True)
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--name", required=True)
    run.add_argument("--release", choices=RELEASE_LINKS, default="current")
    sub.add_parser("guard").add_argument("--state", required=True)
    sub.add_parser("reload-nginx").add_argument("--state", required=True)
    rn = sub.add_parser("renew")
    rn.add_argument("--state", required=True)
    rn.add_argument("--force", action="store_true",
                    help="renew even when not due (certbot --force-renewal)")
    fleet_commands(sub)
    loop = sub.add_parser("renew-loop")
    loop.add_argument("--state", required=True)
    loop.add_argument("--interval-seconds", type=float, default=43200.0)
    for p in (rn, loop):
        p.add_argument("--min-days", type=float, default=RENEW_MIN_DAYS,
                       help="fail when the certificate is left with fewer days than this")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Whatever the caller's umask, nothing the agent creates is group/world-writable;
    # files holding secrets get 0600 explicitly. `run` keeps its supervisor's (077 for the
    # app in system mode).
    if args.command != "run":
        os.umask(0o022)
    try:
        if args.command == "run":
            run_instance(args.state, args.port, args.name, args.release)
        elif args.command == "guard":
            emit(guard(args.state))
        elif args.command == "reload-nginx":
            nginx_for_state(args.state).reload()
            emit({"reloaded": True})
        elif args.command == "renew":
            emit(renew(args.state, force=args.force, min_days=args.min_days))
        elif args.command == "renew-loop":
            renew_loop(args.state, args.interval_seconds, args.min_days)
        elif args.command in FLEET_COMMANDS:
            emit(run_fleet_command(args, read_payload))
        elif args.command == "status":
            emit(status(status_from_state(args.state) if args.state
                        else read_payload(TargetPayload, sys.stdin)))
        elif args.command == "destroy":
            emit(destroy(read_payload(TargetPayload, sys.stdin)))
        else:
            emit(deploy(read_payload(DeployPayload, sys.stdin)))
    except HostError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0
