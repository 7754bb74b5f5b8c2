"""Exactly-once under injected faults, for every mutating legacy call.

Each case drives the official SDK through the gateway while the sandbox injects one fault
on the call's REST mutation: the operation is applied then the answer is lost (5xx or a
dropped connection), refused with a 5xx, hung past the timeout, reset, or rate limited.
Afterwards the sandbox must show the mutation applied exactly once and the store must hold
every row (invoice, credit, status) it implies.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import klarna
import pytest
import pytest_twisted

from gateway.config import load_config
from tests.e2e.sdk import fault_of, mutations
from tests.harness import SANDBOX_CONFIG, Harness, start_gateway

FAULTS: dict[str, dict[str, Any]] = {
    "apply_then_fail_503": {"action": "apply_then_fail", "status": 503},
    "apply_then_drop": {"action": "apply_then_fail", "status": 0},
    "fail_503": {"action": "fail", "status": 503},
    "hang": {"action": "hang"},
    "reset": {"action": "reset"},
    "rate_limit": {"action": "rate_limit"},
}


def fast_config() -> Any:
    """Short per-attempt timeout so a hung request is retried well inside the budget."""
    config = load_config(SANDBOX_CONFIG)
    return replace(config, gateway=replace(config.gateway, rest_timeout_seconds=1.0,
                                           retry_budget_seconds=4.0))


@pytest_twisted.async_yield_fixture
async def rgw(tmp_path: Any) -> Any:
    h = await start_gateway(f"sqlite:///{tmp_path}/gateway.db", config=fast_config())
    try:
        yield h
    finally:
        await h.gateway.stop()
    assert not h.violations, "\n".join(h.violations)


async def _activated(gw: Harness) -> tuple[dict[str, Any], str]:
    created = await gw.create_order()
    _, invno = await gw.call(gw.sdk().activate, created["rno"])
    return created, str(invno)


async def case_activate_full(gw: Harness) -> tuple[str, Any, str]:
    created = await gw.create_order()
    return created["order_id"], lambda k: k.activate(created["rno"]), r"/captures$"


async def case_activate_partial(gw: Harness) -> tuple[str, Any, str]:
    created = await gw.create_order()

    def call(k: Any) -> Any:
        k.add_art_no(qty=1, artno="ART-2")
        return k.activate(created["rno"])
    return created["order_id"], call, r"/captures$"


async def case_credit_part(gw: Harness) -> tuple[str, Any, str]:
    created, invno = await _activated(gw)

    def call(k: Any) -> Any:
        k.add_art_no(qty=1, artno="ART-1")
        return k.credit_part(invno, "CR")
    return created["order_id"], call, r"/refunds$"


async def case_credit_invoice(gw: Harness) -> tuple[str, Any, str]:
    created, invno = await _activated(gw)
    return created["order_id"], lambda k: k.credit_invoice(invno, "CR"), r"/refunds$"


async def case_cancel_reservation(gw: Harness) -> tuple[str, Any, str]:
    created = await gw.create_order()
    return created["order_id"], lambda k: k.cancel_reservation(created["rno"]), r"/cancel$"


async def case_update(gw: Harness) -> tuple[str, Any, str]:
    created = await gw.create_order()

    def call(k: Any) -> Any:
        k.add_article(qty=1, artno="ART-1", title="Blåbärssylt", price=100.0, vat=25,
                      flags=klarna.const.GoodsIs.INC_VAT)
        return k.update(created["rno"])
    return created["order_id"], call, r"/authorization$"


async def case_extend_expiry_date(gw: Harness) -> tuple[str, Any, str]:
    created = await gw.create_order()
    return (created["order_id"], lambda k: k.extend_expiry_date(created["rno"]),
            r"/extend-authorization-time$")


async def case_email_invoice(gw: Harness) -> tuple[str, Any, str]:
    created, invno = await _activated(gw)
    return created["order_id"], lambda k: k.email_invoice(invno), r"/trigger-send-out$"


CASES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


async def _check_store(gw: Harness, order_id: str, name: str) -> None:
    """The store holds the rows the applied mutation implies, matched by REST id."""
    order = await gw.order(order_id)
    mapping = None
    for eid_rno in await _rnos(gw, order_id):
        mapping = await gw.mapping(*eid_rno)
    assert mapping is not None
    capture_ids = sorted(c["capture_id"] for c in order["captures"])
    assert sorted(i["capture_id"] for i in mapping["invoices"]) == capture_ids
    refund_ids = sorted(r["refund_id"] for r in order["refunds"])
    assert sorted(c["refund_id"] for i in mapping["invoices"] for c in i["credits"]) == refund_ids
    if name == "cancel_reservation":
        assert order["status"] == "CANCELLED"


async def _rnos(gw: Harness, order_id: str) -> list[tuple[int, str]]:
    assert gw.gateway.store is not None
    return [(r.eid, r.rno) for r in await gw.gateway.store.list_reservations()
            if r.order_id == order_id]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("name", sorted(CASES))
@pytest_twisted.ensureDeferred
async def test_one_fault_then_success_applies_once(rgw: Harness, name: str, fault: str) -> None:
    """One injected fault on the mutation: the call still succeeds, applied exactly once."""
    order_id, call, path = await CASES[name](rgw)
    before = len(mutations(await rgw.operations(order_id), ""))
    await rgw.fault(method="PATCH" if name == "update" else "POST", path=path, times=1,
                    **FAULTS[fault])
    await rgw.call(call, rgw.sdk())
    ops = mutations(await rgw.operations(order_id), "")
    assert len(ops) == before + 1, ops
    assert [f["hits"] for f in await rgw.faults()] == [1], "the fault never fired"
    await _check_store(rgw, order_id, name)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest_twisted.ensureDeferred
async def test_outage_past_budget_then_client_retry_continues(rgw: Harness, name: str) -> None:
    """The mutation is applied but every answer is lost until the budget ends → 9119;
    the client's retry of the same call continues the same operation: still one."""
    order_id, call, path = await CASES[name](rgw)
    before = len(mutations(await rgw.operations(order_id), ""))
    await rgw.fault(method="PATCH" if name == "update" else "POST", path=path, times=1000,
                    action="apply_then_fail", status=503)
    k = rgw.sdk()
    f = await fault_of(rgw, call, k)
    assert f.faultCode == 9119
    await rgw.clear_faults()
    await rgw.call(call, rgw.sdk())
    ops = mutations(await rgw.operations(order_id), "")
    assert len(ops) == before + 1, ops
    await _check_store(rgw, order_id, name)
