"""``config check`` and ``reservations add|show|import``.

``reservations import`` takes reservations, invoices or credits (the CSV's header names the
kind) and checks each row against its order over REST (:mod:`gateway.tools.imports`).
``config check`` and ``reservations show`` write nothing: ``show`` opens the database
read-only, ``config check`` does not open it at all.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from typing import TYPE_CHECKING

from gateway.cli.common import (
    PROG, add_config_flag, add_db_flags, command_group, config_from, config_path, eid_flag,
    positive,
    with_parts,
)
from gateway.cli.progress import Progress
from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.tools import inputs
from gateway.tools.inputs import Exit
from gateway.tools import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from gateway.app import Components

IMPORT_FORMATS = ("table", "json", "csv")


def cmd_config_check(args: argparse.Namespace) -> int:
    """Exit 0: the file is valid; 1: it is not (the bad key named), or a merchant's console
    token is guessable; 2: no file given or it cannot be read. A guessable admin token is
    a warning (the demo configuration has one)."""
    from gateway.config import weak_tokens

    path = config_path(args)
    if path is None:
        config_from(None)  # raises the one "no configuration" message
    assert path is not None
    inputs.readable_file(path, "--config")
    try:
        config = load_config(path)
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return Exit.FINDING
    weak = weak_tokens(config, admin=config.admin_token_configured)
    for token in weak:
        prefix = "warning: " if token.path.startswith("gateway.") else ""
        print(f"{PROG}: {config.source}: {prefix}{token}", file=sys.stderr)
    if any(not t.path.startswith("gateway.") for t in weak):
        return Exit.FINDING
    print(f"{config.source}: OK, {len(config.merchants)} merchant(s): "
          + ", ".join(f"eid {m.eid} -> {m.base_url}" for m in config.merchants))
    return Exit.OK


def cmd_reservations_add(args: argparse.Namespace) -> int:
    """The admin API's ``POST /v1/reservations`` from a terminal, with the same checks
    (:func:`gateway.tools.inputs.register_reservation`)."""
    from gateway.model import Origin
    from gateway.store.mapping import ReservationConflictError

    async def run(parts: Components) -> int:
        inputs.merchant(parts.config, args.eid, "--eid")
        try:
            res = await inputs.register_reservation(parts.config, parts.store, parts.om,
                                                    args.eid, args.order_id, args.rno,
                                                    Origin.ADMIN.value)
        except ReservationConflictError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return Exit.FINDING
        print(json.dumps({"eid": res.eid, "rno": res.rno, "order_id": res.order_id}))
        return Exit.OK
    return with_parts(args, run, check=lambda config: inputs.merchant(config, args.eid,
                                                                      "--eid"))


def cmd_reservations_show(args: argparse.Namespace) -> int:
    from gateway.admin import invoice_json

    async def run(parts: Components) -> int:
        store = parts.store
        res = await store.get_reservation(args.eid, args.rno)
        if res is None:
            print(f"{PROG}: rno {args.rno} is unknown for eid {args.eid}: check the number, "
                  "or register it (reservations add|import)", file=sys.stderr)
            return Exit.FINDING
        invoices = await store.invoices_for(res.id)
        print(json.dumps({"eid": res.eid, "rno": res.rno, "order_id": res.order_id,
                          "status": res.status, "origin": res.origin,
                          "invoices": [invoice_json(i) for i in invoices]}, indent=2))
        return Exit.OK
    return with_parts(args, run, read_only=True,
                      check=lambda config: inputs.merchant(config, args.eid, "--eid"))


def cmd_reservations_import(args: argparse.Namespace) -> int:
    """Exit 0 when every row is added or unchanged, 1 when any was refused, 2 when the file
    cannot be read at all (nothing was checked or changed), 3 when Klarna did not answer
    for some row (import the file again)."""
    from gateway.tools.imports import ImportFormatError, read_csv, run_import

    path = inputs.readable_file(args.file)

    def check(config: Config) -> None:
        try:
            lines.extend(read_csv(path, config))
        except ImportFormatError as e:
            raise inputs.InputError(str(e)) from None

    lines: list[Any] = []

    async def run(parts: Components) -> int:
        with Progress() as progress:
            report = await run_import(parts.config, parts.store, parts.om, parts.store.clock,
                                      lines, dry_run=args.dry_run,
                                      concurrency=args.concurrency,
                                      progress=progress.callback)
        if args.format == "json":
            print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        elif args.format == "csv":
            sys.stdout.write(report.to_csv())
        else:
            print(report.format(args.file))
        if report.unreachable:
            print(f"{PROG}: Klarna did not answer for {report.unreachable} row(s): import "
                  f"{args.file} again (rows already added stay unchanged)", file=sys.stderr)
            return Exit.UNREACHABLE
        return Exit.FINDING if report.refused else Exit.OK
    return with_parts(args, run, check=check)


def register(sub: Any) -> None:
    cfg = command_group(sub, "config", "configuration",
                        "Configuration files: `config check` validates one (every key, "
                        "secrets resolved) without opening a database.")
    s = cfg.add_parser(
        "check", help="validate a configuration file",
        description="Load and validate a configuration file (every key, secrets read from "
                    "their environment variables or files) and list its merchants; the bad "
                    "key is named. Opens no database and writes nothing. Exit status 0: "
                    "valid; 1: invalid; 2: no file given, or it cannot be read.")
    add_config_flag(s)
    s.set_defaults(func=cmd_config_check)

    res = command_group(sub, "reservations", "the rno ↔ order_id mapping",
                        "Register, show and import reservations (and, by import, invoices "
                        "and credits) from before the migration.")
    s = res.add_parser(
        "add", help="register one reservation",
        description="Register one Klarna order as a reservation of an eid: with --rno the "
                    "ERP's reservation number, otherwise the gateway issues one. Prints the "
                    "mapping as JSON. The eid must be configured and the order must exist "
                    "at Klarna for that eid (checked with a GET, as the admin API does). "
                    "Exit status 1: the rno or order is already mapped otherwise; 2: the "
                    "eid is not configured or the order does not exist for it; 3: Klarna "
                    "or the database cannot be reached.")
    _common(s)
    s.add_argument("--eid", type=eid_flag, required=True, help="the merchant (configured)")
    s.add_argument("--order-id", required=True,
                   help="Klarna's order id (it must exist for that eid)")
    s.add_argument("--rno", default=None,
                   help="the ERP's reservation number (default: the gateway issues one)")
    s.set_defaults(func=cmd_reservations_add)

    s = res.add_parser(
        "show", help="show one reservation and its invoices (read-only)",
        description="Print one reservation, its invoices and their credits as JSON. Opens "
                    "the database read-only and creates nothing. Exit status 1: the rno is "
                    "unknown for that eid.")
    _common(s)
    s.add_argument("--eid", type=eid_flag, required=True, help="the merchant (configured)")
    s.add_argument("--rno", required=True, help="the reservation number")
    s.set_defaults(func=cmd_reservations_show)

    s = res.add_parser(
        "import", help="import reservations, invoices or credits from a CSV file",
        description="Import what the ERP holds from before the migration: reservations, "
                    "invoices or credits (the CSV's header row names the kind). Every row "
                    "is checked against its order over REST, a bounded number of orders at "
                    "a time, and reported on (progress on stderr when it is a terminal). "
                    "Exit status 0: every row added or unchanged; 1: some row refused; 2: "
                    "the file is unusable (nothing checked or changed); 3: Klarna did not "
                    "answer for some row (import the file again).")
    _common(s)
    s.add_argument("file", help="CSV whose header row names the kind: eid,rno,order_id "
                                "(also without a header) | "
                                "eid,invno,order_id,capture_id | "
                                "eid,invno,credno,refund_id")
    s.add_argument("--dry-run", action="store_true",
                   help="report what would change, change nothing")
    s.add_argument("--concurrency", type=positive, default=DEFAULT_CONCURRENCY, metavar="N",
                   help="orders read from Klarna at the same time")
    s.add_argument("--format", choices=IMPORT_FORMATS, default="table",
                   help="table: the report for people; json: the admin API's report; csv: "
                        "one row per input row")
    s.set_defaults(func=cmd_reservations_import)


def _common(s: argparse.ArgumentParser) -> None:
    add_config_flag(s)
    add_db_flags(s)
