"""``text_repair`` end to end: the official SDK sends UTF-8 text in its ISO-8859-1 request,
as an ERP that wraps nothing in ``utf8_decode()`` does; the gateway checks the digest on the
request as received, then (eid 1234: ``fix``) sends Klarna the repaired text or (eid 5678:
``report``, the default) the text as received, and notes and counts each repair.
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import klarna
import pytest_twisted
import treq

from gateway.config import default_sandbox_config_path, load_config
from gateway.tools.explain import format_plan
from tests.console.conftest import CONSOLE_TOKENS
from tests.e2e.sdk import fault_of
from tests.harness import ADMIN, Harness, order_line, serving
from tests.legacy.legacy_sdk_capture import make_sdk

FIX, REPORT = 1234, 5678
SECRETS = {FIX: "sandbox-secret", REPORT: "sandbox-secret-2"}


def mojibake(text: str) -> str:
    """UTF-8 ``text`` put into an ISO-8859-1 request byte for byte."""
    return text.encode("utf-8").decode("latin-1")


@pytest_twisted.async_yield_fixture
async def gw(tmp_path: Path) -> AsyncIterator[Harness]:
    config = load_config(default_sandbox_config_path())
    config = replace(config, merchants=tuple(
        replace(m, text_repair="fix" if m.eid == FIX else m.text_repair,
                console_token=CONSOLE_TOKENS[m.eid]) for m in config.merchants))
    assert config.merchant(REPORT).text_repair == "report"  # the default
    async for h in serving(f"sqlite:///{tmp_path}/gw.db", config):
        yield h


def ship_to(k: Any, name: str, city: str) -> None:
    k.shipping = klarna.Address(fname=name, lname="Öberg", street="Storgatan",
                                house_number="3", zip="12345", city=city, country="SE",
                                company="SÃO PAULO AB")


async def journal(gw: Harness, eid: int, method: str) -> dict[str, Any]:
    resp = await treq.get(f"{gw.admin}/v1/journal?eid={eid}&method={method}", headers=ADMIN)
    entries = (await resp.json())["entries"]
    return entries[0]


async def repairs_metric(gw: Harness) -> dict[tuple[str, str, str], float]:
    resp = await treq.get(gw.admin + "/metrics")
    text = (await resp.content()).decode()
    return {(eid, field, mode): float(value) for eid, field, mode, value in re.findall(
        r'^klarna_gateway_text_repairs_total\{eid="(\d+)",field="([^"]+)",mode="(\w+)"\} '
        r"(\S+)$", text, re.M)}


@pytest_twisted.ensureDeferred
async def test_update_with_mojibake_fix_and_report(gw: Harness) -> None:
    """The same update for both merchants: `fix` gives Klarna "Åsa"/"Malmö" and the
    repaired article, `report` gives Klarna what it got; both journal a note per field and
    count it; right text ("Öberg", "SÃO PAULO AB") is left alone."""
    for eid in (FIX, REPORT):
        created = await gw.create_order(eid=eid)
        k = gw.sdk(eid)
        ship_to(k, mojibake("Åsa"), mojibake("Malmö"))
        k.add_article(qty=1, artno=mojibake("SYLT-Å"), title=mojibake("Hjortronsylt på burk"),
                      price=100.0, vat=25, flags=klarna.const.GoodsIs.INC_VAT)
        assert await gw.call(k.update, created["rno"]) is True  # digest as received
        order = await gw.order(created["order_id"], eid=eid)
        address, [line] = order["shipping_address"], order["order_lines"]
        entry = await journal(gw, eid, "update")
        if eid == FIX:
            assert (address["given_name"], address["city"]) == ("Åsa", "Malmö")
            assert (line["reference"], line["name"]) == ("SYLT-Å", "Hjortronsylt på burk")
            assert "text repair (fix): dlv_addr.city 'MalmÃ¶' → 'Malmö', sent repaired" \
                in entry["notes"]
        else:
            assert (address["given_name"], address["city"]) == ("Ã\x85sa", "MalmÃ¶")
            assert line["name"] == "Hjortronsylt pÃ¥ burk"
            assert "text repair (report): dlv_addr.city 'MalmÃ¶' → 'Malmö', sent as " \
                   "received" in entry["notes"]
        assert address["family_name"] == "Öberg"
        assert address["organization_name"] == "SÃO PAULO AB"
        assert entry["call"]["dlv_addr"]["city"] == "MalmÃ¶"  # the journal keeps the call
        assert sum("text repair" in n for n in entry["notes"]) == 4, entry["notes"]
    counted = await repairs_metric(gw)
    for eid, mode in ((FIX, "fix"), (REPORT, "report")):
        for field in ("dlv_addr.fname", "dlv_addr.city", "goods_list.artno",
                      "goods_list.title"):
            assert counted[(str(eid), field, mode)] == 1.0
    assert len(counted) == 8


@pytest_twisted.ensureDeferred
async def test_fix_lets_the_erp_activate_by_its_mis_encoded_artno(gw: Harness) -> None:
    """The shop placed the order with the right reference "SYLT-Å"; the ERP activates and
    credits with the mis-encoded artno. `fix` names Klarna's line; `report` leaves the
    artno as received, which names no line (9108)."""
    lines = [order_line("SYLT-Å", "Sylt", 2, 10000), order_line("ART-2", "Lingon", 1, 5000)]
    fixed = await gw.create_order(eid=FIX, lines=lines)
    k = gw.sdk(FIX)
    k.add_art_no(qty=1, artno=mojibake("SYLT-Å"))
    _, invno = await gw.call(k.activate, fixed["rno"])
    [capture] = (await gw.order(fixed["order_id"], eid=FIX))["captures"]
    assert [ln["reference"] for ln in capture["order_lines"]] == ["SYLT-Å"]
    assert "text repair (fix): artnos[0].artno 'SYLT-Ã\\x85' → 'SYLT-Å', sent repaired" in (
        await journal(gw, FIX, "activate"))["notes"]
    k.add_art_no(qty=1, artno=mojibake("SYLT-Å"))
    assert await gw.call(k.credit_part, invno, "CR-1") == invno
    assert (await gw.order(fixed["order_id"], eid=FIX))["refunded_amount"] == 10000
    reported = await gw.create_order(eid=REPORT, lines=lines)
    k = gw.sdk(REPORT)
    k.add_art_no(qty=1, artno=mojibake("SYLT-Å"))
    assert (await fault_of(gw, k.activate, reported["rno"])).faultCode == 9108


@pytest_twisted.ensureDeferred
async def test_return_amount_description_and_shipping_info(gw: Harness) -> None:
    created = await gw.create_order(eid=FIX)
    k = gw.sdk(FIX)
    k.set_shipment_info(shipping_company=mojibake("PostNord Småpaket"), tracking_no="TR-1")
    _, invno = await gw.call(k.activate, created["rno"])
    assert await gw.call(k.return_amount, invno, 10.0, 25, klarna.const.GoodsIs.INC_VAT,
                         mojibake("Rabatt för försening")) == invno
    order = await gw.order(created["order_id"], eid=FIX)
    assert order["captures"][0]["shipping_info"][0]["shipping_company"] == "PostNord Småpaket"
    assert order["refunds"][0]["description"] == "Rabatt för försening"
    counted = await repairs_metric(gw)
    assert counted[(str(FIX), "shipment_info.shipping_company", "fix")] == 1.0
    assert counted[(str(FIX), "description", "fix")] == 1.0


@pytest_twisted.ensureDeferred
async def test_explain_and_the_console_show_repairs_and_count_nothing(gw: Harness) -> None:
    """A captured update with mojibake: `explain` (a dry run) and the console's digest
    check show the repairs; the console's journal shows a real call's; the dry runs send
    and count nothing."""
    created = await gw.create_order(eid=REPORT)
    sdk = make_sdk(eid=REPORT, secret=SECRETS[REPORT])
    ship_to(sdk.client, mojibake("Åsa"), mojibake("Malmö"))
    body = sdk.call(True, sdk.client.update, created["rno"])
    parts = gw.gateway.parts
    assert parts is not None
    explained = await parts.explainer.explain(body)
    text = format_plan(explained.method, explained.plan)
    assert "note: text repair (report): dlv_addr.fname 'Ã\\x85sa' → 'Åsa', sent as received" \
        in text
    assert "Ã\\x85sa" in repr(explained.plan.steps[0].body)  # sent as received
    resp = await treq.post(gw.admin + "/console/digest", headers=ADMIN,
                           data={"request": body.decode("latin-1")})
    page = (await resp.content()).decode()
    assert "The digest matches." in page and "Text repairs" in page
    assert "dlv_addr.city &#x27;MalmÃ¶&#x27; → &#x27;Malmö&#x27;" in page
    assert await repairs_metric(gw) == {}  # dry runs are not counted
    assert (await gw.order(created["order_id"], eid=REPORT)).get("shipping_address", {}).get(
        "given_name") != "Ã\x85sa"
    k = gw.sdk(REPORT)
    ship_to(k, mojibake("Åsa"), mojibake("Malmö"))
    assert await gw.call(k.update, created["rno"]) is True
    resp = await treq.get(f"{gw.admin}/console/reservation?eid={REPORT}&rno={created['rno']}",
                          headers=ADMIN)
    page = (await resp.content()).decode()
    assert "Text repairs" in page and "dlv_addr.fname &#x27;Ã\\x85sa&#x27;" in page
