"""Real processes: SIGKILL mid-mutation, restart, reconcile; two processes on one database.

These tests run the console script as child processes (the sandbox in its own process, so
killing the gateway does not kill Klarna), and drive them with the official SDK.
"""
from __future__ import annotations

import threading
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.processes import (
    GatewayProcess, SandboxProcess, db_upgrade, http, run_cli, write_config,
)
from tests.conftest import PG_DSN, make_pg_schema
from tests.process_fixtures import sandbox  # noqa: F401
from tests.waiting import wait_until


def _captures(sb: SandboxProcess, order_id: str) -> list[dict[str, Any]]:
    return [op for op in sb.operations(order_id)
            if op["path"].endswith("/captures") and op["method"] == "POST"]


def _call_in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except BaseException as e:  # noqa: BLE001 - record whatever the client saw
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.mark.slow
@pytest.mark.parametrize("fault", [{"action": "hang"},
                                   {"action": "apply_then_fail", "status": 0}])
def test_sigkill_mid_capture_then_restart_and_reconcile(tmp_path: Path, sandbox: SandboxProcess,
                                                        fault: dict[str, Any]) -> None:
    """The gateway dies while Klarna holds (or has applied) the capture; after restart
    and reconcile the capture exists exactly once and its invoice row is in the store."""
    config = write_config(tmp_path / "gw.toml", sandbox.url, rest_timeout_seconds=1.0,
                          retry_budget_seconds=4.0)
    db = f"sqlite:///{tmp_path}/gw.db"
    gw = GatewayProcess(config, db, log_path=tmp_path / "gw.log").start()
    order_id = sandbox.create_order()
    rno = gw.register(1234, order_id)
    sandbox.fault(method="POST", path=r"/captures$", times=1000, **fault)
    t, out = _call_in_thread(gw.sdk().activate, rno)
    def capture_sent() -> bool:
        faults = http("GET", sandbox.url + "/sandbox/v1/faults", bearer="sandbox-admin")[2]
        return bool(faults) and faults[0]["hits"] >= 1
    wait_until(capture_sent, "the capture request has gone out")
    gw.kill()
    t.join(15)
    assert out and isinstance(out[0], Exception)  # the client lost its connection
    sandbox.clear_faults()
    gw.start()  # recovery on start resumes the journaled capture with the same key
    wait_until(lambda: gw.mapping(1234, rno)["invoices"], "recovery booked the capture",
               timeout=30, every=0.2)
    gw.stop()
    result = run_cli("reconcile", "--config", str(config), "--db", db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "store and Klarna agree" in result.stdout
    assert len(_captures(sandbox, order_id)) == 1
    order = sandbox.order(order_id)
    gw.start()
    try:
        [inv] = gw.mapping(1234, rno)["invoices"]
        assert inv["capture_id"] == order["captures"][0]["capture_id"]
        # The client's own retry of the same call now answers with that invno (its reply
        # never reached the client that was cut off)...
        risk, invno = gw.sdk().activate(rno)
        assert (risk, invno) == ("ok", inv["invno"])
        # ...and once delivered, the binding ends: a deliberate repeat is a new activation,
        # refused as v2 refused it (nothing left).
        with pytest.raises(xmlrpc.client.Fault) as info:
            gw.sdk().activate(rno)
        assert info.value.faultCode == 9103
    finally:
        gw.stop()
    assert len(_captures(sandbox, order_id)) == 1


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_same_call_at_once_is_one_operation(tmp_path: Path,
                                                          sandbox: SandboxProcess) -> None:
    """Two gateway processes on one PostgreSQL receive the identical activate at once:
    one capture, and both clients get the same invno."""
    assert PG_DSN
    db, drop = make_pg_schema()
    try:
        db_upgrade(db)
        config = write_config(tmp_path / "gw.toml", sandbox.url)
        a = GatewayProcess(config, db, log_path=tmp_path / "a.log").start()
        b = GatewayProcess(config, db, log_path=tmp_path / "b.log").start()
        try:
            order_id = sandbox.create_order()
            rno = a.register(1234, order_id)
            sandbox.fault(method="POST", path=r"/captures$", action="latency", delay_ms=800)
            ka, kb = a.sdk(), b.sdk()
            ka.add_art_no(qty=1, artno="ART-1")
            kb.add_art_no(qty=1, artno="ART-1")
            ta, oa = _call_in_thread(ka.activate, rno)
            tb, ob = _call_in_thread(kb.activate, rno)
            ta.join(20)
            tb.join(20)
            assert oa and ob and oa[0] == ob[0], (oa, ob)
            assert len(_captures(sandbox, order_id)) == 1
            # Numbers come from a database sequence: distinct across processes.
            o2, o3 = sandbox.create_order(), sandbox.create_order()
            r2, r3 = a.register(1234, o2), b.register(1234, o3)
            inv2 = a.sdk().activate(r2)[1]
            inv3 = b.sdk().activate(r3)[1]
            assert len({oa[0][1], inv2, inv3}) == 3
        finally:
            a.stop()
            b.stop()
    finally:
        drop()


@pytest.mark.slow
def test_serve_refuses_an_old_postgres_schema(tmp_path: Path) -> None:
    """Only `db upgrade` migrates a shared database; serve refuses an unmigrated one."""
    if not PG_DSN:
        pytest.skip("GATEWAY_TEST_PG_DSN is not set")
    db, drop = make_pg_schema()
    try:
        config = write_config(tmp_path / "gw.toml", "http://127.0.0.1:9")
        gw = GatewayProcess(config, db, log_path=tmp_path / "gw.log")
        with pytest.raises(RuntimeError):
            gw.start()
        assert "db upgrade" in (tmp_path / "gw.log").read_text()
    finally:
        drop()
