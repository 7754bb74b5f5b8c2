"""The standalone runner (service.py) and the conformance checker itself."""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.server import Site

from gateway.config import default_sandbox_config_path, load_config
from gateway.sandbox.resource import SandboxResource
from gateway.sandbox.service import listen_sandbox, make_sandbox_site, run_sandbox
from tests.conformance import OpenApiChecker, default_checker, patch_spec
from tests.sandbox.support import SandboxRunner
from tests.sandbox_fixtures import order_body

OM = "/ordermanagement/v1/orders/"


def test_make_sandbox_site_exposes_the_resource():
    """make_sandbox_site returns a Site whose resource is a SandboxResource with a clock."""
    site = make_sandbox_site(load_config(default_sandbox_config_path()), reactor)
    assert isinstance(site, Site)
    assert isinstance(site.resource, SandboxResource)
    assert site.resource.on_response is None
    assert site.resource.clock.now().tzinfo is not None


def test_run_sandbox_reports_bad_config(tmp_path, capsys):
    """A broken config file makes run_sandbox return 2 without starting the reactor."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[[merchants]]\neid = 0\n")
    assert run_sandbox("tcp:0:interface=127.0.0.1", str(bad)) == 2
    assert "merchants[0].eid" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_listen_sandbox_serves_on_loopback():
    """listen_sandbox fires with a listening port that answers over HTTP."""
    import treq

    config = load_config(default_sandbox_config_path())
    port = await listen_sandbox(reactor, config, "tcp:0:interface=127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/sandbox/v1/clock"
        response = await treq.get(url, headers={"Authorization": "Bearer sandbox-admin"},
                                  persistent=False)
        assert response.code == 200
        assert "now" in await response.json()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_run_sandbox_as_a_process_until_sigterm():
    """run_sandbox logs its URL, serves merchants' requests and exits 0 on SIGTERM."""
    import treq

    runner = SandboxRunner("from gateway.sandbox.service import run_sandbox; "
                           "raise SystemExit(run_sandbox('tcp:0:interface=127.0.0.1'))")
    try:
        url = await runner.url.addTimeout(15, reactor)
        response = await treq.post(f"{url}/payments/v1/authorizations/t/order",
                                   json=order_body(), auth=("PK1234_sandbox", "sandbox-password"),
                                   persistent=False)
        assert response.code == 200
        assert (await response.json())["fraud_status"] == "ACCEPTED"
    finally:
        ended = await runner.stop()
    assert ended == 0


def test_patch_spec_repairs_vendor_blemishes():
    """Empty enums disappear; a pipe-joined single enum becomes a list."""
    spec = {"a": {"enum": [None], "type": "integer"},
            "b": {"enum": ["physical|discount"]}, "c": [{"enum": ["X", "Y"]}]}
    assert patch_spec(spec) == {"a": {"type": "integer"}, "b": {"enum": ["physical", "discount"]},
                                "c": [{"enum": ["X", "Y"]}]}


@pytest.mark.parametrize("method,path,status,headers,body,expected", [
    ("GET", OM + "o", 200, {"Content-Type": "application/json"},
     b'{"order_id": "o", "status": "SHIPPED"}', "status"),
    ("GET", OM + "o", 200, {"Content-Type": "application/json"},
     b'{"created_at": "yesterday"}', "date-time"),
    ("GET", OM + "o", 200, {"Content-Type": "text/html"}, b"{}", "Content-Type"),
    ("GET", OM + "o", 302, {}, b"", "not documented"),
    ("POST", OM + "o/captures", 201, {"Location": "/relative"}, b"", "Capture-Id"),
    ("POST", OM + "o/captures", 201, {"Capture-Id": "c", "Location": "/relative"}, b"",
     "not absolute"),
    ("POST", OM + "o/refunds", 201, {"Location": "http://h/x"}, b"", "Refund-Id"),
    ("POST", OM + "o/cancel", 204, {}, b"{}", "204 with a body"),
    ("POST", OM + "o/cancel", 403, {}, b'{"error_code": "X"}', "error_messages"),
    ("POST", OM + "o/cancel", 503, {}, b"Service Unavailable", "not JSON"),
    ("GET", OM + "o/captures", 200, {"Content-Type": "application/json"},
     b'[{"captured_amount": 0}]', "minimum"),
    ("DELETE", OM + "o", 200, {}, b"", "undocumented operation"),
    ("PATCH", "/customer-token/v1/tokens/t/status", 202, {}, b"{}", "202 with a body"),
    ("PATCH", "/customer-token/v1/tokens/t/status", 200, {}, b"", "not documented"),
    ("GET", "/customer-token/v1/tokens/t", 200, {"Content-Type": "application/json"},
     b'{"status": "ACTIVE"}', "payment_method_type"),
    ("POST", "/customer-token/v1/tokens/t/order", 200, {"Content-Type": "application/json"},
     b'{"order_id": "o", "fraud_status": "ACCEPTED"}', "redirect_url"),
    ("POST", "/payments/v1/authorizations/a/customer-token", 200,
     {"Content-Type": "application/json"}, b'{"redirect_url": "https://x"}', "token_id"),
])
def test_checker_detects_violations(method, path, status, headers, body, expected):
    """The checker reports schema, status, header and error-shape violations."""
    problems = default_checker().check(method, path, status, headers, body)
    assert any(expected in p for p in problems), problems


def test_checker_accepts_conforming_responses():
    """Documented answers, global errors and unknown paths answered 404 pass."""
    checker = OpenApiChecker()
    error = b'{"error_code": "E", "error_messages": ["m"], "correlation_id": "c"}'
    assert checker.check("POST", OM + "o/captures", 201,
                         {"Capture-Id": "c", "Location": "http://h/o/captures/c"}, b"") == []
    assert checker.check("PATCH", OM + "o/authorization", 429, {}, error) == []
    assert checker.check("GET", "/nowhere", 404, {}, error) == []
    assert checker.check("POST", "/payments/v1/authorizations/t/order", 200,
                         {"Content-Type": "application/json"},
                         b'{"order_id": "o", "fraud_status": "ACCEPTED"}') == []
    assert checker.check("PATCH", "/customer-token/v1/tokens/t/status", 202, {}, b"") == []
    assert checker.check("GET", "/customer-token/v1/tokens/t", 200,
                         {"Content-Type": "application/json"},
                         b'{"payment_method_type": "INVOICE", "status": "ACTIVE"}') == []
    assert checker.check("POST", "/customer-token/v1/tokens/t/order", 403, {}, error) == []


@pytest_twisted.ensureDeferred
async def test_fixture_collects_violations(sandbox):
    """The sandbox fixture's hook feeds the checker (a bad response would fail the test)."""
    sandbox.resource.on_response("GET", OM + "o", 200, {}, b"not json")
    assert sandbox.violations
    sandbox.violations.clear()
    await sandbox.request("GET", OM + "missing")
    assert sandbox.violations == []
