"""v2 answered every call on its own: a deliberate repeat is a second operation.

With the official Python SDK, through the real gateway and sandbox: identical calls whose
replies were delivered are never replayed (a second parcel is a second capture, a second
return a second refund, update A→B→A ends at A), while a client that never received its
answer (9119, a closed connection) gets that operation's outcome, once.
"""
from __future__ import annotations

import socket
import xmlrpc.client
from typing import Any
from urllib.parse import urlparse

import pytest_twisted
import treq
from twisted.internet import threads

from gateway.binding import Phase
from tests.e2e.sdk import fault_of, mutations
from tests.harness import ADMIN, Harness, order_line
from tests.waiting import eventually


async def journal(gw: Harness, eid: int = 1234) -> list[dict[str, Any]]:
    resp = await treq.get(f"{gw.admin}/v1/journal/{eid}", headers=ADMIN)
    return list((await resp.json())["calls"])


@pytest_twisted.ensureDeferred
async def test_two_parcels_of_the_same_article_are_two_captures(gw: Harness) -> None:
    """1 × ART-1 shipped, then another 1 × ART-1 seconds later: two captures, two invoice
    numbers (the first landing answered the second with the first's invno: lost money)."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, first = await gw.call(k.activate, created["rno"])
    k.add_art_no(qty=1, artno="ART-1")
    _, second = await gw.call(k.activate, created["rno"])
    assert first != second
    order = await gw.order(created["order_id"])
    assert order["captured_amount"] == 20000 and len(order["captures"]) == 2

    async def both_delivered() -> bool:  # recorded once each reply was written: just after
        calls = [c for c in await journal(gw) if c["method"] == "activate"]
        return len(calls) == 2 and all(c["delivered_at"] is not None for c in calls)
    await eventually(both_delivered, "the journal records both deliveries")


@pytest_twisted.ensureDeferred
async def test_two_identical_returns_are_two_refunds_within_the_invoice(gw: Harness) -> None:
    """Two identical credit_part calls (empty credno, as PHP sends): two refunds; a third
    would exceed the invoice and is refused (2102), changing nothing."""
    created = await gw.create_order(lines=[order_line("ART-1", "Sylt", 2, 10000)])
    k = gw.sdk()
    _, invno = await gw.call(k.activate, created["rno"])
    for _ in range(2):
        k = gw.sdk()  # a fresh client: PY accumulates artnos until cleared
        k.add_art_no(qty=1, artno="ART-1")
        assert await gw.call(k.credit_part, invno) == invno
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    f = await fault_of(gw, k.credit_part, invno)
    assert f.faultCode in (2102, 9107)
    assert len(mutations(await gw.operations(created["order_id"]), "/refunds")) == 2
    assert (await gw.order(created["order_id"]))["refunded_amount"] == 20000


@pytest_twisted.ensureDeferred
async def test_update_a_then_b_then_a_ends_at_a(gw: Harness) -> None:
    """orderid1 A, then B, then A again ends at A; goods ×2 → ×3 → ×2 ends at ×2, and a
    later full activation captures ×2, not ×3."""
    created = await gw.create_order(lines=[order_line("ART-1", "Sylt", 2, 10000)])
    rno = created["rno"]
    for ref in ("ERP-A", "ERP-B", "ERP-A"):
        k = gw.sdk()
        k.set_estore_info(orderid1=ref)
        assert await gw.call(k.update, rno) is True
    assert (await gw.order(created["order_id"]))["merchant_reference1"] == "ERP-A"
    for qty in (2, 3, 2):
        k = gw.sdk()
        k.add_article(qty=qty, artno="ART-1", title="Sylt", price=100, vat=25,
                      discount=0, flags=32)
        assert await gw.call(k.update, rno) is True
    order = await gw.order(created["order_id"])
    assert order["order_amount"] == 20000 and order["order_lines"][0]["quantity"] == 2
    await gw.call(gw.sdk().activate, rno)
    assert (await gw.order(created["order_id"]))["captured_amount"] == 20000


@pytest_twisted.ensureDeferred
async def test_extend_after_cancel_is_refused(gw: Harness) -> None:
    """extend_expiry_date, cancel_reservation, extend_expiry_date again: the second extend
    is refused (9103), not answered with the first one's date."""
    created = await gw.create_order()
    k = gw.sdk()
    await gw.call(k.extend_expiry_date, created["rno"])
    assert await gw.call(k.cancel_reservation, created["rno"]) is True
    f = await fault_of(gw, k.extend_expiry_date, created["rno"])
    assert f.faultCode == 9103 and "cancelled" in f.faultString


@pytest_twisted.ensureDeferred
async def test_after_9119_the_same_call_continues_then_a_repeat_is_new(gw: Harness) -> None:
    """Klarna applies the capture but every answer is lost: 9119. The client's retry of the
    same call (re-adding the article to a fresh client, as it must: both SDKs keep their
    article list after a fault) continues that operation: one capture, its invno. A further
    identical call, its reply delivered, is a second parcel."""
    created = await gw.create_order()
    await gw.fault(method="POST", path="/captures$", action="apply_then_fail", status=503,
                   times=1000)
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    f = await fault_of(gw, k.activate, created["rno"])
    assert f.faultCode == 9119
    await gw.clear_faults()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, invno = await gw.call(k.activate, created["rno"])
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 1
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, second = await gw.call(k.activate, created["rno"])
    assert second != invno
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 2


def _call_and_hang_up(url: str, body: bytes, wait: float) -> None:
    """Send a request and close the connection after ``wait`` s, before any reply."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sock.settimeout(wait)
        try:
            assert sock.recv(1) == b""
        except TimeoutError:
            pass


@pytest_twisted.ensureDeferred
async def test_a_reply_the_client_never_received_is_replayed_once(gw: Harness) -> None:
    """The client hangs up while Klarna is slow: the capture completes anyway, its reply is
    never delivered. The client's next identical call gets that outcome (one capture, its
    invno); the one after that, with its reply delivered, is a new operation."""
    created = await gw.create_order()
    await gw.fault(method="POST", path="/captures$", action="latency", delay_ms=600, times=1)
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    body = xmlrpc.client.dumps(  # the SDK's own request, built the SDK's way
        tuple(_sdk_params(k, created["rno"])), "activate", encoding="iso-8859-1").encode(
            "latin-1")
    await threads.deferToThread(_call_and_hang_up, gw.url, body, 0.2)
    assert gw.gateway.store is not None
    store = gw.gateway.store

    async def handed_over() -> bool:  # the capture completed without its client
        entries = [e for e in await store.journal_for(1234) if e.method == "activate"]
        return bool(entries) and entries[0].phase in (Phase.UNDELIVERED, Phase.DELIVERED)
    await eventually(handed_over, "the call's reply was handed over (or found undeliverable)")
    [entry] = [c for c in await journal(gw) if c["method"] == "activate"]
    assert entry["state"] == "done" and entry["delivered_at"] is None
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    assert await gw.call(k.activate, created["rno"]) == tuple(entry["reply"])
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 1
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, third = await gw.call(k.activate, created["rno"])
    assert third != entry["reply"][1]
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 2


def _sdk_params(k: Any, rno: str) -> list[Any]:
    """The exact parameters the SDK sends for ``activate(rno)`` (captured, not sent)."""
    sent: list[Any] = []

    class Capture:
        def __getattr__(self, name: str) -> Any:
            def call(*params: Any) -> Any:
                sent.extend(params)
                return ["ok", "0"]
            return call
    real, k.xmlrpc = k.xmlrpc, Capture()
    try:
        k.activate(rno)
    finally:
        k.xmlrpc = real
    return sent
