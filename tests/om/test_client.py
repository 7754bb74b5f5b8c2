"""The REST client against the real sandbox over loopback: success shapes, typed errors,
Klarna's retry policy, timeouts and the deadline."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web import resource, server

from gateway.config import Merchant
from gateway.om.client import (
    DeadlineExceededError, OmClient, OmResponse, RestResponseError, RestTransportError,
    created_id, order_path,
)
from tests.waiting import eventually


@pytest_twisted.async_yield_fixture
async def om() -> Any:
    client = OmClient(reactor, timeout=1.0)
    yield client
    await client.close()


def merchant(sandbox: Any, eid: int = 1234) -> Any:
    return replace(sandbox.config.merchant(eid), base_url=sandbox.url)


@pytest_twisted.ensureDeferred
async def test_capture_id_from_headers_and_get_order(sandbox: Any, om: OmClient) -> None:
    """201 + Capture-Id is a created capture; GET order decodes JSON."""
    order_id = await sandbox.create_order()
    m = merchant(sandbox)
    resp = await om.request(m, "POST", order_path(order_id) + "/captures",
                            {"captured_amount": 10000}, idempotency_key="k-1")
    assert resp.status == 201
    cid = created_id(resp, "capture")
    order = await om.get_order(m, order_id)
    assert order["captures"][0]["capture_id"] == cid
    # ...stamped with Klarna's clock: the Date of the answer, the sandbox's (moved) time
    await sandbox.advance(7 * 86400)
    later = await om.get_order(m, order_id)
    assert later == order and later.klarna_time is not None and order.klarna_time is not None
    assert 7 * 86400 <= later.klarna_time - order.klarna_time <= 7 * 86400 + 5


@pytest_twisted.ensureDeferred
async def test_4xx_is_typed_and_never_retried(sandbox: Any, om: OmClient) -> None:
    """A 403 raises RestResponseError with Klarna's code and correlation id, once."""
    order_id = await sandbox.create_order()
    m = merchant(sandbox)
    with pytest.raises(RestResponseError) as e:
        await om.request(m, "POST", order_path(order_id) + "/refunds",
                         {"refunded_amount": 100}, idempotency_key="k-2",
                         deadline=reactor.seconds() + 5)
    assert e.value.status == 403 and e.value.error_code == "REFUND_NOT_ALLOWED"
    assert e.value.correlation_id and not e.value.retryable
    with pytest.raises(RestResponseError) as e:
        await om.get_order(replace(m, rest_password="wrong"), order_id)
    assert e.value.status == 401


@pytest_twisted.ensureDeferred
async def test_keyed_post_retried_through_5xx_and_reset(sandbox: Any, om: OmClient) -> None:
    """A keyed POST survives an applied-then-lost answer and a reset: one capture."""
    order_id = await sandbox.create_order()
    m = merchant(sandbox)
    await sandbox.add_fault(path="/captures$", action="apply_then_fail", status=503, times=1)
    await sandbox.add_fault(path="/captures$", action="reset", times=1)
    resp = await om.request(m, "POST", order_path(order_id) + "/captures",
                            {"captured_amount": 10000}, idempotency_key="k-3",
                            deadline=reactor.seconds() + 5)
    assert resp.status == 201
    order = await sandbox.get_order(order_id)
    assert len(order["captures"]) == 1


@pytest_twisted.ensureDeferred
async def test_unkeyed_post_is_not_retried(sandbox: Any, om: OmClient) -> None:
    """Without an idempotency key a 5xx on a POST is final (Klarna's policy)."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(path="/captures$", action="fail", status=503, times=1)
    with pytest.raises(RestResponseError) as e:
        await om.request(merchant(sandbox), "POST",
                         order_path(order_id) + "/captures",
                         {"captured_amount": 10000}, deadline=reactor.seconds() + 5)
    assert e.value.status == 503


@pytest_twisted.ensureDeferred
async def test_hang_times_out_and_deadline_ends_retries(sandbox: Any, om: OmClient) -> None:
    """A hung request is cut at the per-attempt timeout; retries stop at the deadline."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(path="/orders/[^/]+$", action="hang", times=None)
    start = reactor.seconds()
    with pytest.raises(DeadlineExceededError) as e:
        await om.get_order(merchant(sandbox), order_id, deadline=start + 2.5)
    assert isinstance(e.value.last, RestTransportError)
    assert 2.0 <= reactor.seconds() - start <= 3.5


@pytest.mark.parametrize("header, seconds", [
    ("Thu, 01 Jan 2026 12:00:00 GMT", 1767268800.0),
    ("Thu, 01 Jan 2026 13:00:00 +0100", 1767268800.0),
    ("Thu, 01 Jan 2026 12:00:00", 1767268800.0),
    ("", None), (None, None), ("yesterday", None), ("Thu, 99 Foo 2026", None),
])
def test_klarnas_time_is_the_date_header_of_its_answer(header: str | None,
                                                       seconds: float | None) -> None:
    resp = OmResponse(200, {"date": header} if header is not None else {}, {})
    assert resp.klarna_time == seconds


class _StallingBody(resource.Resource):
    """Answers GET with headers and the start of a body, then nothing, and counts the
    requests whose connection is still open."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.open = 0

    def render_GET(self, request: server.Request) -> Any:
        self.open += 1

        def gone(_: Any) -> None:
            self.open -= 1
        request.notifyFinish().addBoth(gone)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"100")
        request.write(b'{"order_id": ')
        return server.NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_a_stalled_body_is_cut_at_the_attempt_timeout() -> None:
    """Headers arrive, the body never completes: the attempt still ends at its timeout,
    its connection is closed (not leaked), and retries stop at the deadline."""
    stalling = _StallingBody()
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        server.Site(stalling))
    om = OmClient(reactor, timeout=0.5)
    m = Merchant(eid=1, shared_secret="s", rest_username="u", rest_password="p",
                 base_url=f"http://127.0.0.1:{port.getHost().port}")
    start = reactor.seconds()
    try:
        with pytest.raises(DeadlineExceededError) as info:
            await om.get_order(m, "o-1", deadline=start + 1.6)
        assert isinstance(info.value.last, RestTransportError)
        assert reactor.seconds() - start < 2.5
        await eventually(lambda: stalling.open == 0,
                         "the timed-out attempts' connections closed")
    finally:
        await om.close()
        await port.stopListening()
