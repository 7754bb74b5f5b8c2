"""Fault injection through the control API: every action, budgets and seeded probability."""
from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

OM = "/ordermanagement/v1/orders/"
TRANSPORT_ERRORS = (ResponseNeverReceived, ResponseFailed, defer.CancelledError)


async def operations(sandbox, order_id):
    return (await sandbox.control("GET", f"/sandbox/v1/orders/{order_id}/operations")).json()


async def capture(sandbox, order_id, amount=100, key=None, timeout=5.0):
    return await sandbox.request("POST", f"{OM}{order_id}/captures",
                                 json_body={"captured_amount": amount}, idempotency_key=key,
                                 timeout=timeout)


async def settle(seconds=0.05):
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_fail_answers_status_without_applying(sandbox):
    """``fail`` answers a Klarna-shaped 503 (default) or 500; nothing is applied or stored."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(method="POST", path=r"/captures$", action="fail")
    reply = await capture(sandbox, order_id, key="f-1")
    assert reply.status == 503
    assert reply.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert (await sandbox.get_order(order_id))["captured_amount"] == 0
    retry = await capture(sandbox, order_id, key="f-1")  # budget used up: real answer
    assert retry.status == 201
    await sandbox.add_fault(path=r"/orders/[^/]+$", action="fail", status=500)
    reply = await sandbox.request("GET", f"{OM}{order_id}")
    assert (reply.status, reply.json()["error_code"]) == (500, "INTERNAL_SERVER_ERROR")
    assert len(await operations(sandbox, order_id)) == 2  # birth + one capture


@pytest_twisted.ensureDeferred
async def test_apply_then_fail_with_503_stores_the_real_success(sandbox):
    """``apply_then_fail`` applies, answers 503, and a retry with the key gets the 201."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(method="POST", path="/captures", action="apply_then_fail",
                            status=503)
    reply = await capture(sandbox, order_id, key="atf-1")
    assert reply.status == 503
    order = await sandbox.get_order(order_id)
    assert order["captured_amount"] == 100
    retry = await capture(sandbox, order_id, key="atf-1")
    assert retry.status == 201
    assert retry.headers["capture-id"] == order["captures"][0]["capture_id"]
    assert (await sandbox.get_order(order_id))["captured_amount"] == 100
    ops = await operations(sandbox, order_id)
    assert [op["idempotency_key"] for op in ops] == [None, "atf-1"]
    assert ops[1]["status"] == 201


@pytest_twisted.ensureDeferred
async def test_apply_then_fail_with_status_0_drops_the_connection(sandbox):
    """Status 0: the operation is applied and the connection dropped without an answer."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(method="POST", path="/captures", action="apply_then_fail", status=0)
    with pytest.raises(TRANSPORT_ERRORS):
        await capture(sandbox, order_id, key="drop-1")
    assert (await sandbox.get_order(order_id))["captured_amount"] == 100
    retry = await capture(sandbox, order_id, key="drop-1")
    assert retry.status == 201
    assert len((await sandbox.get_order(order_id))["captures"]) == 1


@pytest_twisted.ensureDeferred
async def test_hang_until_client_gives_up(sandbox):
    """``hang`` never answers; the client times out and the sandbox frees the request."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(path="/captures", action="hang")
    started = time.monotonic()
    with pytest.raises(TRANSPORT_ERRORS):
        await capture(sandbox, order_id, timeout=0.3)
    assert time.monotonic() - started >= 0.25
    await settle()
    assert sandbox.resource.pending_requests == 0
    assert (await sandbox.get_order(order_id))["captured_amount"] == 0


@pytest_twisted.ensureDeferred
async def test_reset_aborts_without_applying(sandbox):
    """``reset`` aborts the TCP connection; nothing is applied."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(path="/captures", action="reset")
    with pytest.raises(TRANSPORT_ERRORS):
        await capture(sandbox, order_id)
    assert (await sandbox.get_order(order_id))["captured_amount"] == 0


@pytest_twisted.ensureDeferred
async def test_latency_delays_the_real_answer(sandbox):
    """``latency`` answers normally, ``delay_ms`` later."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(method="GET", path=order_id, action="latency", delay_ms=300)
    started = time.monotonic()
    reply = await sandbox.request("GET", f"{OM}{order_id}")
    assert reply.status == 200 and reply.json()["order_id"] == order_id
    assert time.monotonic() - started >= 0.28


