"""The v2-strict profile end to end: one merchant strict, the other default, same calls."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest_twisted
import treq

from gateway.config import default_sandbox_config_path, load_config
from tests.e2e.sdk import fault_of
from tests.harness import ADMIN, Harness, start_gateway


@pytest_twisted.async_yield_fixture
async def strict(tmp_path: Any) -> AsyncIterator[Harness]:
    """eid 5678 runs the v2-strict profile; eid 1234 the default."""
    config = load_config(default_sandbox_config_path())
    config = replace(config, merchants=tuple(
        replace(m, profile="v2-strict") if m.eid == 5678 else m for m in config.merchants))
    h = await start_gateway(f"sqlite:///{tmp_path}/gw.db", config)
    try:
        yield h
    finally:
        await h.gateway.stop()


async def _placed_hours_ago(gw: Harness, hours: float, eid: int) -> dict[str, Any]:
    """An order whose created_at lies ``hours`` in the past (the sandbox clock, moved)."""
    then = datetime.fromtimestamp(time.time() - hours * 3600, UTC)
    await _clock(gw, {"now": then.strftime("%Y-%m-%dT%H:%M:%SZ")})
    created = await gw.create_order(eid=eid)
    await _clock(gw, {"now": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    return created


async def _clock(gw: Harness, body: dict[str, Any]) -> None:
    resp = await treq.post(f"{gw.sandbox}/sandbox/v1/clock", json=body, headers=ADMIN)
    assert resp.code == 200, await resp.text()
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_activation_within_30_minutes(strict: Harness) -> None:
    """Strict: an order placed just now cannot be activated yet (9103, naming when);
    one placed an hour ago can. Default: at once."""
    fresh = await strict.create_order(eid=5678)
    f = await fault_of(strict, strict.sdk(5678).activate, fresh["rno"])
    assert f.faultCode == 9103 and "30 minutes" in f.faultString
    old = await _placed_hours_ago(strict, 1, 5678)
    assert (await strict.call(strict.sdk(5678).activate, old["rno"]))[0] == "ok"
    default = await strict.create_order(eid=1234)
    assert (await strict.call(strict.sdk(1234).activate, default["rno"]))[0] == "ok"


@pytest_twisted.ensureDeferred
async def test_update_after_activation_and_cancel_twice(strict: Harness) -> None:
    """Strict: update after a partial activation is 9103, and cancelling a cancelled
    reservation is 9103; the default profile updates and answers ok."""
    for eid, strict_profile in ((5678, True), (1234, False)):
        created = await _placed_hours_ago(strict, 1, eid)
        k = strict.sdk(eid)
        k.add_art_no(qty=1, artno="ART-1")
        await strict.call(k.activate, created["rno"])
        k = strict.sdk(eid)
        k.set_estore_info(orderid1="LATE-CHANGE")
        if strict_profile:
            f = await fault_of(strict, k.update, created["rno"])
            assert f.faultCode == 9103 and "activated" in f.faultString
        else:
            assert await strict.call(k.update, created["rno"]) is True
        other = await _placed_hours_ago(strict, 1, eid)
        k = strict.sdk(eid)
        assert await strict.call(k.cancel_reservation, other["rno"]) is True
        if strict_profile:
            f = await fault_of(strict, strict.sdk(eid).cancel_reservation, other["rno"])
            assert f.faultCode == 9103
        else:
            assert await strict.call(strict.sdk(eid).cancel_reservation, other["rno"]) is True


@pytest_twisted.ensureDeferred
async def test_fully_credited_invoice_is_not_active(strict: Harness) -> None:
    """Strict: email_invoice and another credit on a fully credited invoice are 8103."""
    created = await _placed_hours_ago(strict, 1, 5678)
    _, invno = await strict.call(strict.sdk(5678).activate, created["rno"])
    assert await strict.call(strict.sdk(5678).credit_invoice, invno, "") == invno
    assert (await fault_of(strict, strict.sdk(5678).email_invoice, invno)).faultCode == 8103
    assert (await fault_of(strict, strict.sdk(5678).credit_invoice, invno, "")).faultCode \
        == 8103
