"""Upgrading to journal v2 (migration 0005) with calls in flight loses nothing.

A store at schema 0004 holds entries as journal v1 wrote them: a capture journaled and
sent whose process died (pending, lease lapsed), one whose client was told 9119 (pending,
released), a success whose reply never reached its client (still bound), a delivered one,
one whose binding had ended, and a fault. After ``db upgrade`` every one has its phase; the
gateway recovers the unfinished ones with their journaled keys (Klarna applies each
capture once), and the client's identical retry of the undelivered success is given that
reply. Downgrading and upgrading again gives the same phases.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from gateway.binding import Phase
from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.engine.recovery import recover_unfinished
from gateway.store import schema
from gateway.store.database import make_engine
from gateway.wire.values import ArtNo
from tests.engine.world import Process, World

PY = "python:api:3.1.0"


def activate(rno: str) -> Activate:
    return Activate(eid=1234, client_version=PY, rno=rno, artnos=(ArtNo("ART-1", 1),))


def _migrate(url: str, revision: str, down: bool = False) -> None:
    """``db upgrade`` (the real code); a downgrade the same way (keys checked at the end)."""
    engine = make_engine(url)
    if not down:
        schema.upgrade(engine)
        engine.dispose()
        return
    with engine.connect() as conn:
        conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            cfg = schema._alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
            assert not conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    engine.dispose()


def _v1_entry(conn: Any, n: int, *, rno: str, order_id: str | None, state: str,
              lease_token: str | None = None, lease_until: float | None = None,
              inflight: bool = True, delivered_at: float | None = None,
              delivering_until: float | None = None, reply: Any = None,
              fault: int | None = None, invno: str | None = None, now: float) -> str:
    """A journal row exactly as journal v1 wrote it; its fingerprint."""
    call = Activate(eid=1234, client_version=PY, rno=rno, artnos=(ArtNo("ART-1", 1),))
    from gateway.engine.claim import Ticket

    ticket = Ticket.of(REGISTRY.spec("activate"), call, 0, 0)
    conn.execute(text(
        "INSERT INTO journal (id, eid, method, fingerprint, inflight, call_json, rno, invno, "
        "order_id, state, reply_json, fault_code, fault_string, lease_token, lease_until, "
        "attempts, created_at, updated_at, delivered_at, delivering_until) VALUES (:id, 1234, "
        "'activate', :fp, :inflight, :call, :rno, :invno, :order_id, :state, :reply, :fault, "
        ":fault_string, :lease_token, :lease_until, 1, :now, :now, :delivered_at, "
        ":delivering_until)"), {
            "id": n, "fp": ticket.fingerprint, "inflight": ticket.fingerprint if inflight
            else None, "call": ticket.call_json, "rno": rno, "invno": invno,
            "order_id": order_id, "state": state,
            "reply": None if reply is None else json.dumps(reply), "fault": fault,
            "fault_string": None if fault is None else "not_allowed_operation: x",
            "lease_token": lease_token, "lease_until": lease_until, "now": now,
            "delivered_at": delivered_at, "delivering_until": delivering_until})
    return ticket.fingerprint


def _v1_capture_step(conn: Any, n: int, *, reservation_id: int, order_id: str, invno: str,
                     now: float) -> None:
    effect = {"kind": "capture", "reservation_id": reservation_id, "order_id": order_id,
              "status_after": "PART_CAPTURED", "invno": invno}
    body = {"captured_amount": 10000, "order_lines": [{
        "type": "physical", "reference": "ART-1", "name": "ART-1", "quantity": 1,
        "unit_price": 10000, "tax_rate": 2500, "total_amount": 10000,
        "total_discount_amount": 0, "total_tax_amount": 2000}]}
    conn.execute(text(
        "INSERT INTO journal_steps (journal_id, step, http_method, path, body_json, "
        "idempotency_key, purpose, effect_json, money, state, updated_at) VALUES (:id, 1, "
        "'POST', :path, :body, :key, 'capture listed articles', :effect, 'capture', "
        "'planned', :now)"), {
            "id": n, "path": f"/ordermanagement/v1/orders/{order_id}/captures",
            "body": json.dumps(body), "key": f"00000000-0000-4000-8000-00000000000{n}",
            "effect": json.dumps(effect), "now": now})


def _phases(world: World) -> dict[int, str]:
    engine = make_engine(world.db_url)
    with engine.connect() as conn:
        found = {r.id: r.phase for r in conn.execute(text("SELECT id, phase FROM journal"))}
    engine.dispose()
    return found


@pytest.fixture
def upgraded(tmp_path: Path) -> tuple[World, Process, dict[str, Any]]:
    """Six v1 entries on real sandbox orders, then ``db upgrade``."""
    world = World(str(tmp_path / "gw.db"))
    proc = world.process()
    rnos = [world.create_order(proc) for _ in range(3)]
    res = [world.run(proc.parts.store.get_reservation(1234, r), proc) for r in rnos]
    proc.parts.db.stop()
    world.processes.clear()
    _migrate(world.db_url, "0004", down=True)
    now = world.clock.seconds()
    engine = make_engine(world.db_url)
    with engine.begin() as conn:
        # 1: died after sending (lease lapsed), 2: told 9119 (released): both unfinished.
        fp1 = _v1_entry(conn, 1, rno=rnos[0], order_id=res[0].order_id, state="pending",
                        lease_token="dead", lease_until=now - 60, invno="9000000100",
                        now=now - 120)
        _v1_capture_step(conn, 1, reservation_id=res[0].id, order_id=res[0].order_id,
                         invno="9000000100", now=now - 120)
        fp2 = _v1_entry(conn, 2, rno=rnos[1], order_id=res[1].order_id, state="pending",
                        invno="9000000101", now=now - 30)
        _v1_capture_step(conn, 2, reservation_id=res[1].id, order_id=res[1].order_id,
                         invno="9000000101", now=now - 30)
        # 3: a success never delivered (bound), 4: delivered, 5: binding ended, 6: a fault.
        fp3 = _v1_entry(conn, 3, rno=rnos[2], order_id=res[2].order_id, state="done",
                        reply=["ok", "9000000077"], now=now - 10)
        _v1_entry(conn, 4, rno="x4", order_id=None, state="done", inflight=False,
                  delivered_at=now - 5, reply="ok", now=now - 9)
        _v1_entry(conn, 5, rno="x5", order_id=None, state="done", inflight=False,
                  reply="ok", now=now - 8)
        _v1_entry(conn, 6, rno="x6", order_id=None, state="failed", inflight=False,
                  fault=9103, now=now - 7)
    engine.dispose()
    _migrate(world.db_url, "head")
    yield world, world.process(), {"rnos": rnos, "fps": (fp1, fp2, fp3)}
    world.close()


def test_live_entries_get_their_phase(upgraded: tuple[World, Process, dict[str, Any]]
                                      ) -> None:
    world, _, _ = upgraded
    assert _phases(world) == {1: "running", 2: "released", 3: "undelivered", 4: "delivered",
                              5: "expired", 6: "failed"}
    _migrate(world.db_url, "0004", down=True)
    _migrate(world.db_url, "head")
    assert _phases(world) == {1: "running", 2: "released", 3: "undelivered", 4: "delivered",
                              5: "expired", 6: "failed"}


def test_an_upgraded_gateway_recovers_and_replays(
        upgraded: tuple[World, Process, dict[str, Any]]) -> None:
    world, proc, made = upgraded
    rnos = made["rnos"]
    outcomes = world.run(recover_unfinished(proc.parts.engine), proc)
    assert outcomes == {"done": 2}
    for rno, invno in zip(rnos[:2], ("9000000100", "9000000101")):
        assert world.captures_applied(rno, proc) == 1
        res = world.run(proc.parts.store.get_reservation(1234, rno), proc)
        [inv] = world.run(proc.parts.store.invoices_for(res.id), proc)
        assert inv.invno == invno  # the number issued before the upgrade
    # The clients' identical retries: each given its operation's reply, no new capture.
    merchant = world.config.merchant(1234)
    for rno, reply in ((rnos[0], ["ok", "9000000100"]), (rnos[2], ["ok", "9000000077"])):
        call = activate(rno)
        answer = world.run(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call),
                           proc)
        assert answer.replayed and answer.reply == reply
    assert world.captures_applied(rnos[2], proc) == 0
    phases = _phases(world)
    assert phases[1] == phases[3] == Phase.REPLYING.value


@pytest.mark.postgres
def test_live_entries_get_their_phase_on_postgresql() -> None:
    """The same upgrade on PostgreSQL (columns dropped in place, the partial unique index
    built over the bound entries)."""
    from tests.conftest import make_pg_schema

    url, drop = make_pg_schema()
    try:
        engine = make_engine(url)
        with engine.begin() as conn:
            cfg = schema._alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004")
        with engine.begin() as conn:
            _v1_entry(conn, 1, rno="1", order_id="o1", state="pending", lease_token="t",
                      lease_until=1.0, now=0.0)
            _v1_entry(conn, 2, rno="2", order_id="o2", state="pending", now=0.0)
            _v1_entry(conn, 3, rno="3", order_id="o3", state="done", reply="ok", now=0.0)
            _v1_entry(conn, 4, rno="4", order_id=None, state="done", inflight=False,
                      delivered_at=1.0, reply="ok", now=0.0)
            _v1_entry(conn, 5, rno="5", order_id=None, state="done", inflight=False,
                      reply="ok", now=0.0)
            _v1_entry(conn, 6, rno="6", order_id=None, state="failed", inflight=False,
                      fault=9103, now=0.0)
        schema.upgrade(engine)
        with engine.connect() as conn:
            phases = {r.id: r.phase for r in conn.execute(text("SELECT id, phase FROM journal"))}
            token = conn.execute(text("SELECT token FROM journal WHERE id = 1")).scalar_one()
        assert phases == {1: "running", 2: "released", 3: "undelivered", 4: "delivered",
                          5: "expired", 6: "failed"}
        assert token == "t"  # a live lease keeps its holder's token
        engine.dispose()
    finally:
        drop()
