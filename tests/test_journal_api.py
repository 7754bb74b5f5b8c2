"""``GET /v1/journal`` on a running gateway (real listener, store and sandbox, official SDK),
and the parsing and record helpers it shares with the CLI and the console."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import pytest_twisted
import treq

from gateway.model import EntryState
from gateway.store import models as m
from gateway.tools import journal as js
from tests.harness import ADMIN, Harness


async def get(gw: Harness, query: str, headers: dict[str, str] | None = None,
              ) -> tuple[int, Any, Any]:
    resp = await treq.get(gw.admin + "/v1/journal" + query,
                          headers=ADMIN if headers is None else headers)
    raw = await resp.content()
    ctype = resp.headers.getRawHeaders("content-type", [""])[0]
    body = json.loads(raw) if ctype.startswith("application/json") else raw.decode("utf-8")
    return resp.code, body, resp.headers


async def three_calls(gw: Harness) -> dict[str, Any]:
    """An activation with a merchant order id, a credit, and a call that faults."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    k.set_activate_info(orderid1="ERP-77")
    _, invno = await gw.call(k.activate, created["rno"])
    k.add_art_no(qty=1, artno="ART-1")
    await gw.call(k.credit_part, invno, "CREDIT-1")
    with pytest.raises(Exception, match="9109"):
        await gw.call(k.cancel_reservation, "999")
    return {**created, "invno": invno}


@pytest_twisted.ensureDeferred
async def test_search_filters_records_and_paging(gw: Harness) -> None:
    """Each filter narrows; records carry the call, REST steps (key, state, result), notes,
    reply or fault, delivered_at and ISO-8601 UTC times; a cursor pages without overlap;
    GET /v1/journal/{eid} is unchanged."""
    made = await three_calls(gw)
    code, page, _ = await get(gw, "?eid=1234")
    assert code == 200 and [e["method"] for e in page["entries"]] == [
        "cancel_reservation", "credit_part", "activate"]
    assert page["next_cursor"] is None
    activate = page["entries"][2]
    assert activate["outcome"] == "ok" and activate["reply"] == ["ok", made["invno"]]
    assert activate["call"]["orderid1"] == "ERP-77" and activate["order_id"] == made["order_id"]
    [step] = activate["rest_steps"]
    assert step["method"] == "POST" and step["path"].endswith("/captures")
    assert step["state"] == "done" and len(step["idempotency_key"]) == 36
    assert step["result"]["capture_id"] and step["body"]["captured_amount"] == 10000
    assert activate["created_at"].endswith("Z") and "T" in activate["created_at"]
    assert "delivered_at" in activate
    fault = page["entries"][0]
    assert (fault["outcome"], fault["fault_code"]) == ("9109", 9109) and fault["reply"] is None
    for query, methods in (("?merchant_order_id=ERP-77", ["activate"]),
                           (f"?invno={made['invno']}", ["credit_part", "activate"]),
                           (f"?order_id={made['order_id']}", ["credit_part", "activate"]),
                           (f"?rno={made['rno']}", ["credit_part", "activate"]),
                           ("?outcome=9109", ["cancel_reservation"]),
                           ("?outcome=ok&method=credit_part", ["credit_part"]),
                           ("?outcome=pending", []), ("?eid=5678", []),
                           ("?since=2000-01-01T00:00:00Z&until=2000-01-02", [])):
        code, found, _ = await get(gw, query)
        assert code == 200 and [e["method"] for e in found["entries"]] == methods, query
    code, first, _ = await get(gw, "?eid=1234&limit=2")
    assert len(first["entries"]) == 2 and first["next_cursor"]
    code, second, _ = await get(gw, f"?eid=1234&limit=2&cursor={first['next_cursor']}")
    assert [e["method"] for e in second["entries"]] == ["activate"]
    assert second["next_cursor"] is None
    code, old, _ = await get(gw, "/1234")
    assert code == 200 and len(old["calls"]) == 3 and old["eid"] == 1234


@pytest_twisted.ensureDeferred
async def test_bad_parameters_and_token(gw: Harness) -> None:
    """Malformed filters are a 400 naming the parameter; no or a wrong token is a 401."""
    for query, name in (("?eid=x", "eid"), ("?outcome=maybe", "outcome"),
                        ("?since=yesterday", "since"), ("?limit=0", "limit"),
                        ("?limit=501", "limit"), ("?cursor=bm9wZQ", "cursor"),
                        ("?format=xml", "format"), ("?orderid=1", "orderid"),
                        ("?eid=1&eid=2", "eid")):
        code, body, _ = await get(gw, query)
        assert code == 400 and body["error"].startswith(name), (query, body)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        code, _, _ = await get(gw, "?eid=1234", headers=headers)
        assert code == 401


