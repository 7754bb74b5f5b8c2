"""The order state machine and amount rules, over real HTTP.

What they are: docs/order-management.md#order-states.
"""
from __future__ import annotations

from datetime import timedelta

import pytest_twisted

from gateway.sandbox.clock import parse_timestamp
from tests.sandbox_fixtures import order_body, sample_lines

OM = "/ordermanagement/v1/orders/"


async def capture(sandbox, order_id, amount, **fields):
    return await sandbox.request("POST", f"{OM}{order_id}/captures",
                                 json_body={"captured_amount": amount, **fields})


async def refund(sandbox, order_id, amount, **fields):
    return await sandbox.request("POST", f"{OM}{order_id}/refunds",
                                 json_body={"refunded_amount": amount, **fields})


async def post(sandbox, order_id, action, body=None):
    return await sandbox.request("POST", f"{OM}{order_id}/{action}", json_body=body)


async def patch(sandbox, order_id, action, body):
    return await sandbox.request("PATCH", f"{OM}{order_id}/{action}", json_body=body)


def error_of(reply):
    body = reply.json()
    return reply.status, body["error_code"], body["error_messages"][0]


@pytest_twisted.ensureDeferred
async def test_authorized_to_part_captured_to_captured(sandbox):
    """Two captures walk AUTHORIZED -> PART_CAPTURED -> CAPTURED with 201 + headers."""
    order_id = await sandbox.create_order(amount=10000)
    first = await capture(sandbox, order_id, 4000, description="First box", reference="C1")
    assert first.status == 201 and first.body == b""
    capture_id = first.headers["capture-id"]
    assert first.headers["location"] == (
        f"{sandbox.url}/ordermanagement/v1/orders/{order_id}/captures/{capture_id}")
    order = await sandbox.get_order(order_id)
    assert (order["status"], order["captured_amount"], order["remaining_authorized_amount"]) == (
        "PART_CAPTURED", 4000, 6000)
    second = await capture(sandbox, order_id, 6000)
    assert second.status == 201
    order = await sandbox.get_order(order_id)
    assert (order["status"], order["captured_amount"], order["remaining_authorized_amount"]) == (
        "CAPTURED", 10000, 0)
    references = [c["klarna_reference"] for c in order["captures"]]
    assert references == [f"{order['klarna_reference']}-1", f"{order['klarna_reference']}-2"]
    got = await sandbox.request("GET", f"{OM}{order_id}/captures/{capture_id}")
    assert got.status == 200
    assert got.json()["description"] == "First box" and got.json()["reference"] == "C1"
    listed = await sandbox.request("GET", f"{OM}{order_id}/captures")
    assert [c["captured_amount"] for c in listed.json()] == [4000, 6000]


@pytest_twisted.ensureDeferred
async def test_capture_refusals(sandbox):
    """Over-capture, capture of a captured order and zero captures: 403 CAPTURE_NOT_ALLOWED."""
    order_id = await sandbox.create_order(amount=10000)
    status, code, message = error_of(await capture(sandbox, order_id, 10001))
    assert (status, code) == (403, "CAPTURE_NOT_ALLOWED")
    assert message == ("Captured amount is higher than the remaining authorized amount. "
                       "Capture not possible.")
    assert error_of(await capture(sandbox, order_id, 0))[:2] == (403, "CAPTURE_NOT_ALLOWED")
    assert (await capture(sandbox, order_id, 10000)).status == 201
    status, code, message = error_of(await capture(sandbox, order_id, 1))
    assert (status, code) == (403, "CAPTURE_NOT_ALLOWED") and "fully captured" in message


