"""Regression tests for money-safety review findings: stale recovery copies, refunds past
an invoice while an earlier credit is unresolved, look-alike captures, stalled bodies."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web import resource, server

from gateway.config import Merchant
from gateway.engine.decisions import same_money as _same_money
from gateway.om.client import DeadlineExceededError, OmClient, RestTransportError
from tests.e2e.sdk import fault_of, mutations
from tests.harness import Harness


async def _pending_entry(gw: Harness, method: str) -> Any:
    assert gw.gateway.store is not None
    [entry] = [e for e in await gw.gateway.store.journal_for(1234)
               if e.method == method and e.state == "pending" and e.steps]
    return entry


@pytest_twisted.ensureDeferred
async def test_recovery_decides_from_the_entry_as_it_is_now(gw: Harness) -> None:
    """A sweep holding an old copy (no steps) of an entry whose capture was applied but
    unanswered must resume it with the same key, not fail it: one capture, same invno."""
    created = await gw.create_order()
    await gw.fault(method="POST", path="/captures$", action="apply_then_fail", status=503,
                   times=1000)
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    f = await fault_of(gw, k.activate, created["rno"])
    assert f.faultCode == 9119
    await gw.clear_faults()
    entry = await _pending_entry(gw, "activate")
    assert entry.steps  # planned and sent
    assert gw.gateway.engine is not None
    outcome = await gw.gateway.engine.resume(replace(entry, steps=()))  # the stale copy
    assert outcome == "done"
    k = gw.sdk()  # the SDK keeps artnos after a fault: a fresh client, the same call
    k.add_art_no(qty=1, artno="ART-1")
    risk, invno = await gw.call(k.activate, created["rno"])  # the client's late retry
    assert invno == entry.steps[0].effect.invno  # type: ignore[union-attr]
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 1


@pytest_twisted.ensureDeferred
async def test_no_new_credit_while_an_earlier_one_is_unresolved(gw: Harness) -> None:
    """credit_invoice X is unanswered (9119, not applied); credit_invoice Y on the same
    invoice must not refund meanwhile (9119), and once X completes Y finds nothing left:
    the invoice is never refunded beyond what it captured."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=2, artno="ART-1")
    _, inv1 = await gw.call(k.activate, created["rno"])
    await gw.call(k.activate, created["rno"])  # a second invoice with the rest
    await gw.fault(method="POST", path="/refunds$", action="fail", status=503, times=1000)
    f = await fault_of(gw, k.credit_invoice, inv1, "X")
    assert f.faultCode == 9119
    await gw.clear_faults()
    f = await fault_of(gw, k.credit_invoice, inv1, "Y")
    assert f.faultCode == 9119 and "unfinished" in f.faultString
    assert await gw.call(k.credit_invoice, inv1, "X") == inv1  # the client retries X
    f = await fault_of(gw, k.credit_invoice, inv1, "Y")
    assert f.faultCode == 2102
    order = await gw.order(created["order_id"])
    assert order["refunded_amount"] == 20000
    [inv] = [i for i in (await gw.mapping(1234, created["rno"]))["invoices"]
             if i["invno"] == inv1]
    assert inv["refunded_amount"] == inv["captured_amount"] == 20000


def test_settling_needs_the_same_lines_and_reference() -> None:
    """A capture of equal amount but other lines or reference is not ours."""
    body = {"captured_amount": 10000, "reference": "ERP-1",
            "order_lines": [{"reference": "ART-1", "quantity": 1, "total_amount": 10000}]}
    ours = {"captured_amount": 10000, "reference": "ERP-1",
            "order_lines": [{"reference": "ART-1", "quantity": 1, "total_amount": 10000}]}
    portal = {"captured_amount": 10000,
              "order_lines": [{"reference": "ART-2", "quantity": 2, "total_amount": 10000}]}
    assert _same_money(ours, body, "captured_amount")
    assert not _same_money(portal, body, "captured_amount")
    assert not _same_money(dict(ours, reference="other"), body, "captured_amount")


class _StallingBody(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.open = 0

    def render_GET(self, request: server.Request) -> Any:
        self.open += 1

        def gone(_: Any) -> None:
            self.open -= 1
        request.notifyFinish().addBoth(gone)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"100")
        request.write(b'{"order_id": ')  # headers and a little body, then nothing
        return server.NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_a_stalled_body_is_cut_at_the_attempt_timeout() -> None:
    """Headers arrive, the body never completes: the attempt still ends at its timeout,
    its connection is closed (not leaked), and retries stop at the deadline."""
    stalling = _StallingBody()
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        server.Site(stalling))
    om = OmClient(reactor, timeout=0.5)
    m = Merchant(eid=1, shared_secret="s", rest_username="u", rest_password="p",
                 base_url=f"http://127.0.0.1:{port.getHost().port}")
    start = reactor.seconds()
    try:
        try:
            await om.get_order(m, "o-1", deadline=start + 1.6)
        except DeadlineExceededError as e:
            assert isinstance(e.last, RestTransportError)
        else:
            raise AssertionError("a stalled body must not succeed")
        assert reactor.seconds() - start < 2.5
        from twisted.internet import task
        await task.deferLater(reactor, 0.2, lambda: None)
        assert stalling.open == 0, "a timed-out attempt left its connection open"
    finally:
        await om.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_capture_klarna_never_applied_is_given_up(gw: Harness) -> None:
    """A capture refused by Klarna with 5xx for longer than give_up_seconds is settled from
    the order: not there, so the entry is given up (9119, failed) and the order is free
    for new activations again."""
    created = await gw.create_order()
    await gw.fault(method="POST", path="/captures$", action="fail", status=503, times=1000)
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    f = await fault_of(gw, k.activate, created["rno"])
    assert f.faultCode == 9119
    other = gw.sdk()
    other.add_art_no(qty=1, artno="ART-2")
    f = await fault_of(gw, other.activate, created["rno"])  # blocked by the unresolved one
    assert f.faultCode == 9119 and "unfinished" in f.faultString
    entry = await _pending_entry(gw, "activate")
    engine = gw.gateway.engine
    assert engine is not None
    steps = engine.steps
    saved = steps.give_up_seconds, steps.quiet_seconds
    # "seventeen minutes later": past give_up_seconds and its quiet period
    steps.give_up_seconds, steps.quiet_seconds = 0.0, 0.0
    try:
        assert await engine.resume(entry) == "failed"
    finally:
        steps.give_up_seconds, steps.quiet_seconds = saved
    await gw.clear_faults()
    _, invno = await gw.call(other.activate, created["rno"])
    assert invno
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 1
