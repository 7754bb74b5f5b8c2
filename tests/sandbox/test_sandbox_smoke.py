"""Smoke."""
import pytest_twisted


@pytest_twisted.ensureDeferred
async def test_smoke(sandbox):
    """An order can be created and read."""
    order_id = await sandbox.create_order()
    order = await sandbox.get_order(order_id)
    print(order)
    r = await sandbox.request("POST", f"/ordermanagement/v1/orders/{order_id}/captures", json_body={"captured_amount": 4000})
    print(r)
    r = await sandbox.request("POST", f"/ordermanagement/v1/orders/{order_id}/refunds", json_body={"refunded_amount": 1000})
    print(r)
    print(await sandbox.get_order(order_id))
