"""``reconcile`` and ``explain``: the tools that read Klarna and the store."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.app import Components
from gateway.cli.common import with_parts
from gateway.config import DEFAULT_DB_URL
from gateway.errors import GatewayError
from gateway.om.client import OmError


def cmd_reconcile(args: argparse.Namespace) -> int:
    from gateway.tools.reconcile import format_table, reconcile

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00")).timestamp()
        except ValueError:
            print(f"--since: not an ISO-8601 time: {args.since!r}", file=sys.stderr)
            return 2

    async def run(parts: Components) -> int:
        outcomes, problems = await reconcile(parts, eid=args.eid, since=since)
        resumed = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"
        print(f"unfinished calls resumed: {resumed}")
        if problems:
            print(f"{len(problems)} discrepancies between the store and Klarna:")
            print(format_table(problems))
            return 1
        print("store and Klarna agree")
        return 0
    return with_parts(args, run)


def cmd_explain(args: argparse.Namespace) -> int:
    """Exit 0 with the plan, 1 with the fault the call would get, 2 if Klarna is unreadable."""
    from gateway.tools.explain import explain

    body = Path(args.file).read_bytes()

    async def run(parts: Components) -> int:
        try:
            result = await explain(parts, body)
        except GatewayError as e:
            print(f"fault {int(e.fault_code)}: {e.fault_string}")
            return 1
        except OmError as e:
            print(f"cannot read the order from Klarna: {e}", file=sys.stderr)
            return 2
        print(result.format())
        return 0
    return with_parts(args, run)


def register(sub: Any) -> None:
    s = sub.add_parser("reconcile", help="finish unfinished calls and compare store with REST")
    s.add_argument("--db", default=DEFAULT_DB_URL)
    s.add_argument("--config", default=None)
    s.add_argument("--eid", type=int, default=None)
    s.add_argument("--since", default=None, help="ISO-8601 time; only calls since then")
    s.set_defaults(func=cmd_reconcile)

    s = sub.add_parser("explain", help="dry run: the REST requests a captured legacy "
                                       "request would become (sends no mutation)")
    s.add_argument("file", help="an XML-RPC request body as the ERP sent it")
    s.add_argument("--db", default=DEFAULT_DB_URL)
    s.add_argument("--config", default=None)
    s.set_defaults(func=cmd_explain)