@pytest_twisted.ensureDeferred
async def test_capture_lines_must_sum_to_amount(sandbox):
    """Capture order lines are checked: arithmetic per line and sum = captured_amount."""
    order_id = await sandbox.create_order(amount=10000)
    lines = sample_lines(3000)
    status, code, message = error_of(await capture(sandbox, order_id, 4000, order_lines=lines))
    assert (status, code) == (400, "BAD_VALUE") and message.startswith("Bad value: order_lines")
    lines[0]["total_amount"] = 2999
    status, code, message = error_of(await capture(sandbox, order_id, 2999, order_lines=lines))
    assert message == "Bad value: order_lines[0].total_amount"
    ok = await capture(sandbox, order_id, 3000, order_lines=sample_lines(3000))
    assert ok.status == 201
    order = await sandbox.get_order(order_id)
    assert order["captures"][0]["order_lines"][0]["total_amount"] == 3000
    assert order["captured_amount"] == 3000


@pytest_twisted.ensureDeferred
async def test_capture_field_limits(sandbox):
    """Over-long capture fields are 422 naming the field; a bad shipping method is 400."""
    order_id = await sandbox.create_order()
    reply = await capture(sandbox, order_id, 100, shipping_info=[{"shipping_company": "D" * 101}])
    assert error_of(reply) == (422, "UNPROCESSABLE_ENTITY", "The size of the "
                               "shipping_info[0].shipping_company value must be between 0 and 100")
    reply = await capture(sandbox, order_id, 100, shipping_info=[{"shipping_method": "Drone"}])
    assert error_of(reply) == (400, "BAD_VALUE", "Bad value: shipping_info[0].shipping_method")
    reply = await capture(sandbox, order_id, 200_000_001)
    assert error_of(reply)[:2] == (422, "UNPROCESSABLE_ENTITY")
    reply = await capture(sandbox, order_id, "100")
    assert error_of(reply) == (400, "BAD_VALUE", "Bad value: captured_amount")
    reply = await sandbox.request("POST", f"{OM}{order_id}/captures", json_body={})
    assert error_of(reply) == (400, "BAD_VALUE", "Missing value: captured_amount")
    lines = sample_lines(100)
    lines[0]["name"] = "n" * 256
    reply = await capture(sandbox, order_id, 100, order_lines=lines)
    assert error_of(reply)[2] == (
        "The size of the order_lines[0].name value must be between 0 and 255")


@pytest_twisted.ensureDeferred
async def test_cancel_authorized_order(sandbox):
    """AUTHORIZED -> CANCELLED; afterwards captures, refs and a second cancel are refused."""
    order_id = await sandbox.create_order()
    reply = await post(sandbox, order_id, "cancel")
    assert reply.status == 204 and reply.body == b""
    order = await sandbox.get_order(order_id)
    assert order["status"] == "CANCELLED" and order["remaining_authorized_amount"] == 0
    status, code, message = error_of(await capture(sandbox, order_id, 100))
    assert (status, code, message) == (403, "CAPTURE_NOT_ALLOWED",
                                       "Order is cancelled. Capture not possible.")
    assert error_of(await post(sandbox, order_id, "cancel"))[:2] == (403, "CANCEL_NOT_ALLOWED")
    reply = await patch(sandbox, order_id, "merchant-references", {"merchant_reference1": "x"})
    assert error_of(reply) == (403, "NOT_ALLOWED", "Can not update a cancelled order")
    reply = await post(sandbox, order_id, "extend-authorization-time")
    assert error_of(reply)[:2] == (403, "NOT_ALLOWED")
    reply = await patch(sandbox, order_id, "authorization", {"order_amount": 5})
    assert error_of(reply)[:2] == (403, "NOT_ALLOWED")


@pytest_twisted.ensureDeferred
async def test_cancel_after_capture_refused(sandbox):
    """A captured order cannot be cancelled: 403 CANCEL_NOT_ALLOWED with Klarna's message."""
    order_id = await sandbox.create_order()
    await capture(sandbox, order_id, 100)
    assert error_of(await post(sandbox, order_id, "cancel")) == (
        403, "CANCEL_NOT_ALLOWED", "Order has previous captures. Cancel not possible.")


