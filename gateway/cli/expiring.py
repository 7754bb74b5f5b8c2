"""``klarna-gateway expiring``: authorizations Klarna will let lapse soon, for cron.

Every registered reservation whose order is still AUTHORIZED or PART_CAPTURED at Klarna,
with money uncaptured, and whose ``expires_at`` falls within ``--within`` (``3d``, ``12h``,
``90m`` or seconds), soonest first; time left is counted on Klarna's clock
(:mod:`gateway.tools.expiring`). Orders are read with GETs, 8 at a time.

Exit status, so a cron job can alert on anything but 0:

- 0: nothing expires within the window (every order read);
- 1: something does (listed on stdout);
- 2: it could not tell: bad flags, configuration or database, or orders Klarna did not
  answer for (each named on stderr) and nothing found expiring.

Errors are one line on stderr. Read-only: the database is opened read-only (as for
``journal``) and Klarna receives nothing but GETs.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

from gateway.config import DEFAULT_DB_URL, Config, load_config
from gateway.errors import ConfigError
from gateway.tools import expiring as expiry

FORMATS = ("table", "json", "csv")
CSV_FIELDS = ("eid", "rno", "order_id", "status", "remaining_authorized_amount", "currency",
              "expires_at", "seconds_left")


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def cmd_expiring(args: argparse.Namespace) -> int:
    try:
        within = expiry.parse_window(args.within)
    except ValueError as e:
        return _fail(f"--within: {e}")
    eid: int | None = None
    if args.eid is not None:
        if not args.eid.isdigit():
            return _fail(f"--eid: not an eid: {args.eid!r}")
        eid = int(args.eid)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        return _fail(str(e))
    if eid is not None and config.merchant(eid) is None:
        return _fail(f"--eid: eid {eid} is not configured in {config.source}")
    return _react(args, config, within, eid)


def _react(args: argparse.Namespace, config: Config, within: float, eid: int | None) -> int:
    from twisted.internet import task

    outcome = {"code": 2}

    async def main(reactor: Any) -> None:
        try:
            found = await _scan(reactor, args.db, config, eid)
        except _Unusable as e:
            outcome["code"] = _fail(str(e))
            return
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            outcome["code"] = _fail(f"error: {type(e).__name__}: {e}")
            return
        outcome["code"] = report(found, within, args.within, args.format, sys.stdout,
                                 sys.stderr)

    try:
        task.react(main)
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 2
    return outcome["code"]


class _Unusable(Exception):
    """The database cannot be read (its message is the one line printed)."""


async def _scan(reactor: Any, db_url: str, config: Config, eid: int | None) -> expiry.Scan:
    from sqlalchemy.exc import DBAPIError

    from gateway.om.client import OmClient
    from gateway.store import schema
    from gateway.store.database import Database
    from gateway.store.store import Store

    try:
        db = Database(db_url, reactor, threaded=False, read_only=True)
    except (FileNotFoundError, ValueError) as e:
        raise _Unusable(f"cannot open the database read-only: {e}") from None
    om = OmClient(reactor, timeout=config.gateway.rest_timeout_seconds)
    try:
        try:
            schema.check(db.engine)
            reservations = await Store(db, reactor).list_open_reservations(
                expiry.OPEN_STATUSES, eid)
        except schema.SchemaError as e:
            raise _Unusable(str(e)) from None
        except DBAPIError as e:
            raise _Unusable(f"database error: {e.orig}") from None
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
        err.write(f"eid {r.eid} rno {r.rno} order {r.order_id}: not read: {u.reason}\n")
    if items:
        return 1
    return 2 if found.unreadable else 0


def table(items: list[expiry.Expiring], checked: int, label: str) -> str:
    if not items:
        return f"no authorization expires within {label} ({checked} reservation(s) read)"
    head = ("eid", "rno", "order id", "status", "remaining", "expires at", "time left")
    rows = [head] + [(str(e.reservation.eid), e.reservation.rno, e.reservation.order_id,
                      e.status, f"{e.remaining} {e.currency}".rstrip(), e.expires_at,
                      expiry.format_left(e.seconds_left)) for e in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"{len(items)} authorization(s) expire within {label} ({checked} "
                 f"reservation(s) read; amounts in minor units)")
    return "\n".join(lines)


def register(sub: Any) -> None:
    s = sub.add_parser(
        "expiring", help="authorizations that lapse soon (exit 1 if any: for cron)",
        description="List registered reservations whose authorization at Klarna is still "
                    "open (AUTHORIZED or PART_CAPTURED, money uncaptured) and expires "
                    "within --within, soonest first. Exit status: 0 none, 1 some, 2 could "
                    "not tell (errors, or orders Klarna did not answer for). Read-only.")
    s.add_argument("--within", default="3d",
                   help="window: 3d, 12h, 90m or seconds (default 3d)")
    s.add_argument("--config", required=True, help="TOML configuration file")
    s.add_argument("--db", default=DEFAULT_DB_URL, help="database URL")
    s.add_argument("--eid", default=None, help="only this merchant")
    s.add_argument("--format", choices=FORMATS, default="table")
    s.set_defaults(func=cmd_expiring)
