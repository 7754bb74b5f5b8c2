"""The REST client's rate limit against the real sandbox: Klarna's ``Retry-After`` is
honoured and shared by the merchant's other calls, a merchant's ``rest_rate_limit`` paces
its requests, and a call that cannot get a slot within its budget sends nothing.

What Klarna saw is read from the sandbox's request log (``GET /sandbox/v1/requests``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from gateway.metrics import Metrics
from gateway.om.client import (
    DeadlineExceededError, OmClient, RateLimitedError, RestResponseError, retry_after_seconds,
)
from tests.waiting import eventually


def merchant(sandbox: Any, eid: int = 1234, **changes: Any) -> Any:
    return replace(sandbox.config.merchant(eid), base_url=sandbox.url, **changes)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def arrivals(sandbox: Any, eid: int = 1234) -> list[dict[str, Any]]:
    log = (await sandbox.control("GET", "/sandbox/v1/requests")).json()
    return [r for r in log if r["eid"] == eid and r["method"] == "GET"]


@pytest_twisted.async_yield_fixture
async def om_metrics() -> Any:
    metrics = Metrics()
    client = OmClient(reactor, timeout=1.0, metrics=metrics)
    yield client, metrics
    await client.close()


@pytest_twisted.ensureDeferred
async def test_retry_after_is_honoured_and_shared_by_the_merchants_calls(
        sandbox: Any, om_metrics: Any) -> None:
    """One call meets a 429 with ``Retry-After: 1``; it and a call of the same merchant that
    starts meanwhile both send again only after that second, and only the first met the
    429. Another merchant is not held."""
    om, metrics = om_metrics
    order_id, theirs = await sandbox.create_order(), await sandbox.create_order(merchant=5678)
    await sandbox.add_fault(method="GET", path=order_id, action="rate_limit", retry_after=1)
    start = reactor.seconds()
    first = defer.ensureDeferred(om.get_order(merchant(sandbox), order_id,
                                              deadline=start + 5))
    await eventually(lambda: arrivals(sandbox), "the first call met its 429")
    second = defer.ensureDeferred(om.get_order(merchant(sandbox), order_id,
                                               deadline=reactor.seconds() + 5))
    other_started = reactor.seconds()
    await om.get_order(merchant(sandbox, 5678), theirs, deadline=other_started + 5)
    assert reactor.seconds() - other_started < 0.5
    assert (await first)["order_id"] == (await second)["order_id"] == order_id
    gets = await arrivals(sandbox)
    assert [g["fault"] is not None for g in gets] == [True, False, False]
    assert all(g["received_at"] >= gets[0]["received_at"] + 0.95 for g in gets[1:])
    assert sample(metrics, "klarna_gateway_rest_429_total", eid="1234") == 1
    assert sample(metrics, "klarna_gateway_rest_rate_limit_wait_seconds_count",
                  eid="1234") >= 1


@pytest_twisted.ensureDeferred
async def test_a_pause_beyond_the_budget_answers_at_once_and_sends_nothing_more(
        sandbox: Any, om_metrics: Any) -> None:
    """``Retry-After: 30`` with 3 s of budget left: the call gives up now (nothing is gained
    by sleeping through its budget), and the merchant's next call sends nothing."""
    om, metrics = om_metrics
    order_id = await sandbox.create_order()
    await sandbox.add_fault(method="GET", path=order_id, action="rate_limit", retry_after=30)
    start = reactor.seconds()
    with pytest.raises(DeadlineExceededError) as e:
        await om.get_order(merchant(sandbox), order_id, deadline=start + 3)
    assert isinstance(e.value.last, RestResponseError) and e.value.last.status == 429
    assert reactor.seconds() - start < 0.5
    with pytest.raises(RateLimitedError):
        await om.get_order(merchant(sandbox), order_id, deadline=reactor.seconds() + 3)
    assert len(await arrivals(sandbox)) == 1
    assert sample(metrics, "klarna_gateway_rest_throttled_calls_total", eid="1234") == 1


@pytest_twisted.ensureDeferred
async def test_rest_rate_limit_paces_and_refuses_what_cannot_leave_in_time(
        sandbox: Any, om_metrics: Any) -> None:
    """At 5 requests/s four concurrent reads leave 0.2 s apart; a fifth that must finish
    within 0.3 s is refused at once (RateLimitedError: the engine's 9119) and never sent."""
    om, metrics = om_metrics
    order_id = await sandbox.create_order()
    limited = merchant(sandbox, rest_rate_limit=5.0)
    await sandbox.control("DELETE", "/sandbox/v1/requests")
    start = reactor.seconds()
    reads = [defer.ensureDeferred(om.get_order(limited, order_id, deadline=start + 5))
             for _ in range(4)]
    with pytest.raises(RateLimitedError):
        await om.get_order(limited, order_id, deadline=reactor.seconds() + 0.3)
    assert reactor.seconds() - start < 0.3  # refused at once, not at its 0.3 s deadline
    await defer.gatherResults(reads)
    times = [g["received_at"] for g in await arrivals(sandbox)]
    assert len(times) == 4
    assert all(b - a >= 0.17 for a, b in zip(times, times[1:])), times
    assert sample(metrics, "klarna_gateway_rest_rate_limit_wait_seconds_count",
                  eid="1234") == 3
    assert sample(metrics, "klarna_gateway_rest_throttled_calls_total", eid="1234") == 1


def test_retry_after_forms() -> None:
    """Seconds or an HTTP date (read against the answer's own ``Date``); garbage is
    ignored; a huge value is capped."""
    assert retry_after_seconds("3", None, 0.0) == 3.0
    assert retry_after_seconds(" 0 ", None, 0.0) == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT",
                               "Wed, 21 Oct 2015 07:28:00 GMT", 0.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", None,
                               1445412480.0) == 10.0
    assert retry_after_seconds("soon", None, 0.0) is None
    assert retry_after_seconds("-5", None, 0.0) is None
    assert retry_after_seconds("999999", None, 0.0) == 300.0


@pytest_twisted.ensureDeferred
async def test_requests_already_waiting_for_a_slot_honour_a_pause_that_begins_meanwhile(
        sandbox: Any, om_metrics: Any) -> None:
    """At 5 requests/s four reads hold slots 0.2 s apart; the first is answered 429 with
    ``Retry-After: 1``. The three still waiting for their slots do not send into the
    pause: they leave after it, still paced, and none meets a 429."""
    om, metrics = om_metrics
    order_id = await sandbox.create_order()
    limited = merchant(sandbox, rest_rate_limit=5.0)
    await sandbox.add_fault(method="GET", path=order_id, action="rate_limit", retry_after=1)
    await sandbox.control("DELETE", "/sandbox/v1/requests")
    start = reactor.seconds()
    await defer.gatherResults([
        defer.ensureDeferred(om.get_order(limited, order_id, deadline=start + 5))
        for _ in range(4)])
    gets = await arrivals(sandbox)
    assert [g["fault"] is not None for g in gets] == [True, False, False, False, False]
    later = [g["received_at"] for g in gets[1:]]
    assert min(later) >= gets[0]["received_at"] + 0.95, gets
    assert all(b - a >= 0.17 for a, b in zip(later, later[1:])), later
    assert sample(metrics, "klarna_gateway_rest_429_total", eid="1234") == 1
