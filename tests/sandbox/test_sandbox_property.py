"""Property-based run against the live sandbox: random OM requests never give a 5xx and
never break the OpenAPI contract (the fixture's conformance hook checks every response).

Requests are generated with Hypothesis: documented operations with well-formed-ish bodies
(amounts at and around the limits, order lines whose arithmetic may or may not hold), random
JSON, random ids (existing or not, any Unicode) and random methods. Orders are placed along
the way so states evolve (captures, cancels, expiry-free refunds...).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sandbox.validation import ORDER_LINE_TYPES, SHIPPING_METHODS
from tests.sandbox.support import PAY_TOKEN, TOKEN_ORDER, TOKENS
from tests.sandbox_fixtures import order_body

OM = "/ordermanagement/v1/orders/"

OPERATIONS: tuple[tuple[str, str], ...] = (
    ("GET", "{o}"), ("POST", "{o}/acknowledge"), ("PATCH", "{o}/authorization"),
    ("POST", "{o}/extend-authorization-time"), ("PATCH", "{o}/merchant-references"),
    ("PATCH", "{o}/customer-details"), ("POST", "{o}/cancel"),
    ("POST", "{o}/release-remaining-authorization"), ("POST", "{o}/shipping-info"),
    ("POST", "{o}/captures"), ("GET", "{o}/captures"), ("GET", "{o}/captures/{c}"),
    ("POST", "{o}/captures/{c}/shipping-info"), ("POST", "{o}/captures/{c}/trigger-send-out"),
    ("GET", "{o}/captures/{c}/extend-due-date-options"),
    ("PATCH", "{o}/captures/{c}/extend-due-date"),
    ("PATCH", "{o}/captures/{c}/customer-details"),
    ("POST", "{o}/refunds"), ("GET", "{o}/refunds/{r}"),
    # weight the state-moving operations
    ("POST", "{o}/captures"), ("POST", "{o}/captures"), ("POST", "{o}/refunds"),
    ("POST", "{o}/refunds"),
)

amounts = st.one_of(st.integers(-5, 12000), st.sampled_from([0, 1, 200_000_000, 200_000_001]),
                    st.integers(-2**63, 2**63), st.text(max_size=3), st.none(), st.floats(0, 10))


@st.composite
def order_lines(draw: Any) -> list[dict[str, Any]]:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        quantity = draw(st.integers(0, 4))
        unit_price = draw(st.integers(-100, 5000))
        discount = draw(st.integers(0, 100))
        consistent = draw(st.booleans())
        total = quantity * unit_price - discount if consistent else draw(st.integers(-10, 9000))
        line: dict[str, Any] = {"name": draw(st.text(max_size=6)), "quantity": quantity,
                                "unit_price": unit_price, "total_discount_amount": discount,
                                "total_amount": total}
        if draw(st.booleans()):
            line["type"] = draw(st.sampled_from((*ORDER_LINE_TYPES, "bogus")))
        if draw(st.booleans()):
            line["reference"] = draw(st.sampled_from(("SKU-1", "A", "B", "x" * 256)))
        lines.append(line)
    return lines


addresses = st.fixed_dictionaries({}, optional={
    "city": st.text(max_size=8), "country": st.sampled_from(("SE", "us", "XXX", "")),
    "postal_code": st.text(max_size=12), "street_address": st.text(max_size=8),
    "email": st.text(max_size=5)})

shipping_infos = st.lists(st.fixed_dictionaries({}, optional={
    "shipping_company": st.text(max_size=110),
    "shipping_method": st.sampled_from((*SHIPPING_METHODS, "Drone")),
    "tracking_number": st.text(max_size=10)}), max_size=2)

structured_bodies = st.fixed_dictionaries({}, optional={
    "captured_amount": amounts, "refunded_amount": amounts, "order_amount": amounts,
    "order_lines": order_lines(), "description": st.text(max_size=10),
    "reference": st.text(max_size=10), "shipping_info": shipping_infos,
    "merchant_reference1": st.text(max_size=10), "merchant_reference2": st.text(max_size=10),
    "shipping_address": addresses, "billing_address": addresses,
    "number_of_days": st.sampled_from((7, 14, 30, 0, 1000)), "shipping_delay": amounts,
})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=10), children, max_size=4),
    max_leaves=12)

bodies = st.one_of(structured_bodies, structured_bodies, json_values,
                   st.binary(max_size=40).map(lambda raw: ("raw", raw)))

#: Mostly-valid bodies per operation, so that state actually moves (captures, refunds...).
PLAUSIBLE = {
    "{o}/captures": st.fixed_dictionaries({"captured_amount": st.integers(1, 6000)}, optional={
        "description": st.text(max_size=10), "shipping_info": shipping_infos}),
    "{o}/refunds": st.fixed_dictionaries({"refunded_amount": st.integers(1, 6000)}, optional={
        "order_lines": order_lines()}),
    "{o}/authorization": st.fixed_dictionaries({"order_amount": st.integers(0, 15000)}),
    "{o}/captures/{c}/extend-due-date": st.fixed_dictionaries(
        {"number_of_days": st.sampled_from((7, 14, 30, 5))}),
}

foreign_ids = st.text(min_size=1, max_size=24).filter(lambda t: t.strip(".") != "")


@st.composite
def om_requests(draw: Any) -> dict[str, Any]:
    method, template = draw(st.sampled_from(OPERATIONS))
    if draw(st.integers(0, 9)) == 9:
        method = draw(st.sampled_from(("GET", "POST", "PATCH", "PUT", "DELETE")))
    return {
        "method": method, "template": template,
        # Hypothesis favours small integers: index 4 (rare) picks a foreign id.
        "order": draw(foreign_ids if draw(st.integers(0, 4)) == 4 else st.integers(0, 3)),
        "capture": draw(foreign_ids if draw(st.integers(0, 4)) == 4 else st.integers(0, 2)),
        "refund": draw(foreign_ids if draw(st.integers(0, 4)) == 4 else st.integers(0, 2)),
        "body": draw(bodies if draw(st.integers(0, 2)) == 2
                     else PLAUSIBLE.get(template, structured_bodies)),
        "merchant": 5678 if draw(st.integers(0, 9)) == 9 else 1234,
        "key": draw(st.one_of(st.none(), st.sampled_from(("k1", "k2")))),
        "new_order": draw(st.integers(0, 3)) == 3,
        "initial_capture": draw(st.sampled_from((4000, 0, 10000))),
    }


def _pick(ids: list[str], choice: int | str) -> str:
    if isinstance(choice, int):
        return ids[-1 - choice % len(ids)] if ids else "none"  # newest first
    return choice


async def _send(sandbox: Any, req: dict[str, Any]) -> None:
    book = sandbox.resource.book
    if req["new_order"] or not book.orders:
        new = await sandbox.create_order(amount=10000)
        if req["initial_capture"]:
            await sandbox.request("POST", f"{OM}{new}/captures",
                                  json_body={"captured_amount": req["initial_capture"]})
    order_ids = list(book.orders)
    order_id = _pick(order_ids, req["order"])
    order = book.orders.get(order_id)
    capture_id = _pick([c.capture_id for c in order.captures] if order else [], req["capture"])
    refund_id = _pick([r.refund_id for r in order.refunds] if order else [], req["refund"])
    path = OM + req["template"].format(o=quote(order_id, safe=""), c=quote(capture_id, safe=""),
                                       r=quote(refund_id, safe=""))
    body = req["body"]
    kwargs: dict[str, Any] = {}
    if isinstance(body, tuple):
        kwargs["data"] = body[1]
    elif req["method"] in ("POST", "PATCH", "PUT") and body is not None:
        kwargs["json_body"] = body
    reply = await sandbox.request(req["method"], path, merchant=req["merchant"],
                                  idempotency_key=req["key"], **kwargs)
    assert reply.status < 500, (req, reply.status, reply.body)
    assert not sandbox.violations, sandbox.violations


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=st.lists(om_requests(), min_size=1, max_size=8))
@pytest_twisted.ensureDeferred
async def test_random_om_requests_conform(sandbox, sequence):
    """No random Order Management request yields a 5xx or a response outside the spec."""
    for req in sequence:
        await _send(sandbox, req)


creation_bodies = st.one_of(
    st.builds(lambda amount, extra: {**order_body(amount), **extra},
              st.integers(0, 20000), st.fixed_dictionaries({}, optional={
                  "purchase_country": st.sampled_from(("SE", "us", "S", "")),
                  "purchase_currency": st.sampled_from(("SEK", "EUR", "sek", "SE")),
                  "locale": st.sampled_from(("en-US", "xx", "")),
                  "order_tax_amount": amounts, "order_lines": order_lines(),
                  "merchant_data": st.text(max_size=8), "customer": st.fixed_dictionaries(
                      {}, optional={"date_of_birth": st.sampled_from(("1980-01-01", "soon"))}),
                  "auto_capture": st.one_of(st.booleans(), st.just("yes")),
                  "description": st.sampled_from(("Subscription", "", "x" * 256)),
                  "intended_use": st.sampled_from(("SUBSCRIPTION", "ONE_OFF"))})),
    json_values)

#: Customer tokens known to the sandbox in the property run ("unknown-x" never exists).
BIRTH_TOKENS = ("tok", "pending-x", "rejected-x", "capture-fails-x")


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=creation_bodies,
       route=st.sampled_from(("/payments/v1/authorizations/{}/order", TOKEN_ORDER, PAY_TOKEN)),
       token=st.sampled_from((*BIRTH_TOKENS, "unknown-x")))
@pytest_twisted.ensureDeferred
async def test_random_order_births_conform(sandbox, body, route, token):
    """Random order/token births never yield a 5xx; accepted orders read back per the spec,
    and an auto-captured order is fully captured."""
    for known in BIRTH_TOKENS:
        if sandbox.resource.tokens.get_any(known) is None:
            assert (await sandbox.control("POST", TOKENS,
                                          {"eid": 1234, "token_id": known})).status == 201
    reply = await sandbox.request("POST", route.format(token), json_body=body)
    assert reply.status in (200, 400, 403, 404, 422), reply.body
    if reply.status == 200 and "order_id" in reply.json():
        order = await sandbox.get_order(reply.json()["order_id"])
        if isinstance(body, dict) and body.get("auto_capture") is True and order["fraud_status"] == "ACCEPTED" and (
                order["order_amount"] > 0):
            assert order["status"] == "CAPTURED"
            assert [c["captured_amount"] for c in order["captures"]] == [order["order_amount"]]
    if route == TOKEN_ORDER and token == "unknown-x":
        assert reply.status == 404 and reply.json()["error_code"] == "TOKEN_NOT_FOUND"
    assert not sandbox.violations, sandbox.violations
