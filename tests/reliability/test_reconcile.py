"""reconcile: attaches what the store missed, lists what still disagrees, exits non-zero."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.testing.processes import (
    REST_AUTH, GatewayProcess, SandboxProcess, http, run_cli, write_config,
)
from tests.process_fixtures import sandbox  # noqa: F401


@pytest.mark.slow
def test_reconcile_adopts_and_reports(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """A capture made outside is attached (exit 0); a mapping whose order vanished from
    Klarna is listed in the table (exit 1)."""
    config = write_config(tmp_path / "gw.toml", sandbox.url)
    db = f"sqlite:///{tmp_path}/gw.db"
    gw = GatewayProcess(config, db, log_path=tmp_path / "gw.log").start()
    order_id = sandbox.create_order()
    rno = gw.register(1234, order_id)
    gw.stop()
    status, _, _ = http("POST", f"{sandbox.url}/ordermanagement/v1/orders/{order_id}/captures",
                        {"captured_amount": 5000}, auth=REST_AUTH[1234])
    assert status == 201
    ok = run_cli("reconcile", "--config", str(config), "--db", db, "--eid", "1234")
    assert ok.returncode == 0 and "store and Klarna agree" in ok.stdout, ok.stdout + ok.stderr
    gw.start()
    try:
        [inv] = gw.mapping(1234, rno)["invoices"]
        assert inv["adopted"] and inv["captured_amount"] == 5000
    finally:
        gw.stop()
    http("POST", sandbox.url + "/sandbox/v1/reset", bearer="sandbox-admin")
    bad = run_cli("reconcile", "--config", str(config), "--db", db,
                  "--since", "2000-01-01T00:00:00Z")
    assert bad.returncode == 1
    assert "discrepancies between the store and Klarna" in bad.stdout
    assert order_id in bad.stdout and "order unreadable" in bad.stdout


@pytest.mark.slow
def test_explain_prints_the_plan_and_sends_nothing(tmp_path: Path,
                                                   sandbox: SandboxProcess) -> None:
    """`explain` on a captured SDK request prints the REST capture it would make, and
    the order is untouched; a wrong digest prints the fault."""
    import base64
    import hashlib
    import xmlrpc.client

    config = write_config(tmp_path / "gw.toml", sandbox.url)
    db = f"sqlite:///{tmp_path}/gw.db"
    gw = GatewayProcess(config, db, log_path=tmp_path / "gw.log").start()
    order_id = sandbox.create_order()
    rno = gw.register(1234, order_id)
    gw.stop()
    parts = ["4:1", "python:api:3.1.0", "1234", rno, "1", "ART-1", "1", "sandbox-secret"]
    digest = base64.b64encode(hashlib.sha512(":".join(parts).encode()).digest()).decode()
    info = {"shipment_info": {"delay_adjust": 1}, "artnos": [{"artno": "ART-1", "qty": 1}]}
    body = xmlrpc.client.dumps(("4.1", "python:api:3.1.0", 1234, digest, rno, info),
                               "activate", encoding="iso-8859-1")
    request = tmp_path / "activate.xml"
    request.write_text(body, encoding="iso-8859-1")
    out = run_cli("explain", str(request), "--config", str(config), "--db", db)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"POST /ordermanagement/v1/orders/{order_id}/captures" in out.stdout
    assert '"captured_amount": 10000' in out.stdout
    # the differences every activate has, the text docs/translation.md is generated from
    from gateway.calls import REGISTRY
    assert "v2 and REST differ (every activate):" in out.stdout
    for difference in REGISTRY.spec("activate").differences:
        assert f"  - {difference}" in out.stdout
    assert [op for op in sandbox.operations(order_id)
            if op["path"].startswith("/ordermanagement/")] == []
    request.write_text(body.replace(digest, "A" * 88), encoding="iso-8859-1")
    out = run_cli("explain", str(request), "--config", str(config), "--db", db)
    assert out.returncode == 1 and "9114" in out.stdout
