"""Hot-path SQL: statements written once, run on the driver's own connection.

The journal's per-call transactions run a handful of fixed statements. Built as SQLAlchemy
expressions they cost more Python than the database takes to run them (compiling, cache
keys, result wrapping: the profile of journal v1 had SQLAlchemy at a third of the
gateway's CPU). These statements are plain SQL text with ``:name`` parameters, turned into
each driver's parameter style once, at import, and executed on the DBAPI connection inside
the transaction :class:`~gateway.store.database.Database` opened (so they commit and roll
back with everything else in it). Only portable SQL is used: SQLite 3.35+ and PostgreSQL
both take ``RETURNING`` and ``ON CONFLICT``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Sql:
    """One statement, with its text for each driver (sqlite3 takes ``:name``; psycopg
    takes ``%(name)s``)."""

    __slots__ = ("sqlite", "postgresql")

    def __init__(self, text: str) -> None:
        self.sqlite = " ".join(text.split())
        self.postgresql = _PARAM.sub(r"%(\1)s", self.sqlite.replace("%", "%%"))

    def text(self, conn: Connection) -> str:
        return self.postgresql if is_postgresql(conn) else self.sqlite


def is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def raw(conn: Connection) -> Any:
    """The DBAPI connection under ``conn`` (in ``conn``'s transaction)."""
    return conn.connection.dbapi_connection


def run(conn: Connection, stmt: Sql, params: Mapping[str, Any] | None = None) -> Any:
    """Execute and return the DBAPI cursor (``rowcount``, ``fetchone``...)."""
    cur = raw(conn).cursor()
    cur.execute(stmt.text(conn), params or {})
    return cur


def run_many(conn: Connection, stmt: Sql, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        raw(conn).cursor().executemany(stmt.text(conn), rows)


def one(conn: Connection, stmt: Sql, params: Mapping[str, Any] | None = None) -> Any:
    """The first row (a tuple) or None."""
    return run(conn, stmt, params).fetchone()


def columns(names: Iterable[str]) -> str:
    return ", ".join(names)


def integrity_error(conn: Connection) -> type[Exception]:
    """The driver's unique/foreign-key violation class."""
    return conn.dialect.dbapi.IntegrityError  # type: ignore[no-any-return,union-attr]