@pytest_twisted.ensureDeferred
async def test_release_remaining_authorization(sandbox):
    """PART_CAPTURED -> CAPTURED with remaining 0; refused with no captures or when captured."""
    order_id = await sandbox.create_order(amount=10000)
    reply = await post(sandbox, order_id, "release-remaining-authorization")
    assert error_of(reply) == (403, "NOT_ALLOWED",
                               "Order has no captures. Remaining authorization cannot be released.")
    await capture(sandbox, order_id, 2500)
    reply = await post(sandbox, order_id, "release-remaining-authorization")
    assert reply.status == 204
    order = await sandbox.get_order(order_id)
    assert (order["status"], order["remaining_authorized_amount"], order["captured_amount"]) == (
        "CAPTURED", 0, 2500)
    reply = await post(sandbox, order_id, "release-remaining-authorization")
    assert error_of(reply) == (
        403, "NOT_ALLOWED", "Order is fully captured. Remaining authorization cannot be released.")
    assert error_of(await capture(sandbox, order_id, 1))[:2] == (403, "CAPTURE_NOT_ALLOWED")


@pytest_twisted.ensureDeferred
async def test_refunds_and_allocation(sandbox):
    """Refunds go to the capture holding the line reference, else the oldest with room."""
    lines = sample_lines(4000, "A") + sample_lines(6000, "B")
    order_id = await sandbox.create_order(amount=10000, lines=lines)
    await capture(sandbox, order_id, 4000, order_lines=sample_lines(4000, "A"))
    await capture(sandbox, order_id, 6000, order_lines=sample_lines(6000, "B"))
    reply = await refund(sandbox, order_id, 1000, order_lines=sample_lines(1000, "B"),
                         description="Returned", reference="R1")
    assert reply.status == 201 and reply.body == b""
    refund_id = reply.headers["refund-id"]
    assert reply.headers["location"].endswith(f"/orders/{order_id}/refunds/{refund_id}")
    order = await sandbox.get_order(order_id)
    assert [c["refunded_amount"] for c in order["captures"]] == [0, 1000]
    await refund(sandbox, order_id, 4500)  # no lines: oldest first, spilling over
    order = await sandbox.get_order(order_id)
    assert [c["refunded_amount"] for c in order["captures"]] == [4000, 1500]
    assert order["refunded_amount"] == 5500 and order["status"] == "CAPTURED"
    got = await sandbox.request("GET", f"{OM}{order_id}/refunds/{refund_id}")
    assert got.status == 200
    assert got.json()["refunded_amount"] == 1000 and got.json()["reference"] == "R1"


@pytest_twisted.ensureDeferred
async def test_refund_refusals(sandbox):
    """No captures, too much, or lines not summing: REFUND_NOT_ALLOWED / BAD_VALUE."""
    order_id = await sandbox.create_order(amount=10000)
    assert error_of(await refund(sandbox, order_id, 100)) == (
        403, "REFUND_NOT_ALLOWED", "Order has no captures. Refund not possible")
    await capture(sandbox, order_id, 3000)
    assert error_of(await refund(sandbox, order_id, 3001))[:2] == (403, "REFUND_NOT_ALLOWED")
    reply = await refund(sandbox, order_id, 1000, order_lines=sample_lines(900))
    assert error_of(reply)[:2] == (400, "BAD_VALUE")
    assert (await refund(sandbox, order_id, 3000)).status == 201
    assert error_of(await refund(sandbox, order_id, 1))[:2] == (403, "REFUND_NOT_ALLOWED")