def insert_entries(gw: Harness, n: int, eid: int = 1234) -> None:
    """``n`` finished journal rows in one transaction (an export bigger than a store page)."""
    rows = [{"eid": eid, "method": "email_invoice", "fingerprint": f"bulk-{i}",
             "call_json": json.dumps({"method": "email_invoice", "invno": str(i),
                                      "orderid1": "=cmd|' /C calc'!A0"}),
             "invno": str(i), "phase": "delivered", "phase_at": 1_700_000_000.0 + i,
             "reply_json": json.dumps(str(i)), "attempts": 1,
             "created_at": 1_700_000_000.0 + i, "updated_at": 1_700_000_000.0 + i}
            for i in range(n)]

    def insert(conn: Any) -> None:
        conn.execute(m.journal.insert(), rows)
    gw.gateway.parts.db.run_sync("bulk", insert)


@pytest_twisted.ensureDeferred
async def test_exports_stream_every_match(gw: Harness) -> None:
    """format=jsonl and format=csv return every matching entry (more than a store page),
    newest first, as attachments; CSV cells a spreadsheet would run are defused."""
    insert_entries(gw, js.MAX_LIMIT + 23)
    code, text, headers = await get(gw, "?eid=1234&format=jsonl&limit=1")
    assert code == 200
    assert headers.getRawHeaders("content-type")[0].startswith("application/x-ndjson")
    assert "attachment" in headers.getRawHeaders("content-disposition")[0]
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == js.MAX_LIMIT + 23
    assert [r["id"] for r in records] == sorted((r["id"] for r in records), reverse=True)
    assert records[-1]["created_at"] == "2023-11-14T22:13:20.000Z"
    code, text, headers = await get(gw, "?eid=1234&format=csv&since=2023-11-14T22:13:30Z")
    assert headers.getRawHeaders("content-type")[0].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == js.MAX_LIMIT + 23 - 10
    assert list(table[0]) == list(js.CSV_COLUMNS)
    assert table[0]["outcome"] == "ok" and table[0]["orderid1"].startswith("'=")
    code, text, _ = await get(gw, "?eid=5678&format=csv")
    assert text.splitlines() == [",".join(js.CSV_COLUMNS)]


# -- the shared helpers (pure) -----------------------------------------------------------


def test_parse_query_maps_outcomes_times_and_scope() -> None:
    q = js.parse_query({"outcome": "ok"}).query
    assert (q.state, q.fault_code) == (EntryState.DONE, None)
    q = js.parse_query({"outcome": "-32602"}).query
    assert (q.state, q.fault_code) == (EntryState.FAILED, -32602)
    q = js.parse_query({"outcome": "fault"}).query
    assert (q.state, q.fault_code) == (EntryState.FAILED, None)
    q = js.parse_query({"since": "2026-11-01", "until": "2026-11-01T01:00:00+01:00"}).query
    assert q.since == q.until == 1793491200.0
    assert js.parse_query({}, eid=1234).query.eid == 1234
    with pytest.raises(js.FilterError, match="eid 1234"):
        js.parse_query({"eid": "5678"}, eid=1234)
    assert js.parse_query({"limit": "500"}).query.limit == 500
    req = js.parse_query({"format": "csv", "eid": "1234"})
    assert req.format == "csv" and req.query.eid == 1234
    for bad in ({"rno": "x" * 256}, {"method": "a\nb"}, {"eid": "0"}, {"limit": "-1"}):
        with pytest.raises(js.FilterError):
            js.parse_query(bad)


def test_cursor_is_opaque_and_checked() -> None:
    cursor = js.encode_cursor(12345)
    assert "12345" not in cursor and js.decode_cursor(cursor) == 12345
    for bad in ("", "!!!", js.encode_cursor(1)[:-2] + "zz", "am91cm5hbC1iZWZvcmU6LTE"):
        with pytest.raises(js.FilterError):
            js.decode_cursor(bad)


def test_iso_times_are_utc_with_z() -> None:
    assert js.iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert js.iso(1793491200.25) == "2026-11-01T00:00:00.250Z"
    assert js.iso(None) is None
    assert js.parse_time("2026-11-01T00:00:00.250Z", "since") == 1793491200.25
