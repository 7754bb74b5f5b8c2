"""The console end to end in a real headless browser (Playwright driving Debian's Chromium),
with JavaScript switched off in the page: sign in through the form, find a reservation the
official Python SDK made, open it, read its journal and REST steps, paste a captured
request into the digest self-test and read the verdict. Screenshots are taken and checked.

Skipped with the reason when Playwright or Chromium is missing on a developer machine; in CI
(``CI=true``, where ``.ci/run`` installs both) a missing browser fails instead. With
``KGW_CONSOLE_SCREENSHOTS=DIR`` the screenshots are also written to DIR
(``scripts/console_screenshots.py`` regenerates ``docs/screenshots/`` that way).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import threads

from gateway.testing.processes import http
from tests.harness import REST_AUTH, Harness
from tests.legacy.legacy_sdk_capture import make_sdk

#: A real Chromium per test (slow: not in the default run; CI runs them).
pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("KGW_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run"]
SHOTS_ENV = "KGW_CONSOLE_SCREENSHOTS"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(autouse=True)
def _browser_available() -> None:
    missing = _missing()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {missing}")
    pytest.skip(missing)


def drive(admin: str, merchant_ref: str, rno: str, request_text: str, out: Path,
          capture_elsewhere: Any) -> dict[str, str]:
    """The person at the browser (blocking: runs in a thread while the reactor serves)."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(java_script_enabled=False,
                                          viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.set_default_timeout(20_000)

            def shot(name: str) -> None:
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                seen[name] = page.inner_text("main")
                seen[name + ".url"] = page.url

            page.goto(admin + "/console/")
            assert page.url.endswith("/console/signin"), page.url
            shot("signin")
            page.fill("#token", "sandbox-admin")
            page.click("form[action='/console/signin'] button")
            page.wait_for_url("**/console/")
            page.fill("#q", merchant_ref)
            page.click("form[action='/console/'] button")
            page.wait_for_url("**/console/?q=*")
            shot("search")
            page.click(f"main table a:text-is('{rno}')")
            page.wait_for_url("**/console/reservation?*")
            shot("reservation")
            seen["reservation.html"] = page.content()
            page.click("header a:text-is('Digest self-test')")
            page.fill("#request", request_text)
            page.click("form[action='/console/digest'] button")
            page.wait_for_selector("text=What the call would do")
            shot("digest")
            page.goto(admin + "/console/expiring?days=30")
            shot("expiring")
            capture_elsewhere()  # e.g. in Klarna's portal: the console must show it
            page.click("header a:text-is('Discrepancies')")
            shot("discrepancies")
            page.click("header form button")  # sign out
            page.wait_for_url("**/console/signin")
            page.goto(admin + "/console/pending")
            seen["after_signout.url"] = page.url
        finally:
            browser.close()
    return seen


@pytest_twisted.ensureDeferred
async def test_console_in_a_real_browser(gw: Harness, tmp_path: Path) -> None:
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    k.set_activate_info(orderid1="ERP-2024-0042")
    _, invno = await gw.call(k.activate, created["rno"])
    k.add_art_no(qty=1, artno="ART-1")
    await gw.call(k.credit_part, invno, "CREDIT-7")
    capture = make_sdk(eid=1234, secret="sandbox-secret")
    request = capture.call("ok", capture.client.cancel_reservation, created["rno"])

    def capture_elsewhere() -> None:
        status, _, _ = http("POST", f"{gw.sandbox}/ordermanagement/v1/orders/"
                            f"{created['order_id']}/captures", {"captured_amount": 5000},
                            auth=REST_AUTH[1234])
        assert status == 201

    seen = await threads.deferToThread(drive, gw.admin, "ERP-2024-0042", created["rno"],
                                       request.decode("latin-1"), tmp_path, capture_elsewhere)

    assert "Admin token" in seen["signin"]
    assert created["rno"] in seen["search"] and created["order_id"] in seen["search"]
    reservation = seen["reservation"]
    for expected in (invno, "CREDIT-7", "At Klarna", "Journal", "REST steps", "activate",
                     "credit_part", "/captures", "/refunds", "ERP-2024-0042", "done"):
        assert expected in reservation, expected
    order = await gw.order(created["order_id"])
    assert order["captures"][0]["capture_id"] in reservation
    assert "idempotency key" in reservation
    digest = seen["digest"]
    assert "The digest matches." in digest and "Python SDK (Klarna_API 3.1.0)" in digest
    assert "release-remaining-authorization" in digest
    assert created["order_id"] in seen["expiring"]
    assert "capture without invoice" in seen["discrepancies"]
    assert len(await gw.gateway.store.invoices_for(
        (await gw.gateway.store.get_reservation(1234, created["rno"])).id)) == 1
    assert seen["after_signout.url"].endswith("/console/signin")
    for name in ("signin", "search", "reservation", "digest", "expiring", "discrepancies"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 15_000, name
    target = os.environ.get(SHOTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in ("signin", "search", "reservation", "digest", "expiring",
                     "discrepancies"):
            shutil.copyfile(tmp_path / f"{name}.png", Path(target) / f"console-{name}.png")


def drive_scope(admin: str, token: str, other_rno: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(java_script_enabled=False).new_page()
            page.goto(admin + "/console/signin")
            page.fill("#token", "wrong-token-for-sure")
            page.click("form[action='/console/signin'] button")
            wrong = page.inner_text("main")
            page.fill("#token", token)
            page.click("form[action='/console/signin'] button")
            page.wait_for_url("**/console/")
            header = page.inner_text("header")
            response = page.goto(admin + f"/console/reservation?eid=5678&rno={other_rno}")
            assert response is not None
            cookies = page.context.cookies()
            return {"wrong": wrong, "header": header, "other_status": response.status,
                    "cookies": cookies}
        finally:
            browser.close()


@pytest_twisted.ensureDeferred
async def test_browser_session_cookie_and_merchant_scope(gwc: Harness) -> None:
    """A wrong token is told so; a merchant's session cookie is HttpOnly and Strict, and
    another merchant's reservation is not found for it."""
    from tests.console.conftest import CONSOLE_TOKENS

    other = await gwc.create_order(eid=5678)
    seen = await threads.deferToThread(drive_scope, gwc.admin, CONSOLE_TOKENS[1234],
                                       other["rno"])
    assert "wrong token" in seen["wrong"]
    assert "signed in as merchant 1234" in seen["header"]
    assert seen["other_status"] == 404
    [cookie] = seen["cookies"]
    assert cookie["name"] == "kgw_console" and cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/console/"
