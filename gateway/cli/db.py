"""``db upgrade`` and ``db port``: the database administration commands.

``db upgrade`` reads no configuration: it migrates a schema and touches no merchant.
``db port`` needs one: the next rno/invno it reports and sets are the configured starts
plus the counters (:func:`gateway.store.mapping.next_number`).
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

from gateway.cli.common import (
    CliError, add_config_flag, add_db_flags, command_group, config_from, db_url,
    require_sqlite_file,
    url_from_file,
)
from gateway.tools import inputs


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway import files
    from gateway.store import schema
    from gateway.store.database import make_engine

    url = db_url(args)
    sqlite = files.sqlite_file(url)
    if sqlite is not None:
        files.create_private(sqlite)  # a new SQLite store is private (0600)
    engine = make_engine(url)
    try:
        before, after = schema.upgrade(engine)
    finally:
        engine.dispose()
    print(f"schema {before or 'empty'} -> {after}")
    return 0


def shown(url: str) -> str:
    """A URL fit to print: the password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported when it is used
        return url


def cmd_db_port(args: argparse.Namespace) -> int:
    from gateway import files
    from gateway.store.port import PortError, port

    config = config_from(args.config)
    source = inputs.database_url(args.source or url_from_file(args.source_file, "--from-file"),
                                 "--from")
    target = inputs.database_url(args.target or url_from_file(args.target_file, "--to-file"),
                                 "--to")
    require_sqlite_file(source)
    target_file = files.sqlite_file(target)
    # A new SQLite target is private (0600); refused before anything was written, it goes.
    created = target_file is not None and files.create_private(target_file)
    starts = {"rno": config.gateway.rno_start, "invno": config.gateway.invno_start}
    try:
        report = port(source, target, starts=starts, now=time.time())
    except BaseException as e:
        if created and target_file is not None and os.path.getsize(target_file) == 0:
            os.unlink(target_file)
        if isinstance(e, PortError):
            raise CliError(f"db port: {e}") from None
        raise
    print(f"copied {shown(source)} -> {shown(target)}")
    width = max(len(t.name) for t in report.tables)
    print(f"  {'table'.ljust(width)}  {'rows':>9}  checksum")
    for t in report.tables:
        print(f"  {t.name.ljust(width)}  {t.rows:>9}  {t.checksum[:16]}")
    for name in report.target_next:
        src, dst = report.source_next[name], report.target_next[name]
        note = "as the source" if src == dst else \
            f"the source's counter said {src}; raised past the highest {name} in the store"
        print(f"  next {name} {dst} ({note})")
    print(f"verified: row counts and checksums of {len(report.tables)} tables match, the "
          "target issues the numbers above, the source did not change while copied")
    return 0


def register(sub: Any) -> None:
    db = command_group(sub, "db", "database administration",
                       "Migrate a database, or copy a whole store to another database.")
    s = db.add_parser(
        "upgrade", help="migrate the schema to the newest version",
        description="Migrate the database to the schema this version needs (creating a "
                    "SQLite file if there is none). The only command that migrates a "
                    "shared PostgreSQL database: run it once before starting the gateways. "
                    "Reads no configuration. Exit status 2: the URL names no usable "
                    "database; 3: the database cannot be reached.")
    add_db_flags(s)
    s.set_defaults(func=cmd_db_upgrade)

    s = db.add_parser(
        "port", help="copy a whole store into an empty database (e.g. SQLite to PostgreSQL)",
        description="Copy every table of a store (ids, install id and the rno/invno counters "
                    "included) into an empty database, which is first migrated like `db "
                    "upgrade` does; a target holding data is refused. Stop every gateway "
                    "using the source first: a source with running calls, locked orders or "
                    "(SQLite) an open -wal file is refused, and a source that changes while "
                    "copied fails the port. The copy is verified: row count and checksum "
                    "per table, and the next numbers the target would issue.")
    add_config_flag(s, extra=": the rno/invno starts")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", metavar="URL", default=None,
                        help="the store to copy, e.g. sqlite:///gateway.db (required: this "
                             "or --from-file)")
    source.add_argument("--from-file", dest="source_file", metavar="PATH", default=None,
                        help="a file whose first line is the source URL (required: this or "
                             "--from)")
    target = s.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", dest="target", metavar="URL", default=None,
                        help="the empty database, e.g. postgresql://gateway@db/gateway; "
                             "with a password use --to-file (required: this or --to-file)")
    target.add_argument("--to-file", dest="target_file", metavar="PATH", default=None,
                        help="a file whose first line is the target URL (required: this or "
                             "--to)")
    s.set_defaults(func=cmd_db_port)
