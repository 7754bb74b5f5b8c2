"""``db upgrade``, ``config check`` and ``reservations add|show|import``."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from gateway.admin import invoice_json
from gateway.app import Components
from gateway.cli.common import config_from, with_parts
from gateway.config import DEFAULT_DB_URL, Config
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
    async def run(parts: Components) -> int:
        store, config = parts.store, parts.config
        rows, problems = _read_import_csv(Path(args.file), config)
        existing = {(r.eid, r.rno): r.order_id for r in await store.list_reservations()}
        by_order = {(eid, order): rno for (eid, rno), order in existing.items()}
        added = unchanged = 0
        for lineno, eid, rno, order_id in rows:
            if existing.get((eid, rno)) == order_id:
                unchanged += 1
                continue
            if (eid, rno) in existing or (eid, order_id) in by_order:
                problems.append((lineno, f"conflicts with an existing mapping "
                                         f"(eid {eid}, rno {rno}, order {order_id})"))
                continue
            if not args.dry_run:
                try:
                    await store.register_reservation(eid, order_id, rno, Origin.IMPORT.value)
                except ReservationConflictError as e:
                    problems.append((lineno, str(e)))
                    continue
            existing[(eid, rno)] = order_id
            by_order[(eid, order_id)] = rno
            added += 1
        verb = "would add" if args.dry_run else "added"
        print(f"{args.file}: {verb} {added}, unchanged {unchanged}, "
              f"problems {len(problems)}")
        for lineno, message in sorted(problems):
            print(f"  line {lineno}: {message}")
        return 1 if problems else 0
    return with_parts(args, run)


def _read_import_csv(path: Path, config: Config) -> tuple[list[tuple[int, int, str, str]],
                                                          list[tuple[int, str]]]:
    """Rows ``eid,rno,order_id`` (header optional); returns (good rows, problems)."""
    rows: list[tuple[int, int, str, str]] = []
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[int, str], int] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for lineno, rec in enumerate(csv.reader(f), start=1):
            if not rec or all(not c.strip() for c in rec):
                continue
            if lineno == 1 and rec[0].strip().lower() == "eid":
                continue
            if len(rec) != 3:
                problems.append((lineno, f"expected 3 columns eid,rno,order_id, got {len(rec)}"))
                continue
            eid_s, rno, order_id = (c.strip() for c in rec)
            if not eid_s.isdigit() or config.merchant(int(eid_s)) is None:
                problems.append((lineno, f"eid {eid_s!r} is not a configured merchant"))
                continue
            if not rno or len(rno) > 64 or not order_id or len(order_id) > 255:
                problems.append((lineno, "rno and order_id must be non-empty"))
                continue
            key = (int(eid_s), rno)
            if key in seen:
                problems.append((lineno, f"rno {rno} repeats line {seen[key]}"))
                continue
            seen[key] = lineno
            rows.append((lineno, int(eid_s), rno, order_id))
    return rows, problems


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
            s.add_argument("file", help="CSV with columns eid,rno,order_id")
            s.add_argument("--dry-run", action="store_true",
                           help="report what would change, change nothing")
        s.set_defaults(func=func)
