"""``rest_rate_limit`` seen from a legacy client (official SDK, real gateway and sandbox).

A call whose merchant has no REST request slot within the call's budget answers 9119 at
once, sends nothing, and stays resumable; another merchant is not held. A 429 with
``Retry-After`` holds the merchant's calls until it ends, then they go on.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import create_engine, text
from twisted.internet import defer

from gateway.config import load_config
from tests.e2e.sdk import fault_of, mutations
from tests.harness import SANDBOX_CONFIG, Harness, start_gateway
from tests.waiting import eventually


def _limited(rate: float, burst: int, **gateway: Any) -> Any:
    config = load_config(SANDBOX_CONFIG)
    merchants = tuple(replace(m, rest_rate_limit=rate, rest_rate_burst=burst)
                      if m.eid == 1234 else m for m in config.merchants)
    return replace(config, merchants=merchants,
                   gateway=replace(config.gateway, **gateway))


async def _metric(h: Harness, name: str, **labels: str) -> float:
    return h.gateway.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest_twisted.ensureDeferred
async def test_no_slot_within_the_budget_is_9119_at_once_and_nothing_sent(
        tmp_path: Any) -> None:
    """One request every 4 s, four at once after a quiet spell: two orders are created
    (one request each) and the first is activated (GET + POST); the second activation, a
    moment later, cannot have its first request within its 2 s budget: 9119 in well under a
    second, its order untouched, nothing planned in its journal entry. Merchant 5678 (no
    limit) activates meanwhile without waiting."""
    h = await start_gateway(f"sqlite:///{tmp_path}/gw.db",
                            _limited(0.25, 4, retry_budget_seconds=2.0))
    try:
        first, second = await h.create_order(), await h.create_order()
        other = await h.create_order(eid=5678)
        assert (await h.call(h.sdk().activate, first["rno"]))[0] == "ok"
        started = time.monotonic()
        f = await fault_of(h, h.sdk().activate, second["rno"])
        assert f.faultCode == 9119 and time.monotonic() - started < 1.0
        assert await h.requests(second["order_id"]) == []
        assert mutations(await h.operations(second["order_id"]), "/captures") == []
        assert await _metric(h, "klarna_gateway_rest_throttled_calls_total", eid="1234") == 1
        started = time.monotonic()
        assert (await h.call(h.sdk(5678).activate, other["rno"]))[0] == "ok"
        assert time.monotonic() - started < 2.0
        engine = create_engine(f"sqlite:///{tmp_path}/gw.db")
        with engine.connect() as conn:
            entries = conn.execute(text(
                "SELECT j.phase, j.fault_code, count(s.step) FROM journal j LEFT JOIN "
                "journal_steps s ON s.journal_id = j.id WHERE j.rno = :r GROUP BY j.id"),
                {"r": second["rno"]}).all()
        engine.dispose()
        # nothing was planned, so nothing is left to continue: the retry starts afresh
        assert [tuple(e) for e in entries] == [("failed", 9119, 0)]
    finally:
        await h.gateway.stop()


@pytest_twisted.ensureDeferred
async def test_retry_after_holds_the_merchant_then_its_calls_go_on(tmp_path: Any) -> None:
    """Klarna answers one capture 429 with ``Retry-After: 2``: that activation and one of
    the same merchant sent meanwhile both finish after the pause, with one 429 between
    them; the pause is counted."""
    h = await start_gateway(f"sqlite:///{tmp_path}/gw.db", _limited(0, 1))
    try:
        a, b = await h.create_order(), await h.create_order()
        await h.fault(method="POST", path="/captures$", action="rate_limit", retry_after=2)
        started = time.monotonic()
        d1 = defer.ensureDeferred(h.call(h.sdk().activate, a["rno"]))  # under way now
        await eventually(lambda: h.requests("/captures"), "the first capture met its 429")
        d2 = defer.ensureDeferred(h.call(h.sdk().activate, b["rno"]))
        assert (await d1)[0] == "ok" and (await d2)[0] == "ok"
        assert time.monotonic() - started >= 2.0
        captures = [r for r in await h.requests()
                    if r["method"] == "POST" and r["path"].endswith("/captures")]
        assert [r["fault"] is not None for r in captures] == [True, False, False]
        assert min(r["received_at"] for r in captures[1:]) >= captures[0]["received_at"] + 1.9
        assert await _metric(h, "klarna_gateway_rest_429_total", eid="1234") == 1
    finally:
        await h.gateway.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_keeps_slots_in_the_process(gw: Harness) -> None:
    from gateway.om.ratelimit import LocalRateLimiter

    assert gw.gateway.parts is not None
    assert isinstance(gw.gateway.parts.limiter, LocalRateLimiter)
    assert gw.gateway.parts.om.limiter is gw.gateway.parts.limiter


@pytest.mark.postgres
@pytest_twisted.ensureDeferred
async def test_postgresql_shares_slots_through_the_store(gw_pg: Harness) -> None:
    from gateway.store.ratelimit import SharedRateLimiter

    parts = gw_pg.gateway.parts
    assert parts is not None and isinstance(parts.limiter, SharedRateLimiter)
    assert parts.om.limiter is parts.limiter
    assert gw_pg.gateway.pause_loop is not None and gw_pg.gateway.pause_loop.running