@pytest_twisted.ensureDeferred
async def test_return_fee_refund(sandbox):
    """A return_fee line is allowed after one full capture in SE; lines must sum to the amount."""
    order_id = await sandbox.create_order(amount=10000)
    await capture(sandbox, order_id, 10000)
    fee = {"type": "return_fee", "name": "Return fee", "quantity": 1, "unit_price": -500,
           "total_amount": -500, "reference": "FEE"}
    reply = await refund(sandbox, order_id, 9500, order_lines=sample_lines(10000) + [fee])
    assert reply.status == 201, reply.body
    other = await sandbox.create_order(amount=10000, purchase_country="US")
    await capture(sandbox, other, 10000)
    reply = await refund(sandbox, other, 9500, order_lines=sample_lines(10000) + [fee])
    assert error_of(reply)[:2] == (403, "REFUND_NOT_ALLOWED")


@pytest_twisted.ensureDeferred
async def test_update_authorization(sandbox):
    """Increase (INVOICE) and decrease allowed; below captured refused; lines replaced."""
    order_id = await sandbox.create_order(amount=10000)
    reply = await patch(sandbox, order_id, "authorization",
                        {"order_amount": 12000, "order_lines": sample_lines(12000, "NEW")})
    assert reply.status == 204
    order = await sandbox.get_order(order_id)
    assert order["order_amount"] == 12000 and order["original_order_amount"] == 10000
    assert order["order_lines"][0]["reference"] == "NEW"
    assert order["remaining_authorized_amount"] == 12000
    await capture(sandbox, order_id, 8000)
    reply = await patch(sandbox, order_id, "authorization", {"order_amount": 7000})
    assert error_of(reply) == (403, "NOT_ALLOWED",
                               "Resulting authorization amount 7000 cannot be less than the "
                               "captured amount 8000 for order. Order authorization cannot be "
                               "updated")
    reply = await patch(sandbox, order_id, "authorization",
                        {"order_amount": 9000, "order_lines": sample_lines(8000)})
    assert error_of(reply)[:2] == (400, "BAD_VALUE")
    reply = await patch(sandbox, order_id, "authorization", {"order_amount": 8000})
    assert reply.status == 204
    order = await sandbox.get_order(order_id)
    assert order["status"] == "CAPTURED" and order["order_lines"] == []
    reply = await patch(sandbox, order_id, "authorization", {"order_amount": 9000})
    assert error_of(reply)[:2] == (403, "NOT_ALLOWED")


@pytest_twisted.ensureDeferred
async def test_merchant_references_patch(sandbox):
    """Present fields overwrite, absent fields stay, "" clears."""
    order_id = await sandbox.create_order(merchant_reference2="ERP")
    reply = await patch(sandbox, order_id, "merchant-references", {"merchant_reference1": "NEW"})
    assert reply.status == 204
    order = await sandbox.get_order(order_id)
    assert (order["merchant_reference1"], order["merchant_reference2"]) == ("NEW", "ERP")
    await patch(sandbox, order_id, "merchant-references", {"merchant_reference2": ""})
    assert (await sandbox.get_order(order_id))["merchant_reference2"] == ""
    reply = await patch(sandbox, order_id, "merchant-references",
                        {"merchant_reference1": "x" * 256})
    assert error_of(reply)[:2] == (422, "UNPROCESSABLE_ENTITY")


@pytest_twisted.ensureDeferred
async def test_customer_details_patch(sandbox):
    """Shipping address fields update; a different billing address is refused, nothing applied."""
    order_id = await sandbox.create_order()
    reply = await patch(sandbox, order_id, "customer-details",
                        {"shipping_address": {"city": "Göteborg", "postal_code": "41101"}})
    assert reply.status == 204
    order = await sandbox.get_order(order_id)
    assert order["shipping_address"]["city"] == "Göteborg"
    assert order["shipping_address"]["street_address"] == "Sveavägen 44"
    same_billing = order["billing_address"]
    reply = await patch(sandbox, order_id, "customer-details",
                        {"billing_address": same_billing, "shipping_address": {"city": "Malmö"}})
    assert reply.status == 204
    reply = await patch(sandbox, order_id, "customer-details",
                        {"billing_address": {**same_billing, "city": "Lund"},
                         "shipping_address": {"city": "Uppsala"}})
    assert error_of(reply) == (403, "NOT_ALLOWED", "Billing address cannot be updated for user "
                               "account order. Customer details cannot be updated.")
    order = await sandbox.get_order(order_id)
    assert order["shipping_address"]["city"] == "Malmö"
    assert order["billing_address"]["city"] == "Stockholm"
    reply = await patch(sandbox, order_id, "customer-details",
                        {"shipping_address": {"postal_code": "1" * 11}})
    assert error_of(reply) == (422, "UNPROCESSABLE_ENTITY", "The size of the "
                               "shipping_address.postal_code value must be between 0 and 10")


