"""``klarna-gateway journal``: search the call journal from a terminal (the twin of
``GET /v1/journal``, same filters, same records).

Read-only by construction: the database is opened read-only (SQLite ``mode=ro`` on an
existing file, PostgreSQL read-only transactions), the schema is only checked, and nothing
of the composition root that could write (install id, migrations) runs. The store runs
inline (no thread pool, no reactor): every query completes synchronously.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from gateway.cli.common import (
    add_config_flag, add_db_flags, config_from, db_url, open_read_only, require_sqlite_file,
)
from gateway.tools import inputs
from gateway.tools import journal as js

if TYPE_CHECKING:
    from gateway.store.store import Store

FORMATS = ("table", "json", "jsonl", "csv")


class _WallClock:
    @staticmethod
    def seconds() -> float:
        return time.time()


def _run_inline(coro: Any) -> Any:
    """The result of a coroutine that never waits (the inline store): no reactor needed."""
    from twisted.internet import defer
    from twisted.python.failure import Failure

    results: list[Any] = []
    defer.ensureDeferred(coro).addBoth(results.append)
    assert results, "the inline store waited for something"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def cmd_journal(args: argparse.Namespace) -> int:
    from gateway.store import schema
    from gateway.store.store import Store

    config = config_from(args.config)
    params = {name: getattr(args, name) for name in js.FILTERS + ("limit", "cursor")}
    params = {k: str(v) for k, v in params.items() if v is not None}
    try:
        search = js.parse_query(params, formats=("json",))
    except js.FilterError as e:
        raise inputs.InputError(f"--{e.name.replace('_', '-')}: "
                                f"{str(e).split(': ', 1)[1]}") from None
    if search.query.eid is not None:
        inputs.merchant(config, search.query.eid, "--eid")
    url = db_url(args)
    require_sqlite_file(url)
    db = open_read_only(url, _WallClock())
    try:
        schema.check(db.engine)
        store = Store(db, _WallClock())
        return _print(store, search.query, args.format)
    finally:
        db.stop()


def _print(store: Store, query: Any, fmt: str) -> int:
    out = sys.stdout
    if fmt in ("jsonl", "csv"):
        if fmt == "csv":
            out.write(js.csv_header())
        line = js.csv_line if fmt == "csv" else js.jsonl_line
        pages = js.pages(store, query)
        while (entries := _run_inline(_next(pages))) is not None:
            out.write("".join(line(e) for e in entries))
        return 0
    page = _run_inline(store.search_journal(query))
    if fmt == "json":
        out.write(json.dumps(js.page_json(page.entries, page.next_before), indent=2,
                             ensure_ascii=False) + "\n")
        return 0
    out.write(js.table(page.entries) + "\n")
    if page.next_before is not None:
        print(f"more: --cursor {js.encode_cursor(page.next_before)}", file=sys.stderr)
    return 0


async def _next(pages: Any) -> Any:
    try:
        return await pages.__anext__()
    except StopAsyncIteration:
        return None


def register(sub: Any) -> None:
    s = sub.add_parser("journal", help="search the call journal (read-only)",
                       description="Search the call journal: the legacy calls, the REST "
                                   "steps they became, notes, replies and faults (the "
                                   "filters of GET /v1/journal). Opens the database "
                                   "read-only and creates nothing.")
    add_config_flag(s)
    add_db_flags(s)
    s.add_argument("--eid", default=None,
                   help="only this merchant, a configured eid (default: every eid)")
    s.add_argument("--method", default=None, help="a legacy method name, e.g. activate")
    s.add_argument("--rno", default=None,
                   help="a reservation number: every call on that reservation, those "
                        "naming one of its invoices included")
    s.add_argument("--invno", default=None, help="an invoice number")
    s.add_argument("--order-id", dest="order_id", default=None, help="Klarna order id")
    s.add_argument("--merchant-order-id", dest="merchant_order_id", default=None,
                   help="the call's orderid1/orderid2")
    s.add_argument("--outcome", default=None, help="ok, pending, fault or a fault code")
    s.add_argument("--since", default=None, help="ISO-8601, inclusive")
    s.add_argument("--until", default=None, help="ISO-8601, exclusive")
    s.add_argument("--limit", default=None, help=f"page size for table/json (default: "
                                                 f"{js.DEFAULT_LIMIT})")
    s.add_argument("--cursor", default=None, help="the next page (printed by a previous run)")
    s.add_argument("--format", choices=FORMATS, default="table",
                   help="table/json: one page; jsonl/csv: every matching entry")
    s.set_defaults(func=cmd_journal)
