"""``klarna-gateway``: the console script.

Subcommands: ``serve``, ``sandbox``, ``db upgrade``, ``config check``,
``reservations add|show|import``, ``reconcile``, ``explain``. Long-running commands run the reactor
themselves; one-shot commands use ``task.react``. Only this module imports the global
reactor.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import (
    DEFAULT_ADMIN_LISTEN, DEFAULT_DB_URL, DEFAULT_LISTEN, DEFAULT_SANDBOX_LISTEN, Config,
    default_sandbox_config_path, load_config,
)
from gateway.errors import ConfigError


def _config(path: str | None, *, sandbox: bool = False) -> Config:
    if path is None:
        if not sandbox:
            raise ConfigError("no configuration file given (use --config FILE, or --sandbox "
                              "for the demo merchants)", "--config")
        path = str(default_sandbox_config_path())
    return load_config(path)


def _start_logging(verbose: bool = False) -> None:
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                                globalLogBeginner, textFileLogObserver)

    level = LogLevel.debug if verbose else LogLevel.info
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr),
                                    [LogLevelFilterPredicate(defaultLogLevel=level)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


# -- serve --------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor

    from gateway.service import Gateway, GatewayOptions

    config = _config(args.config, sandbox=args.sandbox)
    options = GatewayOptions(
        listen=args.listen, admin_listen=args.admin_listen, db_url=args.db,
        sandbox_listen=args.sandbox_listen if args.sandbox else None)
    _start_logging(args.verbose)
    gateway = Gateway(config, options, reactor)
    status = {"code": 0}

    def started(_: Any) -> None:
        print(f"klarna-gateway: legacy XML-RPC on {gateway.legacy_url}  admin API on "
              f"{gateway.admin_url}" + (f"  sandbox on {gateway.sandbox_url}"
                                        if gateway.sandbox_url else ""), flush=True)

    def failed(f: Any) -> None:
        print(f"klarna-gateway: cannot start: {f.getErrorMessage()}", file=sys.stderr)
        status["code"] = 1
        reactor.stop()  # type: ignore[attr-defined]

    def begin() -> None:
        d = defer.ensureDeferred(gateway.start())
        d.addCallbacks(started, failed)

    reactor.callWhenRunning(begin)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", lambda: defer.ensureDeferred(gateway.stop()))
    reactor.run()  # type: ignore[attr-defined]
    return status["code"]


def cmd_sandbox(args: argparse.Namespace) -> int:
    from gateway.sandbox.service import run_sandbox

    return run_sandbox(args.listen, args.config, seed=args.seed)


# -- db / config --------------------------------------------------------------------------

def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.store import schema
    from gateway.store.database import make_engine

    engine = make_engine(args.db)
    before, after = schema.upgrade(engine)
    engine.dispose()
    print(f"schema {before or 'empty'} -> {after}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _config(args.config)
    print(f"{config.source}: OK, {len(config.merchants)} merchant(s): "
          + ", ".join(f"eid {m.eid} -> {m.base_url}" for m in config.merchants))
    return 0


# -- reservations -------------------------------------------------------------------------

def _with_store(args: argparse.Namespace, fn: Any) -> int:
    """Run ``await fn(store, config)`` with a ready store under ``task.react``."""
    from twisted.internet import task

    from gateway.store import schema
    from gateway.store.database import Database
    from gateway.store.store import Store

    config = _config(args.config, sandbox=args.config is None)
    result = {"code": 0}

    async def main(reactor: Any) -> None:
        db = Database(args.db, reactor)
        try:
            schema.check(db.engine)
            store = Store(db, reactor, rno_start=config.gateway.rno_start,
                          invno_start=config.gateway.invno_start)
            result["code"] = await fn(store, config, reactor)
        finally:
            db.stop()

    try:
        task.react(main)
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return result["code"]


def cmd_reservations_add(args: argparse.Namespace) -> int:
    from gateway.store.store import ReservationConflictError

    async def run(store: Any, config: Config, reactor: Any) -> int:
        if config.merchant(args.eid) is None:
            print(f"eid {args.eid} is not configured", file=sys.stderr)
            return 2
        try:
            res = await store.register_reservation(args.eid, args.order_id, args.rno, "admin")
        except ReservationConflictError as e:
            print(str(e), file=sys.stderr)
            return 1
        print(json.dumps({"eid": res.eid, "rno": res.rno, "order_id": res.order_id}))
        return 0
    return _with_store(args, run)


def cmd_reservations_show(args: argparse.Namespace) -> int:
    from gateway.admin import invoice_json

    async def run(store: Any, config: Config, reactor: Any) -> int:
        res = await store.get_reservation(args.eid, args.rno)
        if res is None:
            print(f"rno {args.rno} is unknown for eid {args.eid}", file=sys.stderr)
            return 1
        invoices = await store.invoices_for(res.id)
        print(json.dumps({"eid": res.eid, "rno": res.rno, "order_id": res.order_id,
                          "status": res.status, "origin": res.origin,
                          "invoices": [invoice_json(i) for i in invoices]}, indent=2))
        return 0
    return _with_store(args, run)


def cmd_reservations_import(args: argparse.Namespace) -> int:
    from gateway.store.store import ReservationConflictError

    async def run(store: Any, config: Config, reactor: Any) -> int:
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
                    await store.register_reservation(eid, order_id, rno, "import")
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
    return _with_store(args, run)


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


# -- reconcile ----------------------------------------------------------------------------

def cmd_reconcile(args: argparse.Namespace) -> int:
    from gateway.reconcile import run_reconcile

    return run_reconcile(args)


def cmd_explain(args: argparse.Namespace) -> int:
    from gateway.explain import run_explain

    return run_explain(args)


# -- parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="klarna-gateway", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="TOML configuration file")
    s.add_argument("--listen", default=DEFAULT_LISTEN, help="legacy XML-RPC endpoint")
    s.add_argument("--admin-listen", default=DEFAULT_ADMIN_LISTEN, help="admin API endpoint")
    s.add_argument("--sandbox-listen", default=DEFAULT_SANDBOX_LISTEN,
                   help="sandbox endpoint (with --sandbox)")
    s.add_argument("--db", default=DEFAULT_DB_URL, help="database URL")
    s.add_argument("--sandbox", action="store_true",
                   help="run the Order Management sandbox in-process and point merchants at it")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("sandbox", help="run the Order Management sandbox alone")
    s.add_argument("--listen", default=DEFAULT_SANDBOX_LISTEN)
    s.add_argument("--config", default=None)
    s.add_argument("--seed", type=int, default=None, metavar="N",
                   help="reproducible ids and a frozen clock (overrides [sandbox] seed)")
    s.set_defaults(func=cmd_sandbox)

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
