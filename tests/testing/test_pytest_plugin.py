"""The pytest plugin as another project meets it: a foreign test suite, written here and
run in a child pytest (``runpytest_subprocess``) that finds the plugin through its
``pytest11`` entry point, drives the gateway with the official SDK.

It runs twice, once as a plain synchronous suite (``-p no:twisted``) and once under
pytest-twisted (with an ``async def`` test too); both must pass, leave no thread, port or
file descriptor behind, and, with the same seed, produce the same ids.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.pytest_plugin import SEED_INI, sandbox_seed

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "pytest-plugin.md"

#: The foreign suite's conftest: leak checks after every test and at the end.
CONFTEST = '''
import os, socket, sys, threading
import pytest

SESSION_URLS = []
#: Descriptors open after the first test's teardown (the first use opens a few for good:
#: Twisted's global reactor, /dev/null); no later test may leave more.
BASELINE = []
OURS = ("klarna-gateway", "gateway-db")


def closed(url):
    host, port = url.split("//")[1].rstrip("/").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def urls_of(value):
    sandbox = getattr(value, "sandbox", value)
    return [u for u in (getattr(value, "url", None), getattr(value, "admin_url", None),
                        sandbox.url) if u]


def our_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith(OURS)]


@pytest.fixture(autouse=True)
def nothing_leaks(request):
    yield
    values = request.node.funcargs
    for name in ("klarna_gateway_session", "klarna_sandbox_session"):
        if name in values:
            SESSION_URLS.extend(urls_of(values[name]))
    if any(n in values for n in ("klarna_gateway", "klarna_sandbox")):
        urls = [u for n in ("klarna_gateway", "klarna_sandbox") if n in values
                for u in urls_of(values[n])]
        assert urls and all(closed(u) for u in urls), urls
        if not SESSION_URLS:
            assert our_threads() == []
            fds = len(os.listdir("/proc/self/fd"))
            BASELINE[:] = BASELINE or [fds]
            assert fds <= BASELINE[0], (fds, BASELINE)


def pytest_sessionfinish(session):
    leaks = our_threads() + [u for u in SESSION_URLS if not closed(u)]
    if not session.config.pluginmanager.has_plugin("twisted"):
        leaks += [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print("LEAKS " + repr(leaks))
'''

#: Another project's tests, written as its README would suggest.
FOREIGN = '''
import json
import pytest


def transcript(name, **values):
    print("TRANSCRIPT " + json.dumps({"test": name, **values}, sort_keys=True))


def test_activate_and_credit_with_the_official_sdk(klarna_gateway):
    made = klarna_gateway.create_order()
    k = klarna_gateway.sdk(1234)
    k.add_art_no(qty=1, artno="ART-1")
    risk, invno = k.activate(made.rno)
    k.add_art_no(qty=1, artno="ART-1")
    k.credit_part(invno, "CREDIT-1")
    order = klarna_gateway.sandbox.order(made.order_id)
    assert (order["captured_amount"], order["refunded_amount"]) == (10000, 10000)
    applied = [op["path"].rsplit("/", 1)[-1]
               for op in klarna_gateway.sandbox.operations(made.order_id)]
    assert applied.count("captures") == 1 and applied.count("refunds") == 1
    assert klarna_gateway.reservation(1234, made.rno)["invoices"][0]["invno"] == invno
    transcript("sdk", order_id=made.order_id, rno=made.rno, invno=invno,
               captures=[c["capture_id"] for c in order["captures"]],
               refunds=[r["refund_id"] for r in order["refunds"]],
               expires_at=order["expires_at"])


def test_faults_and_the_clock(klarna_sandbox):
    order_id = klarna_sandbox.create_order(eid=5678)
    assert klarna_sandbox.clock() == {"now": "2026-01-01T12:00:00Z", "frozen": True}
    klarna_sandbox.fault(method="GET", path="/orders/", action="fail", status=503)
    with pytest.raises(AssertionError, match="HTTP 503"):
        klarna_sandbox.order(order_id, eid=5678)
    klarna_sandbox.clear_faults()
    klarna_sandbox.advance_clock(29 * 86400)
    assert klarna_sandbox.order(order_id, eid=5678)["status"] == "EXPIRED"
    transcript("sandbox", order_id=order_id)


def test_the_gateway_uses_this_tests_sandbox(klarna_gateway, klarna_sandbox):
    assert klarna_gateway.sandbox is klarna_sandbox
    assert klarna_gateway.merchant(5678).shared_secret == "sandbox-secret-2"


def test_session_fixtures(klarna_gateway_session, klarna_sandbox_session):
    assert klarna_gateway_session.sandbox is klarna_sandbox_session
    made = klarna_gateway_session.create_order(eid=5678)
    assert klarna_gateway_session.sdk(5678).cancel_reservation(made.rno) is True
    order = klarna_sandbox_session.order(made.order_id, eid=5678)
    assert order["status"] == "CANCELLED"
    transcript("session", order_id=made.order_id, rno=made.rno)
'''

#: Only for the pytest-twisted run: an ``async def`` test.
FOREIGN_ASYNC = '''
import pytest_twisted
from twisted.internet import threads


@pytest_twisted.ensureDeferred
async def test_in_an_async_test(klarna_gateway):
    made = klarna_gateway.create_order()
    k = klarna_gateway.sdk()
    k.add_art_no(qty=1, artno="ART-2")
    risk, invno = k.activate(made.rno)  # blocking, straight from the test: fine
    amount = await threads.deferToThread(k.invoice_amount, invno)  # or off the reactor
    assert risk == "ok" and amount == 50.0
'''


def documented_example() -> str:
    """The copy-paste example of docs/pytest-plugin.md (it must keep working)."""
    text = DOC.read_text(encoding="utf-8")
    return next(block for block in re.findall(r"```python\n(.*?)```", text, re.S)
                if "def test_" in block)


def run_foreign(pytester: pytest.Pytester, *args: str, twisted: bool) -> Any:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_shop=FOREIGN)
    if twisted:
        pytester.makepyfile(test_shop_async=FOREIGN_ASYNC, test_documented=documented_example())
    plain = () if twisted else ("-p", "no:twisted")
    return pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *plain, *args,
                                         timeout=300)


def transcripts(result: Any) -> dict[str, dict[str, Any]]:
    found = {}
    for line in result.outlines:
        m = re.search(r"TRANSCRIPT (\{.*\})", line)
        if m:
            record = json.loads(m.group(1))
            found[record.pop("test")] = record
    return found


def leaks(result: Any) -> list[str]:
    lines = [line for line in result.outlines if "LEAKS " in line]
    assert len(lines) == 1, result.outlines
    return list(eval(lines[0].split("LEAKS ", 1)[1]))  # noqa: S307 - our own repr()


@pytest.mark.slow
def test_a_foreign_suite_passes_in_both_modes_with_the_same_ids(
        pytester: pytest.Pytester) -> None:
    """Seed 7 from the command line in a plain run, from the ini file under pytest-twisted:
    the same ids (unseeded, every order id would differ)."""
    plain = run_foreign(pytester, "--klarna-sandbox-seed", "7", twisted=False)
    plain.assert_outcomes(passed=4)
    assert any("sandbox seed 7" in line for line in plain.outlines)
    assert leaks(plain) == []
    pytester.makeini(f"[pytest]\n{SEED_INI} = 7\n")
    twisted = run_foreign(pytester, twisted=True)
    twisted.assert_outcomes(passed=4 + 1 + 3)  # the async test, the documented example
    assert any("sandbox seed 7" in line for line in twisted.outlines)
    assert leaks(twisted) == []

    first, second = transcripts(plain), transcripts(twisted)
    assert set(first) == {"sdk", "sandbox", "session"}
    assert first == second, "same seed, same ids (sync and pytest-twisted runs alike)"
    sdk = first["sdk"]
    assert (sdk["rno"], sdk["invno"]) == ("8000000000", "9000000000")
    assert sdk["expires_at"] == "2026-01-29T12:00:00Z"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
                        sdk["order_id"])


class _Config:
    def __init__(self, option: int | None, ini: str) -> None:
        self.option, self.ini = option, ini

    def getoption(self, name: str) -> int | None:
        assert name == "klarna_sandbox_seed"
        return self.option

    def getini(self, name: str) -> str:
        assert name == SEED_INI
        return self.ini


@pytest.mark.parametrize("option, ini, seed", [(None, "0", 0), (None, " 12 ", 12), (3, "12", 3),
                                               (0, "12", 0)])
def test_the_seed_option_then_the_ini_then_0(option: int | None, ini: str, seed: int) -> None:
    assert sandbox_seed(_Config(option, ini)) == seed  # type: ignore[arg-type]


@pytest.mark.parametrize("option, ini", [(-1, "0"), (None, "-2"), (None, "seven")])
def test_a_bad_seed_is_a_usage_error(option: int | None, ini: str) -> None:
    with pytest.raises(pytest.UsageError):
        sandbox_seed(_Config(option, ini))  # type: ignore[arg-type]