@pytest_twisted.ensureDeferred
async def test_latency_longer_than_client_timeout_is_freed(sandbox):
    """A client that gives up during latency leaves no pending timer behind."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(path="/captures", action="latency", delay_ms=5000)
    with pytest.raises(TRANSPORT_ERRORS):
        await capture(sandbox, order_id, key="slow", timeout=0.2)
    await settle()
    assert sandbox.resource.pending_requests == 0
    # The operation was processed before the delay: a retry with the key replays it.
    assert (await capture(sandbox, order_id, key="slow")).status == 201
    assert (await sandbox.get_order(order_id))["captured_amount"] == 100


@pytest_twisted.ensureDeferred
async def test_rate_limit_answers_429(sandbox):
    """``rate_limit`` answers 429 TOO_MANY_REQUESTS without applying."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(path="/captures", action="rate_limit", times=2)
    for _ in range(2):
        reply = await capture(sandbox, order_id)
        assert (reply.status, reply.json()["error_code"]) == (429, "TOO_MANY_REQUESTS")
    assert (await capture(sandbox, order_id)).status == 201
    assert (await sandbox.get_order(order_id))["captured_amount"] == 100


@pytest_twisted.ensureDeferred
async def test_times_and_listing(sandbox):
    """``times`` bounds the fault; GET lists hits/remaining; method filters; DELETE clears."""
    order_id = await sandbox.create_order()
    fault_id = await sandbox.add_fault(method="GET", path=order_id, action="fail", times=3)
    await capture(sandbox, order_id)  # POST: not matched
    statuses = [(await sandbox.request("GET", f"{OM}{order_id}")).status for _ in range(4)]
    assert statuses == [503, 503, 503, 200]
    listed = (await sandbox.control("GET", "/sandbox/v1/faults")).json()
    assert listed == [{"id": fault_id, "method": "GET", "path": order_id, "action": "fail",
                       "status": 503, "times": 3, "probability": 1.0, "delay_ms": 0, "seed": 0,
                       "hits": 3, "matched": 3, "remaining": 0}]
    assert (await sandbox.control("DELETE", "/sandbox/v1/faults")).status == 204
    assert (await sandbox.control("GET", "/sandbox/v1/faults")).json() == []


@pytest_twisted.ensureDeferred
async def test_unlimited_fault_and_delete_by_id(sandbox):
    """``times: null`` never runs out; DELETE /sandbox/v1/faults/{id} removes one fault."""
    order_id = await sandbox.create_order()
    fault_id = await sandbox.add_fault(path=order_id, action="fail", times=None)
    for _ in range(5):
        assert (await sandbox.request("GET", f"{OM}{order_id}")).status == 503
    assert (await sandbox.control("DELETE", f"/sandbox/v1/faults/{fault_id}")).status == 204
    assert (await sandbox.request("GET", f"{OM}{order_id}")).status == 200
    assert (await sandbox.control("DELETE", f"/sandbox/v1/faults/{fault_id}")).status == 404


@pytest_twisted.ensureDeferred
async def test_probability_is_reproducible_with_a_seed(sandbox):
    """probability + seed: the same seed fires on the same requests; others pass through."""
    order_id = await sandbox.create_order()

    async def pattern():
        await sandbox.control("DELETE", "/sandbox/v1/faults")
        await sandbox.add_fault(method="GET", path=order_id, action="fail", times=20,
                                probability=0.5, seed=42)
        return [(await sandbox.request("GET", f"{OM}{order_id}")).status for _ in range(20)]

    first, second = await pattern(), await pattern()
    assert first == second
    assert 0 < first.count(503) < 20 and set(first) == {200, 503}
    listed = (await sandbox.control("GET", "/sandbox/v1/faults")).json()[0]
    assert listed["hits"] == first.count(503) and listed["matched"] == 20


@pytest_twisted.ensureDeferred
async def test_faults_never_touch_control_paths(sandbox):
    """A catch-all fault does not affect /sandbox/v1/... requests."""
    await sandbox.add_fault(path=".*", action="fail", times=None)
    assert (await sandbox.control("GET", "/sandbox/v1/clock")).status == 200
    assert (await sandbox.request("GET", f"{OM}x")).status == 503


@pytest_twisted.ensureDeferred
async def test_fault_definitions_are_validated(sandbox):
    """Bad fault specs are refused with 400 naming the field."""
    for spec, field in (({"action": "fail"}, "path"), ({"path": "x", "action": "boom"}, "action"),
                        ({"path": "(", "action": "fail"}, "path"),
                        ({"path": "x", "action": "fail", "times": 0}, "times"),
                        ({"path": "x", "action": "fail", "probability": 2}, "probability"),
                        ({"path": "x", "action": "fail", "status": 200}, "status")):
        reply = await sandbox.control("POST", "/sandbox/v1/faults", spec)
        assert reply.status == 400
        assert field in reply.json()["error_messages"][0]
