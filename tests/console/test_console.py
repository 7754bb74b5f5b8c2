"""The console over real HTTP (treq) on a running gateway + sandbox: every page, sign-in and
sessions, admin vs merchant tokens, escaping, Klarna being unreachable, and that nothing
the console does writes to the store."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq

from gateway.console import resource as console_resource
from tests.console.conftest import CONSOLE_TOKENS
from gateway.tools.expiring import format_amount
from tests.harness import ADMIN, REST_AUTH, Harness
from tests.legacy.legacy_sdk_capture import make_sdk
from tests.store.test_search import make_call

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures" / "php-2.4.0"
XSS = '<script>alert("x")</script>'
PAGES = ("/console/", "/console/journal", "/console/pending", "/console/discrepancies",
         "/console/expiring", "/console/digest")


def merchant(eid: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {CONSOLE_TOKENS[eid]}"}


async def fetch(gw: Harness, path: str, headers: dict[str, str] | None = None, *,
                method: str = "GET", data: Any = None, cookies: Any = None,
                ) -> tuple[int, str, Any]:
    resp = await treq.request(method, gw.admin + path,
                              headers=ADMIN if headers is None else headers, data=data,
                              cookies=cookies, allow_redirects=False)
    return resp.code, (await resp.content()).decode("utf-8"), resp.headers


async def activated(gw: Harness, orderid1: str = "ERP-77", eid: int = 1234) -> dict[str, Any]:
    """An order activated in part through the official SDK, then credited."""
    created = await gw.create_order(eid=eid)
    k = gw.sdk(eid=eid)
    k.add_art_no(qty=1, artno="ART-1")
    k.set_activate_info(orderid1=orderid1)
    _, invno = await gw.call(k.activate, created["rno"])
    k.add_art_no(qty=1, artno="ART-1")
    await gw.call(k.credit_part, invno, "CREDIT-1")
    return {**created, "invno": invno, "eid": eid}


def text_of(page: str) -> str:
    """The page's text, tags dropped (to assert on what a reader sees)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