@pytest_twisted.ensureDeferred
async def test_shipping_info_send_out_and_due_date(sandbox):
    """Order/capture shipping info append; trigger-send-out; due-date options and extension."""
    order_id = await sandbox.create_order()
    info = {"shipping_info": [{"shipping_company": "DHL SE", "shipping_method": "Home",
                               "tracking_number": "123"}]}
    assert (await post(sandbox, order_id, "shipping-info", info)).status == 204
    assert (await post(sandbox, order_id, "shipping-info", info)).status == 204
    assert len((await sandbox.get_order(order_id))["shipping_info"]) == 2
    reply = await post(sandbox, order_id, "captures/nope/shipping-info", info)
    assert error_of(reply)[:2] == (403, "NOT_ALLOWED")  # order has no captures
    reply = await post(sandbox, order_id, "captures/nope/trigger-send-out")
    assert error_of(reply)[:2] == (403, "NOT_ALLOWED")
    capture_id = (await capture(sandbox, order_id, 1000)).headers["capture-id"]
    reply = await post(sandbox, order_id, f"captures/{capture_id}/shipping-info", info)
    assert reply.status == 204
    assert (await post(sandbox, order_id, f"captures/{capture_id}/trigger-send-out")).status == 204
    reply = await post(sandbox, order_id, "captures/nope/trigger-send-out")
    assert error_of(reply)[:2] == (404, "NO_SUCH_CAPTURE")
    reply = await post(sandbox, order_id, "captures/nope/shipping-info", info)
    assert error_of(reply)[:2] == (404, "NO_SUCH_CAPTURE")
    reply = await post(sandbox, order_id, "shipping-info", {"shipping_info": []})
    assert error_of(reply)[:2] == (422, "UNPROCESSABLE_ENTITY")
    order = await sandbox.get_order(order_id)
    assert order["captures"][0]["shipping_info"][0]["shipping_company"] == "DHL SE"
    options = await sandbox.request("GET", f"{OM}{order_id}/captures/{capture_id}/"
                                           "extend-due-date-options")
    assert options.status == 200
    assert options.json()["currency"] == "SEK" and options.json()["options"]
    days = options.json()["options"][0]["number_of_days"]
    path = f"{OM}{order_id}/captures/{capture_id}/extend-due-date"
    assert (await sandbox.request("PATCH", path, json_body={"number_of_days": days})).status == 204
    again = await sandbox.request("PATCH", path, json_body={"number_of_days": days})
    assert error_of(again)[:2] == (403, "NOT_ALLOWED")


@pytest_twisted.ensureDeferred
async def test_acknowledge(sandbox):
    """Acknowledge answers 204 for an existing order and 404 NO_SUCH_ORDER otherwise."""
    order_id = await sandbox.create_order()
    assert (await post(sandbox, order_id, "acknowledge")).status == 204
    assert error_of(await post(sandbox, "missing", "acknowledge"))[:2] == (404, "NO_SUCH_ORDER")


