"""``Klarna-Idempotency-Key``: replays, scoping per merchant+method+path, 24 h of sandbox time."""
from __future__ import annotations

import pytest_twisted

from tests.sandbox.support import TOKEN_ORDER, make_token, token_order_body

OM = "/ordermanagement/v1/orders/"


async def operations(sandbox, order_id):
    reply = await sandbox.control("GET", f"/sandbox/v1/orders/{order_id}/operations")
    assert reply.status == 200
    return reply.json()


@pytest_twisted.ensureDeferred
async def test_replay_returns_first_response_even_with_other_body(sandbox):
    """Same key, different amount: one capture, the identical 201 (same Capture-Id/Location)."""
    order_id = await sandbox.create_order()
    path = f"{OM}{order_id}/captures"
    first = await sandbox.request("POST", path, json_body={"captured_amount": 1000},
                                  idempotency_key="k-1")
    second = await sandbox.request("POST", path, json_body={"captured_amount": 5000},
                                   idempotency_key="k-1")
    assert first.status == second.status == 201
    assert first.headers["capture-id"] == second.headers["capture-id"]
    assert first.headers["location"] == second.headers["location"]
    order = await sandbox.get_order(order_id)
    assert order["captured_amount"] == 1000 and len(order["captures"]) == 1
    ops = await operations(sandbox, order_id)
    assert [(op["method"], op["path"], op["idempotency_key"], op["status"]) for op in ops] == [
        ("POST", f"/payments/v1/authorizations/{ops[0]['path'].split('/')[4]}/order", None, 200),
        ("POST", path, "k-1", 201),
    ]


@pytest_twisted.ensureDeferred
async def test_without_key_or_with_new_key_applies_again(sandbox):
    """Different keys (or none) register separate captures."""
    order_id = await sandbox.create_order()
    path = f"{OM}{order_id}/captures"
    await sandbox.request("POST", path, json_body={"captured_amount": 1000}, idempotency_key="a")
    await sandbox.request("POST", path, json_body={"captured_amount": 1000}, idempotency_key="b")
    await sandbox.request("POST", path, json_body={"captured_amount": 1000})
    assert (await sandbox.get_order(order_id))["captured_amount"] == 3000


@pytest_twisted.ensureDeferred
async def test_refusals_are_stored_too(sandbox):
    """A 403 first answer is replayed for the same key even after the cause went away."""
    order_id = await sandbox.create_order(amount=1000)
    path = f"{OM}{order_id}/captures"
    first = await sandbox.request("POST", path, json_body={"captured_amount": 2000},
                                  idempotency_key="over")
    assert first.status == 403
    await sandbox.request("PATCH", f"{OM}{order_id}/authorization",
                          json_body={"order_amount": 3000})
    replay = await sandbox.request("POST", path, json_body={"captured_amount": 2000},
                                   idempotency_key="over")
    assert (replay.status, replay.body) == (403, first.body)
    fresh = await sandbox.request("POST", path, json_body={"captured_amount": 2000},
                                  idempotency_key="over-2")
    assert fresh.status == 201


@pytest_twisted.ensureDeferred
async def test_key_scope_is_merchant_method_and_path(sandbox):
    """The same key on another path, method or merchant is a different request."""
    order_a = await sandbox.create_order()
    order_b = await sandbox.create_order()
    other = await sandbox.create_order(merchant=5678)
    key = "shared-key"
    for order_id, merchant in ((order_a, 1234), (order_b, 1234), (other, 5678)):
        reply = await sandbox.request("POST", f"{OM}{order_id}/captures",
                                      json_body={"captured_amount": 100},
                                      idempotency_key=key, merchant=merchant)
        assert reply.status == 201
    reply = await sandbox.request("POST", f"{OM}{order_a}/refunds",
                                  json_body={"refunded_amount": 50}, idempotency_key=key)
    assert reply.status == 201
    reply = await sandbox.request("PATCH", f"{OM}{order_a}/merchant-references",
                                  json_body={"merchant_reference1": "r"}, idempotency_key=key)
    assert reply.status == 204
    assert (await sandbox.get_order(order_a))["refunded_amount"] == 50
    assert (await sandbox.get_order(other, merchant=5678))["captured_amount"] == 100


@pytest_twisted.ensureDeferred
async def test_keys_expire_after_24_hours_of_sandbox_time(sandbox):
    """Within 24 h the key replays; after 24 h of sandbox time the request is applied anew."""
    order_id = await sandbox.create_order()
    path = f"{OM}{order_id}/captures"
    await sandbox.request("POST", path, json_body={"captured_amount": 100}, idempotency_key="t")
    await sandbox.advance(23 * 3600)
    await sandbox.request("POST", path, json_body={"captured_amount": 100}, idempotency_key="t")
    assert (await sandbox.get_order(order_id))["captured_amount"] == 100
    await sandbox.advance(3600 + 1)
    await sandbox.request("POST", path, json_body={"captured_amount": 100}, idempotency_key="t")
    assert (await sandbox.get_order(order_id))["captured_amount"] == 200


@pytest_twisted.ensureDeferred
async def test_patch_and_order_birth_are_idempotent(sandbox):
    """PATCH replays do not reapply; a customer-token order with a key is placed once."""
    order_id = await sandbox.create_order()
    path = f"{OM}{order_id}/merchant-references"
    await sandbox.request("PATCH", path, json_body={"merchant_reference1": "one"},
                          idempotency_key="p")
    await sandbox.request("PATCH", path, json_body={"merchant_reference1": "two"},
                          idempotency_key="p")
    assert (await sandbox.get_order(order_id))["merchant_reference1"] == "one"
    token_path = TOKEN_ORDER.format(await make_token(sandbox, "ct-9"))
    first = await sandbox.request("POST", token_path, json_body=token_order_body(),
                                  idempotency_key="o")
    second = await sandbox.request("POST", token_path, json_body=token_order_body(500),
                                   idempotency_key="o")
    assert first.status == 200 and first.json()["order_id"] == second.json()["order_id"]
    assert len(sandbox.resource.book.orders) == 2


@pytest_twisted.ensureDeferred
async def test_get_ignores_the_key(sandbox):
    """GET is not subject to idempotency: it always reflects current state."""
    order_id = await sandbox.create_order()
    first = await sandbox.request("GET", f"{OM}{order_id}", idempotency_key="g")
    await sandbox.request("POST", f"{OM}{order_id}/captures", json_body={"captured_amount": 5})
    second = await sandbox.request("GET", f"{OM}{order_id}", idempotency_key="g")
    assert first.json()["captured_amount"] == 0 and second.json()["captured_amount"] == 5
