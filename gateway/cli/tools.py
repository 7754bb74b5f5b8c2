"""``reconcile`` and ``explain``: the tools that read Klarna and the store."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any

from typing import TYPE_CHECKING

from gateway.cli.common import (
    PROG, CliError, add_config_flag, add_db_flags, eid_flag, positive, with_parts,
)
from gateway.cli.progress import Progress
from gateway.config import Config
from gateway.tools import DEFAULT_CONCURRENCY, inputs
from gateway.tools.inputs import Exit

if TYPE_CHECKING:
    from gateway.app import Components

FORMATS = ("table", "json", "csv")


def iso_time(text: str, flag: str = "--since") -> float:
    """An ISO-8601 time (UTC when it has no offset) as epoch seconds."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{flag}: not an ISO-8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Exit 0: agree; 1: discrepancies; 2: unusable input; 3: Klarna did not answer for
    some order (or the database cannot be reached): run it again."""
    from gateway.tools.reconcile import NO_ANSWER, format_table, reconcile, to_csv, to_json

    since = iso_time(args.since) if args.since else None

    async def run(parts: Components) -> int:
        with Progress() as progress:
            outcomes, problems = await reconcile(
                parts.config, parts.engine, parts.store, parts.om, eid=args.eid, since=since,
                concurrency=args.concurrency, progress=progress.callback)
        resumed = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"
        if args.format == "json":
            sys.stdout.write(to_json(outcomes, problems))
        elif args.format == "csv":
            print(f"unfinished calls resumed: {resumed}", file=sys.stderr)
            sys.stdout.write(to_csv(problems))
        else:
            print(f"unfinished calls resumed: {resumed}")
            if problems:
                print(f"{len(problems)} discrepancies between the store and Klarna:")
                print(format_table(problems))
            else:
                print("store and Klarna agree")
        unanswered = sum(1 for p in problems if p.what == NO_ANSWER)
        if unanswered:
            print(f"{PROG}: Klarna did not answer for {unanswered} order(s): check the "
                  "merchants' base_url and the network, then run reconcile again",
                  file=sys.stderr)
            return Exit.UNREACHABLE
        return Exit.FINDING if problems else Exit.OK

    def check(config: Config) -> None:
        if args.eid is not None:
            inputs.merchant(config, args.eid, "--eid")
    return with_parts(args, run, check=check)


def cmd_explain(args: argparse.Namespace) -> int:
    """Exit 0 with the plan, 1 with the fault the call would get, 3 if Klarna cannot be
    read."""
    from gateway.errors import GatewayError
    from gateway.om.client import OmError

    body = inputs.readable_file(args.file).read_bytes()

    async def run(parts: Components) -> int:
        try:
            result = await parts.explainer.explain(body)
        except GatewayError as e:
            print(f"fault {int(e.fault_code)}: {e.fault_string}")
            return Exit.FINDING
        except OmError as e:
            raise inputs.Unreachable(f"cannot read the order from Klarna: {e}: check the "
                                     "merchant's base_url and the network") from None
        print(result.format())
        return Exit.OK
    return with_parts(args, run, read_only=True)


def register(sub: Any) -> None:
    s = sub.add_parser(
        "reconcile", help="finish unfinished calls and compare the store with Klarna",
        description="Resume every unfinished legacy call (same idempotency keys, so nothing "
                    "is applied twice), read every reservation's order from Klarna, attach "
                    "captures and refunds the store lacks, and list every remaining "
                    "disagreement; reservations of an eid the configuration lacks and "
                    "orders Klarna will not return are listed too. Exit status 0: the store "
                    "and Klarna agree; 1: discrepancies; 2: unusable input (e.g. --eid not "
                    "configured); 3: Klarna did not answer for some order, or the database "
                    "cannot be reached. Progress is drawn on stderr when it is a terminal.")
    add_config_flag(s)
    add_db_flags(s)
    s.add_argument("--eid", type=eid_flag, default=None,
                   help="only this merchant, a configured eid (default: every eid in the "
                        "store)")
    s.add_argument("--since", default=None, metavar="TIME",
                   help="ISO-8601 (UTC without an offset): only calls and reservations "
                        "changed since then (default: everything)")
    s.add_argument("--concurrency", type=positive, default=DEFAULT_CONCURRENCY, metavar="N",
                   help="orders read from Klarna at the same time")
    s.add_argument("--format", choices=FORMATS, default="table",
                   help="table: for people; json: one document; csv: one row per "
                        "discrepancy (the resumed-calls line goes to stderr)")
    s.set_defaults(func=cmd_reconcile)

    s = sub.add_parser(
        "explain", help="dry run: the REST requests a captured legacy request would become",
        description="Check a captured XML-RPC request the way the gateway would (method, "
                    "eid, digest, parameters), read its order from Klarna (GET only) and "
                    "print the REST requests the call would become, with the differences "
                    "between v2 and REST. Sends no mutation; the database is opened "
                    "read-only. Exit status 0: the plan; 1: the fault the call would get; "
                    "2: unusable input; 3: Klarna or the database cannot be reached. "
                    "Recordings mask the digest, so they cannot serve: a request from the "
                    "ERP's own log can, and examples/dump_request.py has the official "
                    "Python SDK sign one without sending it (docs/migration-guide.md).")
    s.add_argument("file", help="an XML-RPC request body as the ERP sent it (e.g. "
                                "examples/activate-request.xml)")
    add_config_flag(s)
    add_db_flags(s)
    s.set_defaults(func=cmd_explain)