@pytest_twisted.ensureDeferred
async def test_pending_fraud_blocks_capture_until_accepted(sandbox):
    """PENDING (and REJECTED/STOPPED) orders refuse captures; the control API resolves them."""
    reply = await sandbox.request("POST", "/payments/v1/authorizations/pending-7/order",
                                  json_body=order_body())
    order_id = reply.json()["order_id"]
    assert error_of(await capture(sandbox, order_id, 100))[:2] == (403, "CAPTURE_NOT_ALLOWED")
    for status in ("REJECTED", "STOPPED"):
        resolved = await sandbox.control("POST", f"/sandbox/v1/orders/{order_id}/fraud_status",
                                         {"fraud_status": status})
        assert resolved.status == 200
        assert (await sandbox.get_order(order_id))["fraud_status"] == status
        assert error_of(await capture(sandbox, order_id, 100))[:2] == (403, "CAPTURE_NOT_ALLOWED")
    await sandbox.control("POST", f"/sandbox/v1/orders/{order_id}/fraud_status",
                          {"fraud_status": "ACCEPTED"})
    assert (await capture(sandbox, order_id, 100)).status == 201


@pytest_twisted.ensureDeferred
async def test_capture_fails_prefix(sandbox):
    """Token prefix ``capture-fails-``: the order is ACCEPTED but every capture is declined."""
    order_id = await sandbox.create_order(token="capture-fails-1")
    status, code, message = error_of(await capture(sandbox, order_id, 100))
    assert (status, code) == (403, "CAPTURE_NOT_ALLOWED") and "payment method failed" in message
    assert (await sandbox.get_order(order_id))["status"] == "AUTHORIZED"


@pytest_twisted.ensureDeferred
async def test_expiry_is_lazy_and_blocks_capture_and_extension(sandbox):
    """Past expires_at the order reads EXPIRED; capture and extension are refused."""
    order_id = await sandbox.create_order()
    await sandbox.advance(28 * 86400 - 10)
    assert (await sandbox.get_order(order_id))["status"] == "AUTHORIZED"
    await sandbox.advance(20)
    order = await sandbox.get_order(order_id)
    assert order["status"] == "EXPIRED" and order["remaining_authorized_amount"] == 0
    assert error_of(await capture(sandbox, order_id, 100)) == (
        403, "CAPTURE_NOT_ALLOWED", "Order is expired. Capture not possible.")
    assert error_of(await post(sandbox, order_id, "extend-authorization-time")) == (
        403, "NOT_ALLOWED", "Order is expired. Authorization time cannot be extended.")


@pytest_twisted.ensureDeferred
async def test_part_captured_order_expires_but_stays_refundable(sandbox):
    """An expired part-captured order refuses captures but its captured part can be refunded."""
    order_id = await sandbox.create_order()
    await capture(sandbox, order_id, 1000)
    await sandbox.advance(29 * 86400)
    assert (await sandbox.get_order(order_id))["status"] == "EXPIRED"
    assert (await refund(sandbox, order_id, 1000)).status == 201


@pytest_twisted.ensureDeferred
async def test_extend_authorization_time_capped_at_180_days(sandbox):
    """Extension sets call time + 28 days, capped at creation + 180 days; then 403."""
    sandbox.clock.freeze()
    order_id = await sandbox.create_order()
    created = parse_timestamp((await sandbox.get_order(order_id))["created_at"])
    await sandbox.advance(20 * 86400)
    assert (await post(sandbox, order_id, "extend-authorization-time")).status == 204
    expires = parse_timestamp((await sandbox.get_order(order_id))["expires_at"])
    assert expires == created + timedelta(days=48)
    for day in (45, 70, 95, 120, 145, 170):
        await sandbox.advance(25 * 86400)
        assert (await post(sandbox, order_id, "extend-authorization-time")).status == 204
        expires = parse_timestamp((await sandbox.get_order(order_id))["expires_at"])
        assert expires == created + timedelta(days=min(day + 28, 180))
    status, code, message = error_of(await post(sandbox, order_id, "extend-authorization-time"))
    assert (status, code) == (403, "NOT_ALLOWED") and "180 days" in message
