"""`python -m gin_deploy <preview|up|refresh|destroy|outputs|status> --stack NAME [options]`.

Progress streams to stdout as the engine prints it; the last line is a JSON
summary ({"operation", "stack", "summary", "outputs"}). Exit codes: 0 done,
1 the operation failed, 2 bad arguments, 3 the stack is locked (by a live
operation, or by one that was killed: the message says which and how to clear it).

`status` asks every live target what it runs (version, ready/wanted, certificate,
edge health check, last deploy) and prints a table, or with --json the contract
object ({"targets": [{name, kind, version, ready, wanted, certDaysLeft, healthy,
...}]}); it exits 1 when any target is unhealthy or a certificate has fewer than
--min-cert-days (14) days left, so it works as a cron or CI check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from gin_deploy import automation
from gin_deploy.status import table as status_table


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gin_deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("operation", choices=(*automation.OPERATIONS, "status"))
    parser.add_argument("--stack", "-s", required=True, help="stack name, e.g. dev or prod")
    parser.add_argument("--config", "-c", action="append", type=_pair, default=[],
                        metavar="KEY=VALUE",
                        help="set config first (JSON values allowed; KEY defaults to the "
                             "gin-deploy namespace); persisted like `pulumi config set`")
    parser.add_argument("--secret-from-env", action="append", type=_pair, default=[],
                        metavar="KEY=ENV_VAR",
                        help="set secret config KEY from environment variable ENV_VAR "
                             "(keeps secrets off the command line)")
    parser.add_argument("--expect-no-changes", action="store_true",
                        help="fail if the operation would change anything")
    parser.add_argument("--diff", action="store_true", help="show detailed diffs")
    parser.add_argument("--policy-pack", action="append", default=[], metavar="DIR",
                        help="run a CrossGuard policy pack (preview and up)")
    parser.add_argument("--remove", action="store_true", help="destroy: also remove the stack")
    parser.add_argument("--clear-stale-lock", action="store_true",
                        help="first remove the lock of an operation that was killed (its "
                             "pulumi process on this host is gone); live locks are kept")
    parser.add_argument("--json", action="store_true", help="status: print the JSON contract")
    parser.add_argument("--min-cert-days", type=float, default=14, metavar="N",
                        help="status: unhealthy when a certificate has fewer days left")
    args = parser.parse_args(argv)
    if args.operation != "status" and (args.json or args.min_cert_days != 14):
        parser.error("--json and --min-cert-days apply to status")
    if args.operation not in ("preview", "up") and (args.config or args.secret_from_env):
        parser.error("--config and --secret-from-env apply to preview and up")
    for _key, env_var in args.secret_from_env:
        if env_var not in os.environ:
            parser.error(f"--secret-from-env: environment variable {env_var} is not set")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = {k: _value(v) for k, v in args.config}
    secret_config = {k: os.environ[v] for k, v in args.secret_from_env}

    def stream(line: str) -> None:
        print(line, end="" if line.endswith("\n") else "\n", flush=True)

    try:
        if args.operation == "status":
            report = automation.status(args.stack, min_cert_days=args.min_cert_days)
            print(json.dumps(report.as_json(), indent=2, sort_keys=True) if args.json
                  else status_table(report))
            return 0 if report.healthy else 1
        if args.operation == "outputs":
            print(json.dumps(automation.outputs(args.stack), indent=2, sort_keys=True))
            return 0
        if args.operation in ("preview", "up"):
            op = automation.preview if args.operation == "preview" else automation.up
            result = op(args.stack, config=config, secret_config=secret_config,
                        expect_no_changes=args.expect_no_changes, diff=args.diff,
                        policy_packs=tuple(args.policy_pack),
                        clear_stale_lock=args.clear_stale_lock, on_output=stream)
        elif args.operation == "refresh":
            result = automation.refresh(args.stack, expect_no_changes=args.expect_no_changes,
                                        clear_stale_lock=args.clear_stale_lock,
                                        on_output=stream)
        else:
            result = automation.destroy(args.stack, remove=args.remove,
                                        clear_stale_lock=args.clear_stale_lock,
                                        on_output=stream)
    except automation.StackLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except automation.OperationFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"operation": result.operation, "stack": result.stack,
                      "summary": result.summary, "outputs": result.outputs}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
