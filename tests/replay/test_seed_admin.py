"""``POST /v1/sandbox/orders`` with ``"rno"``: how a replay seeds a recorded reservation."""
from __future__ import annotations

import pytest_twisted
import treq

from tests.harness import ADMIN, Harness, order_line


def _body(**extra: object) -> dict[str, object]:
    line = order_line("ART-1", "Sylt", 1, 10000)
    return {"eid": 1234, "purchase_country": "SE", "purchase_currency": "SEK",
            "locale": "sv-SE", "order_amount": 10000,
            "order_tax_amount": line["total_tax_amount"], "order_lines": [line], **extra}


@pytest_twisted.ensureDeferred
async def test_sandbox_order_under_a_chosen_rno(gw: Harness) -> None:
    url = gw.admin + "/v1/sandbox/orders"
    resp = await treq.post(url, json=_body(rno="7700000001"), headers=ADMIN)
    data = await resp.json()
    assert resp.code == 201 and data["rno"] == "7700000001"
    mapping = await gw.mapping(1234, "7700000001")
    assert mapping["order_id"] == data["order_id"]
    order = await gw.order(data["order_id"])
    assert "rno" not in order and order["order_amount"] == 10000  # not sent to Klarna
    resp = await treq.post(url, json=_body(rno="7700000001"), headers=ADMIN)
    assert resp.code == 409 and "7700000001" in (await resp.json())["error"]
    for bad in ("", " ", True, "x" * 65, ["1"]):
        resp = await treq.post(url, json=_body(rno=bad), headers=ADMIN)
        assert resp.code == 400, bad
        await resp.content()
    resp = await treq.post(url, json=_body(), headers=ADMIN)  # without: a number is issued
    data = await resp.json()
    assert resp.code == 201 and data["rno"] != "7700000001"
