"""Copying a whole store to another database: ``klarna-gateway db port``.

The typical move is a single-process SQLite store to PostgreSQL (several processes). What
has to survive is everything the gateway remembers: every table row (ids kept, so the
foreign keys and the journal's references stay true), the install id, and the number
counters, so the target never issues an rno or invno the source already issued.

Rules, in order:

1. The source must be at the current schema and idle: no live lease on a journal entry or
   an order, and for SQLite no ``-wal`` file (a process has the file open). Stop every
   gateway first; the copy is also checked afterwards (the source re-read: if anything
   changed while copying, the port fails).
2. The target must hold no data; it is migrated with the same code as ``db upgrade``.
3. One read transaction on the source (PostgreSQL: a repeatable-read snapshot), one write
   transaction on the target: a failed copy leaves the target migrated and empty.
4. Counters: the next number of each counter is what the source would hand out, raised
   past the highest number of that counter's range found in the store (never a collision).
   PostgreSQL gets ``setval`` on ``rno_seq``/``invno_seq`` and on every table's id
   sequence; SQLite gets ``counters`` rows.
5. Verification: row count and checksum of every table on both sides, the next numbers the
   target would issue (read without consuming one), and the source unchanged.

Checksums are order-independent (the sum of each row's SHA-256 modulo 2**256), so text
primary keys sorted differently by SQLite and a PostgreSQL collation still compare.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from gateway.store import models as m
from gateway.store import schema
from gateway.store.database import make_engine, normalise_url, sqlite_path

BATCH = 1000
#: Counter name → (table, column) pairs whose numbers come from it.
COUNTERS: dict[str, tuple[tuple[Table, str], ...]] = {
    "rno": ((m.reservations, "rno"),),
    "invno": ((m.invoices, "invno"), (m.journal, "invno")),
}
#: Copied row by row (``counters`` is state, set from the counters' values instead).
TABLES: tuple[Table, ...] = tuple(t for t in m.metadata.sorted_tables if t is not m.counters)


class PortError(Exception):
    """The port cannot (or did not) happen as asked; the message says what to do."""


@dataclass(frozen=True)
class TableCopy:
    name: str
    rows: int
    checksum: str


@dataclass
class PortReport:
    tables: list[TableCopy] = field(default_factory=list)
    #: Counter name → the number the source would issue next, and the target's.
    source_next: dict[str, int] = field(default_factory=dict)
    target_next: dict[str, int] = field(default_factory=dict)


def port(source_url: str, target_url: str, *, starts: dict[str, int],
         now: float) -> PortReport:
    """Copy, then verify; raises :class:`PortError` (nothing claimed) on any mismatch."""
    if normalise_url(source_url) == normalise_url(target_url):
        raise PortError("source and target are the same database")
    _refuse_wal(source_url)
    source = make_engine(source_url, read_only=True)
    target = make_engine(target_url)
    try:
        schema.check(source)
        with _snapshot(source) as src:
            _refuse_live(src, now)
        _refuse_data(target)
        schema.upgrade(target)
        with _snapshot(source) as src, target.begin() as dst:
            report = _copy(src, dst, starts)
        _verify(target, report, starts)
        with _snapshot(source) as src:
            again = {t.name: _table_sum(src, t) for t in TABLES}
            again_next = {name: _next_in_store(src, name, starts[name]) for name in COUNTERS}
        if again != {c.name: (c.rows, c.checksum) for c in report.tables} \
                or again_next != report.source_next:
            raise PortError("the source changed while it was copied: a gateway is still "
                            "using it; stop every gateway, empty the target and run again")
        return report
    finally:
        source.dispose()
        target.dispose()


# -- preconditions -------------------------------------------------------------------------


def _refuse_wal(url: str) -> None:
    url = normalise_url(url)
    path = sqlite_path(url) if url.startswith("sqlite") else None
    if path is not None and os.path.exists(path + "-wal"):
        raise PortError(f"{path} is open in another process ({path}-wal exists): stop "
                        "every gateway using it first (if none runs, `klarna-gateway db "
                        "upgrade --db URL` once closes it cleanly)")


class _snapshot:
    """A read transaction on the source: one consistent view of every table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Connection:
        conn = self.engine.connect()
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        self.conn = conn
        self.tx = conn.begin()
        return conn

    def __exit__(self, *exc: Any) -> None:
        self.tx.rollback()
        self.conn.close()


def _refuse_live(conn: Connection, now: float) -> None:
    j, r = m.journal, m.reservations
    live = conn.execute(select(func.count()).select_from(j).where(
        j.c.phase.in_(("running", "replying")), j.c.until > now)).scalar_one()
    locked = conn.execute(select(func.count()).select_from(r).where(
        r.c.lock_until > now)).scalar_one()
    if live or locked:
        raise PortError(f"the source is in use ({live} call(s) running, {locked} order(s) "
                        "locked): stop every gateway using it first")


