"""The gateway while its database is away, and after it returns.

PostgreSQL becomes unreachable (connections dropped, new ones refused: a cut TCP link, so
the PostgreSQL other sessions share keeps running); SQLite's disk fills up (a small tmpfs).
While the store is away a legacy call answers 9119 ("retry the same call") within its
budget, ``/readyz`` answers 503 naming the database and ``/healthz`` 200; a call whose REST
step was applied just before the outage is never answered as a success it could not
record. When the store returns, recovery finishes that call: Klarna applied its capture
once, the store has it, and the client's retry gets the reply.
"""
from __future__ import annotations

import os
import subprocess
import time
import xmlrpc.client
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from sqlalchemy import text
from twisted.internet import defer

from gateway.config import default_sandbox_config_path, load_config
from gateway.store.database import make_engine
from tests.conftest import PG_DSN, make_pg_schema
from tests.harness import Harness, start_gateway
from tests.netcut import Link, linked
from tests.waiting import eventually

DATABASE_AWAY = "timeout: the gateway's database is unavailable; retry the same call"
#: Short budgets, so that a lease left by the outage lapses within seconds.
BUDGET, REST_TIMEOUT = 2.0, 1.0


def _config() -> Any:
    config = load_config(default_sandbox_config_path())
    return replace(config, gateway=replace(config.gateway, retry_budget_seconds=BUDGET,
                                           rest_timeout_seconds=REST_TIMEOUT))


def _parcel(h: Harness, rno: str, artno: str) -> Callable[[], Any]:
    """One partial activation as an ERP sends it; the same call each time it is run."""
    def call() -> Any:
        k = h.sdk()
        k.add_art_no(qty=1, artno=artno)
        return k.activate(rno, ocr=f"parcel-{artno}")
    return call


async def _answer(h: Harness, call: Callable[[], Any]) -> tuple[Any, float]:
    """(the reply or the fault, seconds it took)."""
    started = time.monotonic()
    try:
        got: Any = await h.call(call)
    except xmlrpc.client.Fault as f:
        got = f
    return got, time.monotonic() - started


def _assert_database_away(got: Any, took: float) -> None:
    assert isinstance(got, xmlrpc.client.Fault), got
    assert (got.faultCode, got.faultString) == (9119, DATABASE_AWAY)
    assert took < BUDGET + 1.0, took


async def _probe(h: Harness, path: str) -> tuple[int, dict[str, Any]]:
    resp = await treq.get(h.admin + path)
    return resp.code, await resp.json()


