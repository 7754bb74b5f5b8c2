"""``klarna-gateway expiring``: authorizations Klarna will let lapse soon, for cron.

Every registered reservation whose order is still AUTHORIZED or PART_CAPTURED at Klarna,
with money uncaptured, and whose ``expires_at`` falls within ``--within`` (``3d``, ``12h``,
``90m`` or seconds), soonest first; time left is counted on Klarna's clock
(:mod:`gateway.tools.expiring`). Orders are read with GETs, 8 at a time.

Exit status, so a cron job can alert on anything but 0:

- 0: nothing expires within the window (every order read);
- 1: something does (listed on stdout);
- 2: unusable input: bad flags, configuration or database, an eid not configured, or
  orders Klarna says do not exist (each named on stderr) and nothing found expiring;
- 3: Klarna (or the database) cannot be reached, and nothing found expiring.

The configuration and database come from the shared flags and environment
(``--config``/``$KLARNA_GATEWAY_CONFIG``, ``--db``/``--db-file``/``$KLARNA_GATEWAY_DB``).
Errors are one line on stderr, prefixed ``klarna-gateway:``. Read-only: the database is
opened read-only (as for ``journal``) and Klarna receives nothing but GETs.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

from gateway.cli.common import (
    PROG, add_config_flag, add_db_flags, config_from, db_url, eid_flag, open_read_only, react,
    require_sqlite_file,
)
from gateway.config import Config
from gateway.tools import expiring as expiry
from gateway.tools import inputs
from gateway.tools.inputs import Exit

FORMATS = ("table", "json", "csv")
CSV_FIELDS = ("eid", "rno", "order_id", "status", "remaining_authorized_amount", "currency",
              "expires_at", "seconds_left")


def cmd_expiring(args: argparse.Namespace) -> int:
    try:
        within = expiry.parse_window(args.within)
    except ValueError as e:
        raise inputs.InputError(f"--within: {e}") from None
    config = config_from(args.config)
    if args.eid is not None:
        inputs.merchant(config, args.eid, "--eid")
    url = db_url(args)
    require_sqlite_file(url)
    return _react(args, config, url, within)


def _react(args: argparse.Namespace, config: Config, url: str, within: float) -> int:
    async def work(reactor: Any) -> int:
        found = await _scan(reactor, url, config, args.eid)
        return report(found, within, args.within, args.format, sys.stdout, sys.stderr)
    return react(work)


async def _scan(reactor: Any, url: str, config: Config, eid: int | None) -> expiry.Scan:
    from gateway.om.client import OmClient
    from gateway.store import schema
    from gateway.store.store import Store

    db = open_read_only(url, reactor)
    om = OmClient(reactor, timeout=config.gateway.rest_timeout_seconds)
    try:
        schema.check(db.engine)
        reservations = await Store(db, reactor).list_open_reservations(
            expiry.OPEN_STATUSES, eid)
        return await expiry.scan(config, om, reservations, reactor)
    finally:
        await om.close()
        db.stop()


def report(found: expiry.Scan, within: float, label: str, fmt: str, out: Any, err: Any,
           ) -> int:
    """Print what expires within ``within`` seconds; returns the exit status."""
    items = found.within(within)
    if fmt == "json":
        out.write(json.dumps({
            "within": label, "within_seconds": int(within), "checked": found.checked,
            "expiring": [e.to_json() for e in items],
            "unreadable": [{"eid": u.reservation.eid, "rno": u.reservation.rno,
                            "order_id": u.reservation.order_id, "error": u.reason}
                           for u in found.unreadable]}, indent=2) + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(e.to_json() for e in items)
        out.write(buf.getvalue())
    else:
        out.write(table(items, found.checked, label) + "\n")
    for u in found.unreadable:
        r = u.reservation
        err.write(f"{PROG}: eid {r.eid} rno {r.rno} order {r.order_id}: not read: "
                  f"{u.reason}\n")
    if items:
        return Exit.FINDING
    if any(u.no_answer for u in found.unreadable):
        return Exit.UNREACHABLE
    return Exit.UNUSABLE if found.unreadable else Exit.OK


def table(items: list[expiry.Expiring], checked: int, label: str) -> str:
    if not items:
        return f"no authorization expires within {label} ({checked} reservation(s) read)"
    head = ("eid", "rno", "order id", "status", "remaining", "expires at", "time left")
    rows = [head] + [(str(e.reservation.eid), e.reservation.rno, e.reservation.order_id,
                      e.status, e.amount, e.expires_at,
                      expiry.format_left(e.seconds_left)) for e in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"{len(items)} authorization(s) expire within {label} ({checked} "
                 "reservation(s) read)")
    return "\n".join(lines)


def register(sub: Any) -> None:
    s = sub.add_parser(
        "expiring", help="authorizations that lapse soon (exit 1 if any: for cron)",
        description="List registered reservations whose authorization at Klarna is still "
                    "open (AUTHORIZED or PART_CAPTURED, money uncaptured) and expires "
                    "within --within, soonest first. Exit status: 0 none; 1 some; 2 "
                    "unusable input (a bad flag, configuration or database, an eid not "
                    "configured, orders Klarna says do not exist); 3 Klarna or the database "
                    "cannot be reached. Read-only.")
    s.add_argument("--within", default="3d", type=str,
                   help="window: 3d, 12h, 90m or seconds")
    add_config_flag(s)
    add_db_flags(s)
    s.add_argument("--eid", type=eid_flag, default=None,
                   help="only this merchant, a configured eid (default: every eid)")
    s.add_argument("--format", choices=FORMATS, default="table",
                   help="table: for people (amounts as 100.00 SEK); json: one document; "
                        "csv: one row per authorization (amounts in minor units)")
    s.set_defaults(func=cmd_expiring)
