"""``db upgrade``, ``config check`` and ``reservations add|show|import``.

``reservations import`` takes reservations, invoices or credits (the CSV's header names the
kind) and checks each row against its order over REST (:mod:`gateway.tools.imports`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.admin import invoice_json
from gateway.app import Components
from gateway.cli.common import config_from, with_parts
from gateway.config import DEFAULT_DB_URL
from gateway.model import Origin
from gateway.store.mapping import ReservationConflictError


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.store import schema
    from gateway.store.database import make_engine

    engine = make_engine(args.db)
    try:
        before, after = schema.upgrade(engine)
    finally:
        engine.dispose()
    print(f"schema {before or 'empty'} -> {after}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    config = config_from(args.config)
    print(f"{config.source}: OK, {len(config.merchants)} merchant(s): "
          + ", ".join(f"eid {m.eid} -> {m.base_url}" for m in config.merchants))
    return 0


def cmd_reservations_add(args: argparse.Namespace) -> int:
    async def run(parts: Components) -> int:
        store, config = parts.store, parts.config
        if config.merchant(args.eid) is None:
            print(f"eid {args.eid} is not configured", file=sys.stderr)
            return 2
        try:
            res = await store.register_reservation(args.eid, args.order_id, args.rno, Origin.ADMIN.value)
        except ReservationConflictError as e:
            print(str(e), file=sys.stderr)
            return 1
        print(json.dumps({"eid": res.eid, "rno": res.rno, "order_id": res.order_id}))
        return 0
    return with_parts(args, run)


def cmd_reservations_show(args: argparse.Namespace) -> int:
    async def run(parts: Components) -> int:
        store = parts.store
        res = await store.get_reservation(args.eid, args.rno)
        if res is None:
            print(f"rno {args.rno} is unknown for eid {args.eid}", file=sys.stderr)
            return 1
        invoices = await store.invoices_for(res.id)
        print(json.dumps({"eid": res.eid, "rno": res.rno, "order_id": res.order_id,
                          "status": res.status, "origin": res.origin,
                          "invoices": [invoice_json(i) for i in invoices]}, indent=2))
        return 0
    return with_parts(args, run)


def cmd_reservations_import(args: argparse.Namespace) -> int:
    """Exit 0 when every row is added or unchanged, 1 when any was refused, 2 when the file
    cannot be read at all (nothing was checked or changed)."""
    from gateway.tools.imports import ImportFormatError, read_csv, run_import

    async def run(parts: Components) -> int:
        try:
            lines = read_csv(Path(args.file), parts.config)
        except (ImportFormatError, OSError) as e:
            print(str(e), file=sys.stderr)
            return 2
        report = await run_import(parts.config, parts.store, parts.om, parts.store.clock,
                                  lines, dry_run=args.dry_run)
        print(report.format(args.file))
        return 1 if report.refused else 0
    return with_parts(args, run)


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="database administration").add_subparsers(
        dest="db_command", required=True)
    s = db.add_parser("upgrade", help="migrate the schema to the newest version")
    s.add_argument("--db", default=DEFAULT_DB_URL)
    s.set_defaults(func=cmd_db_upgrade)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True)
    s = cfg.add_parser("check", help="validate a configuration file")
    s.add_argument("--config", required=True)
    s.set_defaults(func=cmd_config_check)

    res = sub.add_parser("reservations", help="the rno ↔ order_id mapping").add_subparsers(
        dest="reservations_command", required=True)
    for name, func in (("add", cmd_reservations_add), ("show", cmd_reservations_show),
                       ("import", cmd_reservations_import)):
        s = res.add_parser(name)
        s.add_argument("--db", default=DEFAULT_DB_URL)
        s.add_argument("--config", default=None)
        if name == "add":
            s.add_argument("--eid", type=int, required=True)
            s.add_argument("--order-id", required=True)
            s.add_argument("--rno", default=None)
        elif name == "show":
            s.add_argument("--eid", type=int, required=True)
            s.add_argument("--rno", required=True)
        else:
            s.add_argument("file", help="CSV whose header row names the kind: eid,rno,order_id "
                                        "(also without a header) | "
                                        "eid,invno,order_id,capture_id | "
                                        "eid,invno,credno,refund_id")
            s.add_argument("--dry-run", action="store_true",
                           help="report what would change, change nothing")
        s.set_defaults(func=func)
