"""Time rules on Klarna's clock, through the real gateway and its real sandbox.

A rule that compares a time with one of Klarna's timestamps (the v2-strict activation
delay against ``created_at``; the expiring-authorizations warning against ``expires_at``)
reads Klarna's clock: the ``Date`` of the REST answer the decision reads. A regression
suite moves the sandbox's clock (``POST /sandbox/v1/clock``) or seeds it (frozen at
2026-01-01T12:00:00Z) and the gateway follows, without waiting half an hour of real time.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest_twisted
import treq
from twisted.internet import reactor

from gateway.config import Config, default_sandbox_config_path, load_config
from gateway.sandbox.clock import SEEDED_EPOCH
from gateway.tools import expiring as expiry
from tests.e2e.sdk import fault_of
from tests.harness import REST_AUTH, Harness, serving

STRICT = 5678  # v2-strict in these tests; eid 1234 keeps the default profile
DAY = 86400


def strict_config() -> Config:
    config = load_config(default_sandbox_config_path())
    return replace(config, merchants=tuple(
        replace(m, profile="v2-strict") if m.eid == STRICT else m for m in config.merchants))


@pytest_twisted.async_yield_fixture
async def unseeded(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in serving(f"sqlite:///{tmp_path}/gw.db", strict_config()):
        yield h


@pytest_twisted.async_yield_fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in serving(f"sqlite:///{tmp_path}/gw.db", strict_config(), sandbox_seed=3):
        yield h


async def klarna_date(gw: Harness, order_id: str, eid: int) -> float:
    """The ``Date`` of the sandbox's answer to a GET of the order (epoch seconds)."""
    resp = await treq.get(f"{gw.sandbox}/ordermanagement/v1/orders/{order_id}",
                          auth=REST_AUTH[eid])
    await resp.content()
    return parsedate_to_datetime(resp.headers.getRawHeaders("date")[-1]).timestamp()


@pytest_twisted.ensureDeferred
async def test_a_moved_sandbox_clock_lets_the_activation_through(unseeded: Harness) -> None:
    """Unseeded sandbox: an order placed now is too young (9103); move the sandbox clock
    31 minutes forward, as a regression suite would, and the same call activates it (the
    rule reads the Date of the order's GET, which follows the moved clock)."""
    gw = unseeded
    order = await gw.create_order(eid=STRICT)
    f = await fault_of(gw, gw.sdk(STRICT).activate, order["rno"])
    assert f.faultCode == 9103 and "retry in 30 min" in f.faultString
    await gw.advance_clock(31 * 60)
    assert (await gw.call(gw.sdk(STRICT).activate, order["rno"]))[0] == "ok"


@pytest_twisted.ensureDeferred
async def test_a_seeded_sandbox_refuses_a_young_order(seeded: Harness) -> None:
    """Seeded sandbox (clock frozen at 2026-01-01T12:00:00Z, long before the gateway's own
    clock): a young order is refused, 29 minutes later still, and 31 minutes after it was
    placed it is activated. The default profile activates at once."""
    gw = seeded
    order = await gw.create_order(eid=STRICT)
    assert await klarna_date(gw, order["order_id"], STRICT) == SEEDED_EPOCH.timestamp()
    f = await fault_of(gw, gw.sdk(STRICT).activate, order["rno"])
    assert f.faultCode == 9103 and "retry in 30 min" in f.faultString
    await gw.advance_clock(29 * 60)
    f = await fault_of(gw, gw.sdk(STRICT).activate, order["rno"])
    assert f.faultCode == 9103 and "retry in 1 min" in f.faultString
    await gw.advance_clock(2 * 60)
    assert (await gw.call(gw.sdk(STRICT).activate, order["rno"]))[0] == "ok"
    default = await gw.create_order(eid=1234)
    assert (await gw.call(gw.sdk(1234).activate, default["rno"]))[0] == "ok"


@pytest_twisted.ensureDeferred
async def test_the_unseeded_sandbox_dates_its_answers_on_its_moved_clock(
        unseeded: Harness) -> None:
    """The sandbox's Date header follows its own clock, moved or not (it used to carry the
    wall clock whenever the sandbox was not seeded)."""
    gw = unseeded
    order = await gw.create_order(eid=1234)
    before = await klarna_date(gw, order["order_id"], 1234)
    await gw.advance_clock(3 * DAY)
    after = await klarna_date(gw, order["order_id"], 1234)
    assert 3 * DAY <= after - before <= 3 * DAY + 5


@pytest_twisted.ensureDeferred
async def test_expiring_counts_time_left_on_the_moved_sandbox_clock(unseeded: Harness
                                                                     ) -> None:
    """An order placed now lapses in 28 days; 26 days later on the (unseeded) sandbox's
    clock, the warning sees 2 days left, not 28."""
    gw = unseeded
    order = await gw.create_order(eid=1234)
    await gw.advance_clock(26 * DAY)
    parts = gw.gateway.parts
    assert parts is not None
    found = await expiry.scan(parts.config, parts.om, await parts.store.list_open_reservations(
        expiry.OPEN_STATUSES, 1234), reactor)
    [item] = found.within(3 * DAY)
    assert item.reservation.rno == order["rno"]
    assert 2 * DAY - 60 <= item.seconds_left <= 2 * DAY
