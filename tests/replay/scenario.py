"""The recorded SDK session shared by the replay tests and ``scripts/replay_example.py``.

A short, realistic back-office session through the official Python SDK: a goods-list
``update``, a partial ``activate``, ``email_invoice``, ``credit_part``, ``extend_expiry_date``,
two faults (an unknown artno, an unknown reservation), and a second reservation activated in
full and asked for its ``invoice_amount``. Orders are created through the admin API (the
recording holds only legacy exchanges), with lines a replay can infer from the calls.
"""
from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any

import klarna

from tests.harness import Harness, order_line

LINES = [order_line("ART-1", "Blåbärssylt", 2, 10000), order_line("ART-2", "Lingon", 3, 5000)]
#: What seeding infers for a reservation only activated in full (gateway.replay.seed).
PLAIN_LINES = [order_line("ITEM-1", "ITEM-1", 1, 10000)]


@dataclass
class Session:
    rnos: list[str] = field(default_factory=list)
    invnos: list[str] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)


async def _fault(gw: Harness, fn: Any, *args: Any) -> int:
    try:
        await gw.call(fn, *args)
    except xmlrpc.client.Fault as f:
        return int(f.faultCode)
    raise AssertionError("expected a fault")


async def run_session(gw: Harness, sdk_uri: str | None = None) -> Session:
    """Drive the session; ``sdk_uri``: where the SDK sends (a recording proxy)."""
    s = Session()
    first = await gw.create_order(lines=LINES)
    second = await gw.create_order(lines=PLAIN_LINES)
    rno, rno2 = first["rno"], second["rno"]
    s.rnos += [rno, rno2]
    k = gw.sdk(uri=sdk_uri)
    k.add_article(qty=2, artno="ART-1", title="Blåbärssylt", price=100.0, vat=25,
                  flags=klarna.const.GoodsIs.INC_VAT)
    k.add_article(qty=3, artno="ART-2", title="Lingon", price=50.0, vat=25,
                  flags=klarna.const.GoodsIs.INC_VAT)
    k.set_estore_info(orderid1="ERP-1001")
    s.replies.append(await gw.call(k.update, rno))
    k.add_art_no(qty=1, artno="ART-1")
    _, invno = await gw.call(k.activate, rno)
    s.invnos.append(str(invno))
    s.replies.append(await gw.call(k.email_invoice, invno))
    k.add_art_no(qty=1, artno="NOPE")
    s.faults.append(await _fault(gw, k.credit_part, invno, "CR-0"))
    k.clear()
    k.add_art_no(qty=1, artno="ART-1")
    s.replies.append(await gw.call(k.credit_part, invno, "CR-1"))
    s.replies.append(await gw.call(k.extend_expiry_date, rno))
    k.clear()
    s.faults.append(await _fault(gw, k.activate, "8999999999"))
    _, invno2 = await gw.call(k.activate, rno2)
    s.invnos.append(str(invno2))
    s.replies.append(await gw.call(k.invoice_amount, invno2))
    return s