def _journal(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            entries = conn.execute(text(
                "SELECT j.id, j.method, j.phase, j.reply_json, j.fault_code, "
                "(SELECT count(*) FROM journal_steps s WHERE s.journal_id = j.id "
                " AND s.state = 'planned') AS planned FROM journal j ORDER BY j.id")).all()
    finally:
        engine.dispose()
    return list(entries)


def assert_nothing_half_written(url: str) -> None:
    """Every entry is finished and whole: an outcome (a reply or a fault) and no step
    still planned; none is left running or released."""
    for e in _journal(url):
        assert e.phase not in ("running", "released"), e
        if e.phase == "failed":
            assert e.fault_code is not None, e
        else:
            assert e.reply_json is not None and e.planned == 0, e


async def outage_and_return(h: Harness, url: str, cut: Callable[[], Awaitable[None]],
                            restore: Callable[[], Awaitable[None]], readiness: str) -> None:
    """The scenario both stores go through; ``readiness``: how /readyz names the database
    while it is away."""
    created, other = await h.create_order(), await h.create_order()
    rno, order_id = created["rno"], created["order_id"]
    first, _ = await _answer(h, _parcel(h, rno, "ART-1"))
    assert first[0] == "ok", first

    # In flight: Klarna applies the capture, then the database goes before it is recorded.
    await h.fault(path=r"/captures$", action="latency", delay_ms=600, times=1)
    in_flight = defer.ensureDeferred(_answer(h, _parcel(h, rno, "ART-2")))

    async def capture_sent() -> bool:  # the second capture (the first parcel's was the first)
        return len([r for r in await h.requests("/captures") if r["method"] == "POST"]) > 1
    await eventually(capture_sent, "the capture reached Klarna")  # its answer is delayed
    await cut()
    _assert_database_away(*await in_flight)

    # Away: a new call (on another order: this one's lease is the call in flight's), and
    # the probes.
    _assert_database_away(*await _answer(h, _parcel(h, other["rno"], "ART-1")))
    status, body = await _probe(h, "/readyz")
    assert status == 503 and body["database"].startswith(readiness), body
    assert not body["ready"]
    assert await _probe(h, "/healthz") == (200, {"status": "ok"})

    await restore()

    async def ready() -> bool:
        return (await _probe(h, "/readyz"))[0] == 200

    async def recovered() -> bool:
        return all(e.phase not in ("running", "released") for e in _journal(url))
    await eventually(recovered, "recovery finished the call in flight", timeout=30)
    await eventually(ready, "/readyz says ready", timeout=30)
    order = await h.order(order_id)
    assert len(order["captures"]) == 2, order["captures"]  # the first, and the one in flight
    # The in-flight call's client retries it as the legacy SDKs do after 9119: the
    # capture recovery recorded, not a new one.
    again, _ = await _answer(h, _parcel(h, rno, "ART-2"))
    assert again[0] == "ok", again
    mapping = await h.mapping(1234, rno)
    assert {i["invno"] for i in mapping["invoices"]} == {first[1], again[1]}
    assert {i["capture_id"] for i in mapping["invoices"]} == \
        {c["capture_id"] for c in (await h.order(order_id))["captures"]}
    assert not (await h.order(other["order_id"]))["captures"]  # refused, nothing sent
    assert_nothing_half_written(url)


@pytest_twisted.async_yield_fixture
async def linked_pg() -> AsyncIterator[tuple[Harness, Link, str]]:
    if not PG_DSN:
        pytest.skip("GATEWAY_TEST_PG_DSN is not set")
    url, drop = make_pg_schema(migrated=True)
    link, via = linked(url)
    h = await start_gateway(via, _config(), upgrade_sqlite=False)
    try:
        yield h, link, url
    finally:
        await h.gateway.stop()
        link.close()
        drop()
    assert not h.violations, "\n".join(h.violations)


@pytest.mark.postgres
@pytest_twisted.ensureDeferred
async def test_postgresql_unreachable_then_back(linked_pg: tuple[Harness, Link, str]) -> None:
    h, link, url = linked_pg

    async def cut() -> None:
        link.unplug()

    async def restore() -> None:
        link.plug()
    await outage_and_return(h, url, cut, restore, "unreachable")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Any:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest_twisted.ensureDeferred
async def test_sqlite_disk_full_then_room_again(tmpfs: Path) -> None:
    url = f"sqlite:///{tmpfs}/gateway.db"
    h = await start_gateway(url, _config())
    filler = tmpfs / "filler"

    async def fill() -> None:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 65536):
                pass
        except OSError:  # ENOSPC: the disk is full
            pass
        finally:
            os.close(fd)

    async def make_room() -> None:
        filler.unlink()
    try:
        await outage_and_return(h, url, fill, make_room, "writes failing")
    finally:
        await h.gateway.stop()
    assert not h.violations, "\n".join(h.violations)


@pytest.mark.postgres
@pytest_twisted.ensureDeferred
async def test_postgresql_host_that_does_not_answer(
        linked_pg: tuple[Harness, Link, str]) -> None:
    """Connections to the database hang (a firewall dropping packets): a call still answers
    9119 before a legacy client gives up (libpq's connect_timeout, 5 s, not the system's
    TCP timeout of minutes), and /readyz answers 503 within 3 s."""
    h, link, _url = linked_pg
    created = await h.create_order()
    link.mute()
    got, took = await _answer(h, _parcel(h, created["rno"], "ART-1"))
    assert isinstance(got, xmlrpc.client.Fault), got
    assert (got.faultCode, got.faultString) == (9119, DATABASE_AWAY)
    assert took < 7.0, took
    started = time.monotonic()
    status, body = await _probe(h, "/readyz")
    assert status == 503 and body["database"].startswith("unreachable"), body
    assert time.monotonic() - started < 4.0
    assert await _probe(h, "/healthz") == (200, {"status": "ok"})
    link.plug()
    got, _ = await _answer(h, _parcel(h, created["rno"], "ART-1"))
    assert got[0] == "ok", got
