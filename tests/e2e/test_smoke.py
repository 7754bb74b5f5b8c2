"""Smoke: the official SDK activates a sandbox order through the gateway."""
from __future__ import annotations

import pytest_twisted

from tests.harness import Harness


@pytest_twisted.ensureDeferred
async def test_full_activation(gw: Harness) -> None:
    """activate with no artnos captures the whole order and returns ['ok', invno]."""
    created = await gw.create_order()
    k = gw.sdk()
    risk, invno = await gw.call(k.activate, created["rno"])
    assert risk == "ok"
    order = await gw.order(created["order_id"])
    assert order["status"] == "CAPTURED"
    mapping = await gw.mapping(1234, created["rno"])
    assert [i["invno"] for i in mapping["invoices"]] == [str(invno)]