@pytest_twisted.ensureDeferred
async def test_sign_in_sets_a_strict_session_cookie(gwc: Harness) -> None:
    """No credentials: redirected to the form. The form's POST needs this origin and a
    valid token; success sets an HttpOnly SameSite=Strict cookie that opens the console;
    sign-out ends the session."""
    code, _, headers = await fetch(gwc, "/console/", headers={})
    assert code == 303 and headers.getRawHeaders("location") == ["/console/signin"]
    code, _, headers = await fetch(gwc, "/console", headers={})
    assert code == 303 and headers.getRawHeaders("location") == ["/console/"]
    code, form, headers = await fetch(gwc, "/console/signin", headers={})
    assert code == 200 and 'name="token"' in form and "<script" not in form
    assert "script-src" not in headers.getRawHeaders("content-security-policy")[0]
    assert "default-src 'none'" in headers.getRawHeaders("content-security-policy")[0]
    token = {"token": "sandbox-admin"}
    for origin in ({}, {"Origin": "http://evil.example"}, {"Referer": "http://evil.example/"}):
        code, _, headers = await fetch(gwc, "/console/signin", origin, method="POST", data=token)
        assert code == 403 and headers.getRawHeaders("set-cookie") is None
    same = {"Origin": gwc.admin}
    code, page, headers = await fetch(gwc, "/console/signin", same, method="POST",
                                      data={"token": "nope"})
    assert code == 401 and "wrong token" in page and headers.getRawHeaders("set-cookie") is None
    code, _, headers = await fetch(gwc, "/console/signin", {"Referer": gwc.admin + "/console/"},
                                   method="POST", data=token)
    assert code == 303 and headers.getRawHeaders("location") == ["/console/"]
    [cookie] = headers.getRawHeaders("set-cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    sid = cookie.split(";")[0].split("=", 1)[1]
    assert len(sid) >= 43
    code, page, _ = await fetch(gwc, "/console/", {}, cookies={"kgw_console": sid})
    assert code == 200 and "signed in as admin" in page
    code, _, _ = await fetch(gwc, "/console/", {}, cookies={"kgw_console": sid + "x"})
    assert code == 303
    code, _, headers = await fetch(gwc, "/console/signout", {"Origin": "http://evil.example"},
                                   method="POST", cookies={"kgw_console": sid})
    assert code == 403
    code, _, headers = await fetch(gwc, "/console/signout", same, method="POST",
                                   cookies={"kgw_console": sid})
    assert code == 303 and "Max-Age=0" in headers.getRawHeaders("set-cookie")[0]
    code, _, _ = await fetch(gwc, "/console/", {}, cookies={"kgw_console": sid})
    assert code == 303
    code, page, _ = await fetch(gwc, "/console/signin", same, method="POST",
                                data={"token": CONSOLE_TOKENS[5678]})
    assert code == 303


@pytest_twisted.ensureDeferred
async def test_every_page_with_admin_and_wrong_tokens(gwc: Harness) -> None:
    """The admin token opens every page; a wrong bearer token opens none; a merchant
    console token is no admin API token."""
    await activated(gwc)
    for path in PAGES:
        code, page, headers = await fetch(gwc, path)
        assert code == 200, path
        assert headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
        assert headers.getRawHeaders("cache-control") == ["no-store"]
        assert "signed in as admin" in page and "<script" not in page
        code, page, _ = await fetch(gwc, path, {"Authorization": "Bearer wrong"})
        assert code == 401 and "wrong bearer token" in page
    code, _, _ = await fetch(gwc, "/console/nothing")
    assert code == 404
    code, _, _ = await fetch(gwc, "/console/pending", method="POST")
    assert code == 405
    resp = await treq.get(gwc.admin + "/v1/journal?eid=1234", headers=merchant(1234))
    assert resp.code == 401
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_search_and_reservation_page(gwc: Harness) -> None:
    """Found by rno, invno, Klarna order id or merchant order id; the reservation page shows
    the store's invoice and credit, Klarna's capture and refund, and the journal with each
    call's REST requests, keys and replies."""
    made = await activated(gwc)
    for q in (made["rno"], made["invno"], made["order_id"], "ERP-77"):
        code, page, _ = await fetch(gwc, f"/console/?q={q}")
        assert code == 200
        assert f'/console/reservation?eid=1234&amp;rno={made["rno"]}' in page, q
    code, page, _ = await fetch(gwc, "/console/?q=no-such-thing")
    assert "no reservation matches" in page
    code, page, _ = await fetch(gwc, f"/console/reservation?eid=1234&rno={made['rno']}")
    assert code == 200
    seen = text_of(page)
    order = await gwc.order(made["order_id"])
    [capture], [refund] = order["captures"], order["refunds"]
    for expected in (made["invno"], capture["capture_id"], refund["refund_id"], "CREDIT-1",
                     "At Klarna", "PART_CAPTURED", order["expires_at"], "activate",
                     "credit_part", "REST steps", "/captures", "/refunds",
                     "delivered:", "ERP-77"):
        assert expected in seen, expected
    assert re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", seen)
    assert f'reply ["ok", "{made["invno"]}"]' in seen.replace("&quot;", '"')
    code, _, _ = await fetch(gwc, "/console/reservation?eid=1234&rno=404404")
    assert code == 404
    code, page, _ = await fetch(gwc, f"/console/journal?invno={made['invno']}")
    assert code == 200 and text_of(page).count("REST steps") == 2
    code, page, _ = await fetch(gwc, "/console/journal?outcome=nonsense")
    assert code == 400 and "outcome" in page


@pytest_twisted.ensureDeferred
async def test_a_merchant_token_sees_only_its_eid(gwc: Harness) -> None:
    mine = await activated(gwc, "MINE-1", eid=1234)
    theirs = await activated(gwc, "THEIRS-1", eid=5678)
    me = merchant(1234)
    code, page, _ = await fetch(gwc, "/console/", me)
    assert code == 200 and "signed in as merchant 1234" in page
    assert mine["order_id"] in page and theirs["order_id"] not in page
    code, page, _ = await fetch(gwc, f"/console/?q={theirs['order_id']}", me)
    assert "no reservation matches" in page
    code, page, _ = await fetch(gwc, "/console/?q=THEIRS-1", me)
    assert "no reservation matches" in page
    code, _, _ = await fetch(gwc, f"/console/reservation?eid=5678&rno={theirs['rno']}", me)
    assert code == 404
    code, page, _ = await fetch(gwc, f"/console/reservation?eid=1234&rno={mine['rno']}", me)
    assert code == 200 and mine["invno"] in page
    code, page, _ = await fetch(gwc, "/console/journal?eid=5678", me)
    assert code == 400 and "may only see eid 1234" in page
    code, page, _ = await fetch(gwc, "/console/journal", me)
    assert mine["order_id"] in page and theirs["order_id"] not in page
    for path in ("/console/discrepancies", "/console/expiring?days=60", "/console/pending"):
        code, page, _ = await fetch(gwc, path, me)
        assert code == 200 and theirs["order_id"] not in page, path
    code, page, _ = await fetch(gwc, "/console/expiring?days=60", me)
    assert mine["order_id"] in page
    code, page, _ = await fetch(gwc, "/console/", merchant(5678))
    assert theirs["order_id"] in page and mine["order_id"] not in page


@pytest_twisted.ensureDeferred
async def test_everything_is_escaped(gwc: Harness) -> None:
    """A merchant reference carrying markup (through the official SDK into the journal and
    to Klarna) and a query carrying markup come back as text on every page."""
    made = await activated(gwc, orderid1=XSS)
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    for path in ("/console/?q=%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E",
                 f"/console/reservation?eid=1234&rno={made['rno']}",
                 "/console/journal?merchant_order_id=%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E"):
        code, page, _ = await fetch(gwc, path)
        assert code == 200, path
        assert "<script" not in page, path
        assert escaped in page, path
    code, page, _ = await fetch(gwc, "/console/?q=%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E")
    assert f'/console/reservation?eid=1234&amp;rno={made["rno"]}' in page  # and it is found
    code, page, _ = await fetch(gwc, '/console/journal?rno="><img src=x onerror=alert(1)>')
    assert "<img" not in page and "&quot;&gt;&lt;img" in page


@pytest_twisted.ensureDeferred
async def test_klarna_unreachable_shows_an_error_box(gwc: Harness,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's side still renders; Klarna's side is an error box, not a crash."""
    made = await activated(gwc)
    monkeypatch.setattr(console_resource, "READ_SECONDS", 0.6)
    await gwc.fault(method="GET", path="/ordermanagement/v1/orders/", action="reset",
                    times=None)
    code, page, _ = await fetch(gwc, f"/console/reservation?eid=1234&rno={made['rno']}")
    assert code == 200 and 'class="box error"' in page
    assert "Klarna could not be read" in page and "Klarna did not answer" in page
    assert made["invno"] in page and "credit_part" in page
    code, page, _ = await fetch(gwc, "/console/expiring?days=60")
    assert code == 200 and "Klarna could not be read for" in page
    code, page, _ = await fetch(gwc, "/console/discrepancies")
    assert code == 200 and "order unreadable" in page
    await gwc.clear_faults()
    await gwc.fault(method="GET", path="/ordermanagement/v1/orders/", action="fail",
                    status=404, times=None)
    code, page, _ = await fetch(gwc, f"/console/reservation?eid=1234&rno={made['rno']}")
    assert "Klarna answered HTTP 404" in page


@pytest_twisted.ensureDeferred
async def test_discrepancies_and_pending_change_nothing(gwc: Harness) -> None:
    """A capture made outside the gateway shows up as a discrepancy and stays un-adopted
    (reconcile would adopt it; the console must not); a pending call is listed as
    unresolved while nobody holds its lease, as running while someone does."""
    made = await activated(gwc)
    store = gwc.gateway.store
    res = await store.get_reservation(1234, made["rno"])
    code, page, _ = await fetch(gwc, "/console/discrepancies")
    assert "Store and Klarna agree" in page
    resp = await treq.post(f"{gwc.sandbox}/ordermanagement/v1/orders/{made['order_id']}"
                           "/captures", json={"captured_amount": 5000}, auth=REST_AUTH[1234])
    assert resp.code == 201
    await resp.content()
    code, page, _ = await fetch(gwc, "/console/discrepancies")
    seen = text_of(page)
    assert "capture without invoice" in seen and "captured total 10000 15000" in seen
    assert len(await store.invoices_for(res.id)) == 1  # nothing adopted
    assert (await store.get_reservation(1234, made["rno"])).status == res.status
    assert gwc.gateway.recovery_loop is not None
    gwc.gateway.recovery_loop.stop()  # keep the pending entries pending while we look
    running = await make_call(store, eid=1234, method="cancel_reservation",
                              call={"rno": made["rno"]}, rno=made["rno"])
    stale = await make_call(store, eid=1234, method="extend_expiry_date",
                            call={"rno": made["rno"]}, rno=made["rno"])
    gwc.gateway.parts.db.run_sync("lapse", lambda c: c.exec_driver_sql(
        f"UPDATE journal SET until = 0 WHERE id = {stale}"))  # its runner died
    code, page, _ = await fetch(gwc, "/console/pending")
    unresolved, running_part = page.split("<h2>Running")
    assert f'id="call-{stale}"' in unresolved and f'id="call-{running}"' in running_part
    code, page, _ = await fetch(gwc, "/console/discrepancies")
    assert f"unfinished extend_expiry_date (journal {stale})" in text_of(page)


@pytest_twisted.ensureDeferred
async def test_expiring_authorizations(gwc: Harness) -> None:
    """From each order's expires_at at Klarna (28 days for a new sandbox order)."""
    made = await activated(gwc)
    code, page, _ = await fetch(gwc, "/console/expiring")
    assert code == 200 and 'value="3"' in page and "nothing expires within 3 day(s)" in page
    code, page, _ = await fetch(gwc, "/console/expiring?days=30")
    assert made["order_id"] in page and "PART_CAPTURED" in page
    order = await gwc.order(made["order_id"])
    assert order["expires_at"] in page and format_amount(
        order["remaining_authorized_amount"], order["purchase_currency"]) in page
    for bad in ("0", "366", "x"):
        code, _, _ = await fetch(gwc, f"/console/expiring?days={bad}")
        assert code == 400


@pytest_twisted.ensureDeferred
async def test_digest_self_test(gwc: Harness) -> None:
    """A request the official Python SDK made: the digest matches, in the SDK's dialect,
    with its hash, and the plan is shown (a dry run: nothing is sent or written). A wrong
    digest shows what each SDK would hash; a PHP 2.4.0 capture matches too."""
    made = await activated(gwc)
    sdk = make_sdk(eid=1234, secret="sandbox-secret")
    body = sdk.call("ok", sdk.client.cancel_reservation, made["rno"])
    before = await gwc.operations(made["order_id"])
    code, page, _ = await fetch(gwc, "/console/digest", method="POST",
                                data={"request": body.decode("latin-1")})
    seen = text_of(page)
    assert code == 200 and "The digest matches." in seen
    assert "Python SDK (Klarna_API 3.1.0)" in seen and "cancel_reservation" in seen
    assert "release-remaining-authorization" in seen and "nothing was written" in seen
    assert "v2 and REST differ (every cancel_reservation)" in seen  # as explain prints
    assert await gwc.operations(made["order_id"]) == before
    tampered = re.sub(rb"<string>[A-Za-z0-9+/=]{20,}</string>", b"<string>" + b"A" * 88
                      + b"</string>", body)
    code, page, _ = await fetch(gwc, "/console/digest", method="POST",
                                data={"request": tampered.decode("latin-1")})
    seen = text_of(page)
    assert "does not match" in seen and "sha512" in seen
    assert f"4:1:python:api:3.1.0:1234:{made['rno']}" not in seen  # not this call's parts
    assert "&lt;secret&gt;" in page and "sandbox-secret" not in page
    capture = (CAPTURES / "04-cancel_reservation.xml").read_bytes().decode("latin-1")
    code, page, _ = await fetch(gwc, "/console/digest", method="POST",
                                data={"request": capture})
    assert "The digest matches." in page and "PHP SDK 2.x" in page
    code, page, _ = await fetch(gwc, "/console/digest", method="POST",
                                data={"request": "<methodCall><nope"})
    assert "Not checked" in page and "fault -32700" in page
    code, page, _ = await fetch(gwc, "/console/digest", merchant(5678), method="POST",
                                data={"request": body.decode("latin-1")})
    assert "you may check eid 5678" in page and "The digest matches" not in page
    code, page, _ = await fetch(gwc, "/console/digest", merchant(1234), method="POST",
                                data={"request": body.decode("latin-1")})
    assert "The digest matches." in page
    signin = await fetch(gwc, "/console/signin", {"Origin": gwc.admin}, method="POST",
                         data={"token": "sandbox-admin"})
    sid = signin[2].getRawHeaders("set-cookie")[0].split(";")[0].split("=", 1)[1]
    code, _, _ = await fetch(gwc, "/console/digest", {"Origin": "http://evil.example"},
                             method="POST", data={"request": capture},
                             cookies={"kgw_console": sid})
    assert code == 403


@pytest_twisted.ensureDeferred
async def test_journal_search_refuses_an_eid_not_configured(gwc: Harness) -> None:
    """The same check, in the same words, as GET /v1/journal and `klarna-gateway journal`
    (gateway.tools.inputs.merchant)."""
    code, page, _ = await fetch(gwc, "/console/journal?eid=4321")
    assert code == 400 and "eid 4321 is not configured" in page
    resp = await treq.get(gwc.admin + "/v1/journal?eid=4321", headers=ADMIN)
    assert resp.code == 404 and "eid 4321 is not configured" in (await resp.json())["error"]
