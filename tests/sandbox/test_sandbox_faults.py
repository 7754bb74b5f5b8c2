"""Fault injection through the control API: every action, budgets and seeded probability."""
from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import defer
from treq.client import HTTPClient
from treq.testing import _SynchronousProducer
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

from tests.engine.world import World
from tests.sandbox_fixtures import basic_auth
from tests.waiting import eventually

OM = "/ordermanagement/v1/orders/"
TRANSPORT_ERRORS = (ResponseNeverReceived, ResponseFailed, defer.CancelledError)


async def operations(sandbox, order_id):
    return (await sandbox.control("GET", f"/sandbox/v1/orders/{order_id}/operations")).json()


async def capture(sandbox, order_id, amount=100, key=None, timeout=5.0):
    return await sandbox.request("POST", f"{OM}{order_id}/captures",
                                 json_body={"captured_amount": amount}, idempotency_key=key,
                                 timeout=timeout)


async def freed(sandbox):
    """The sandbox has let go of every request whose client gave up (it sees the close)."""
    await eventually(lambda: sandbox.resource.pending_requests == 0,
                     "the sandbox freed the abandoned request")


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
    await freed(sandbox)
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
    await freed(sandbox)
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
                       "eid": None, "per_second": None, "retry_after": None,
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


@pytest_twisted.ensureDeferred
async def test_rate_limit_says_retry_after(sandbox):
    """``retry_after`` puts Klarna's ``Retry-After`` (seconds) on the 429."""
    order_id = await sandbox.create_order()
    await sandbox.add_fault(path="/captures", action="rate_limit", retry_after=2)
    reply = await capture(sandbox, order_id)
    assert reply.status == 429 and reply.headers["retry-after"] == "2"
    await sandbox.add_fault(path="/captures", action="fail", status=503, retry_after=0)
    reply = await capture(sandbox, order_id)
    assert reply.status == 503 and reply.headers["retry-after"] == "0"
    assert "retry-after" not in (await capture(sandbox, order_id)).headers


def test_rate_limit_per_second_and_per_merchant(tmp_path):
    """``per_second`` (with ``eid``) emulates Klarna's own limit: one merchant's requests
    beyond N in any second are answered 429; those within it, and other merchants', pass.
    The window is a second of the sandbox's host clock: here a ``task.Clock`` (the
    fake-clock world of ``tests/engine/world.py``), moved a second on, not slept through."""
    world = World(str(tmp_path / "gw.db"))
    try:
        proc = world.process()
        http = HTTPClient(proc.agent, data_to_body_producer=_SynchronousProducer)

        def status(order_id, eid=1234):
            merchant = world.config.merchant(eid)
            d = http.get(f"http://klarna.test{OM}{order_id}", headers={
                "Authorization": basic_auth(merchant.rest_username, merchant.rest_password)})
            return world.drive(d, proc).code

        def order_id_of(eid):
            rno = world.create_order(proc, eid)
            return world.run(proc.parts.store.get_reservation(eid, rno), proc).order_id

        mine, theirs = order_id_of(1234), order_id_of(5678)
        fault = world.sandbox.faults.add({"path": OM, "action": "rate_limit", "per_second": 3,
                                          "eid": 1234, "times": None, "retry_after": 1})
        assert [status(mine) for _ in range(5)] == [200, 200, 200, 429, 429]
        assert [status(theirs, 5678) for _ in range(5)] == [200] * 5
        world.clock.advance(1.05)
        assert status(mine) == 200
        listed = fault.to_json()
        assert (listed["per_second"], listed["eid"]) == (3, 1234)
        assert listed["hits"] == 2 and listed["retry_after"] == 1
    finally:
        world.close()


@pytest_twisted.ensureDeferred
async def test_request_log(sandbox):
    """``GET /sandbox/v1/requests``: every Klarna-API request as it arrived (the host's
    clock), with its merchant and the fault that fired; DELETE and reset clear it. (A
    request without a merchant's credentials is refused at the listener, unlogged.)"""
    order_id = await sandbox.create_order()
    fault_id = await sandbox.add_fault(method="GET", path=OM, action="rate_limit")
    before = time.time()
    await sandbox.request("GET", f"{OM}{order_id}")
    await sandbox.request("GET", f"{OM}{order_id}", merchant=5678)
    log = (await sandbox.control("GET", "/sandbox/v1/requests")).json()
    assert [(r["eid"], r["method"], r["path"], r["fault"]) for r in log] == [
        (1234, "POST", log[0]["path"], None),
        (1234, "GET", f"{OM}{order_id}", fault_id),
        (5678, "GET", f"{OM}{order_id}", None)]
    assert before - 1 <= log[1]["received_at"] <= log[2]["received_at"] <= time.time() + 1
    assert (await sandbox.control("DELETE", "/sandbox/v1/requests")).status == 204
    assert (await sandbox.control("GET", "/sandbox/v1/requests")).json() == []
    await sandbox.request("GET", f"{OM}{order_id}")
    assert (await sandbox.control("POST", "/sandbox/v1/reset")).status == 204
    assert (await sandbox.control("GET", "/sandbox/v1/requests")).json() == []


@pytest_twisted.ensureDeferred
async def test_rate_limit_fields_are_validated(sandbox):
    for spec, field in (({"path": "x", "action": "fail", "per_second": 3}, "per_second"),
                        ({"path": "x", "action": "rate_limit", "per_second": 0}, "per_second"),
                        ({"path": "x", "action": "rate_limit", "retry_after": -1},
                         "retry_after"),
                        ({"path": "x", "action": "hang", "retry_after": 1}, "retry_after"),
                        ({"path": "x", "action": "rate_limit", "eid": "1234"}, "eid")):
        reply = await sandbox.control("POST", "/sandbox/v1/faults", spec)
        assert reply.status == 400, spec
        assert field in reply.json()["error_messages"][0]
