"""``klarna-gateway journal`` as a subprocess against a real store: same filters and records
as ``GET /v1/journal``, and it opens the database read-only: it creates and changes nothing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from twisted.internet import defer, task

from gateway.config import default_sandbox_config_path
from gateway.store import schema
from gateway.store.database import Database, make_engine
from tests.store.test_search import Outcome
from gateway.store.store import Store
from gateway.testing.processes import run_cli
from gateway.tools import journal as js
from tests.conftest import PG_DSN, make_pg_schema
from tests.store.test_search import make_call

T0 = 1_793_491_200.0  # 2026-11-01T00:00:00Z


def _sync(coro: Any) -> Any:
    """Drive a coroutine on the inline (non-threaded) store to completion."""
    out: list[Any] = []
    defer.ensureDeferred(coro).addBoth(out.append)
    assert out
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def populate(url: str) -> None:
    """Six calls of eid 1234 (one per minute) and one of 5678, through the Store facade."""
    engine = make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    clock = task.Clock()
    clock.advance(T0)
    db = Database(url, clock, threaded=False)
    store = Store(db, clock)
    try:
        res = _sync(store.register_reservation(1234, "order-1", None, "admin"))
        for i in range(5):
            _sync(make_call(store, eid=1234, method="extend_expiry_date",
                            call={"rno": res.rno, "orderid1": f"ERP-{i}"}, rno=res.rno,
                            outcome=Outcome(reply="20261129T000000")))
            clock.advance(60)
        _sync(make_call(store, eid=1234, method="activate", call={"rno": "999"}, rno="999",
                        outcome=Outcome(fault_code=9109, fault_string="rno: unknown <b>")))
        _sync(make_call(store, eid=5678, method="activate", call={"rno": "1"}, rno="1",
                        outcome=Outcome(fault_code=9109, fault_string="x")))
    finally:
        db.stop()


def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def journal(*args: str) -> Any:
    return run_cli("journal", "--config", str(default_sandbox_config_path()), *args)


@pytest.mark.slow
def test_formats_filters_and_paging(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/gateway.db"
    populate(url)
    before = fingerprint(tmp_path)
    table = journal("--db", url, "--eid", "1234", "--limit", "4")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "created_at", "eid", "method"]
    assert len(lines) == 5 and "9109" in lines[1] and "2026-11-01T00:05:00.000Z" in lines[1]
    cursor = table.stderr.split("--cursor ")[1].split()[0]
    rest = journal("--db", url, "--eid", "1234", "--cursor", cursor, "--format", "json")
    page = json.loads(rest.stdout)
    assert [e["call"]["orderid1"] for e in page["entries"]] == ["ERP-1", "ERP-0"]
    assert page["next_cursor"] is None
    found = json.loads(journal("--db", url, "--merchant-order-id", "ERP-3",
                               "--format", "json").stdout)
    assert [e["call"]["orderid1"] for e in found["entries"]] == ["ERP-3"]
    lines = journal("--db", url, "--outcome", "9109", "--format", "jsonl").stdout.splitlines()
    assert sorted(json.loads(x)["eid"] for x in lines) == [1234, 5678]
    window = journal("--db", url, "--since", "2026-11-01T00:01:00Z", "--until",
                     "2026-11-01T00:03:00Z", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(window.stdout)))
    assert [r["orderid1"] for r in rows] == ["ERP-2", "ERP-1"]
    assert list(rows[0]) == list(js.CSV_COLUMNS)
    bad = journal("--db", url, "--outcome", "maybe")
    assert bad.returncode == 2 and "--outcome" in bad.stderr
    assert fingerprint(tmp_path) == before  # nothing written, no -wal/-shm left behind


@pytest.mark.slow
def test_creates_nothing(tmp_path: Path) -> None:
    """A missing database is an error, not a new empty file; an old schema is refused."""
    missing = tmp_path / "nope.db"
    result = journal("--db", f"sqlite:///{missing}")
    assert result.returncode == 2 and f"no database at {missing}" in result.stderr
    assert list(tmp_path.iterdir()) == []
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    result = journal("--db", f"sqlite:///{empty}")
    assert result.returncode == 2 and "db upgrade" in result.stderr
    assert empty.read_bytes() == b"" and [p.name for p in tmp_path.iterdir()] == ["empty.db"]


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres",
                                                           marks=pytest.mark.postgres)])
def test_read_only_engine_refuses_writes(tmp_path: Path, engine: str) -> None:
    """What the CLI opens cannot write, on either database."""
    drop = None
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path}/ro.db"
    else:
        url, drop = make_pg_schema()
    try:
        populate(url)
        db = Database(url, task.Clock(), threaded=False, read_only=True)
        try:
            count = db.run_sync("count", lambda c: c.execute(
                text("SELECT count(*) FROM journal")).scalar_one())
            assert count == 7
            with pytest.raises(DBAPIError):
                db.run_sync("write", lambda c: c.execute(text(
                    "UPDATE journal SET method = 'x'")))
        finally:
            db.stop()
    finally:
        if drop:
            drop()


@pytest.mark.slow
@pytest.mark.postgres
def test_cli_on_postgres() -> None:
    assert PG_DSN
    url, drop = make_pg_schema()
    try:
        populate(url)
        out = journal("--db", url, "--eid", "5678", "--format", "jsonl")
        assert out.returncode == 0, out.stderr
        [line] = out.stdout.splitlines()
        assert json.loads(line)["outcome"] == "9109"
    finally:
        drop()