def _refuse_data(engine: Engine) -> None:
    """The target may be empty or migrated, never hold a store already."""
    names = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        for table in (*TABLES, m.counters):
            if table.name not in names or table is m.meta:
                continue
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                raise PortError(f"the target is not empty (table {table.name} has rows): "
                                "port into an empty database only")
        if conn.dialect.name == "postgresql" and "journal" in names:
            for name in COUNTERS:
                if _pg_next(conn, name) != 1:
                    raise PortError(f"the target is not empty ({name}_seq has issued "
                                    "numbers): port into an empty database only")


# -- copying -------------------------------------------------------------------------------


def _copy(src: Connection, dst: Connection, starts: dict[str, int]) -> PortReport:
    report = PortReport()
    dst.execute(m.meta.delete())  # the migration's fresh install id; the source's comes next
    for table in TABLES:
        rows, total = 0, 0
        for batch in _batches(src, table):
            dst.execute(table.insert(), [dict(row._mapping) for row in batch])
            rows += len(batch)
            total = (total + sum(_row_hash(row) for row in batch)) % 2**256
        report.tables.append(TableCopy(table.name, rows, f"{total:064x}"))
    for name in COUNTERS:
        report.source_next[name] = _next_in_store(src, name, starts[name])
        report.target_next[name] = max(report.source_next[name],
                                       _past_highest(src, name, starts[name]))
        _set_next(dst, name, report.target_next[name], starts[name])
    if dst.dialect.name == "postgresql":
        _reset_id_sequences(dst)
    return report


def _batches(conn: Connection, table: Table) -> Iterator[list[Any]]:
    query = select(table).order_by(*table.primary_key.columns)
    result = conn.execution_options(stream_results=True).execute(query)
    yield from (list(part) for part in result.partitions(BATCH))


def _row_hash(row: Any) -> int:
    data = json.dumps(list(row), default=str, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(data.encode()).digest(), "big")


def _table_sum(conn: Connection, table: Table) -> tuple[int, str]:
    rows, total = 0, 0
    for batch in _batches(conn, table):
        rows += len(batch)
        total = (total + sum(_row_hash(row) for row in batch)) % 2**256
    return rows, f"{total:064x}"


# -- counters ------------------------------------------------------------------------------


def _next_in_store(conn: Connection, name: str, start: int) -> int:
    """The number this store would issue next for ``name`` (see ``mapping.next_number``)."""
    if conn.dialect.name == "postgresql":
        n = _pg_next(conn, name)
    else:
        row = conn.execute(select(m.counters.c.next_value).where(
            m.counters.c.name == name)).first()
        n = 1 if row is None else int(row.next_value)
    return start + n - 1


def _pg_next(conn: Connection, name: str) -> int:
    """The value ``nextval`` would return, read without consuming it."""
    row = conn.execute(text(f"SELECT last_value, is_called FROM {name}_seq")).one()
    return int(row.last_value) + 1 if row.is_called else int(row.last_value)


def _past_highest(conn: Connection, name: str, start: int) -> int:
    """One past the highest number in the counter's range (``>= start``) held anywhere."""
    highest = start - 1
    for table, column in COUNTERS[name]:
        for (value,) in conn.execute(select(table.c[column]).where(
                table.c[column].is_not(None))):
            if value.isdigit() and len(value) == len(str(start)) and int(value) >= start:
                highest = max(highest, int(value))
    return highest + 1


def _set_next(conn: Connection, name: str, number: int, start: int) -> None:
    """Make ``number`` the next one issued (``mapping.next_number`` adds ``start - 1``)."""
    n = number - start + 1
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SELECT setval('{name}_seq', :n, false)"), {"n": n})
    else:
        conn.execute(m.counters.delete().where(m.counters.c.name == name))
        conn.execute(m.counters.insert().values(name=name, next_value=n))


def _reset_id_sequences(conn: Connection) -> None:
    """Explicit ids were inserted: each serial column's sequence continues after them."""
    for table in TABLES:
        col = table.autoincrement_column
        if col is None:
            continue
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
            f"COALESCE((SELECT MAX({col.name}) FROM {table.name}), 0) + 1, false)"))


# -- verification --------------------------------------------------------------------------


def _verify(target: Engine, report: PortReport, starts: dict[str, int]) -> None:
    if schema.current_revision(target) != m.SCHEMA_HEAD:
        raise PortError("the target is not at the current schema after the copy")
    with target.connect() as conn:
        for copy in report.tables:
            rows, checksum = _table_sum(conn, m.metadata.tables[copy.name])
            if (rows, checksum) != (copy.rows, copy.checksum):
                raise PortError(f"verification failed: table {copy.name} has {rows} rows "
                                f"(checksum {checksum[:16]}) in the target, {copy.rows} "
                                f"({copy.checksum[:16]}) in the source")
        for name, expected in report.target_next.items():
            found = _next_in_store(conn, name, starts[name])
            if found != expected:
                raise PortError(f"verification failed: the target would issue {name} "
                                f"{found}, expected {expected}")
