"""Operating the gateway, in process: metrics after real SDK calls, readiness, drain, the
bounded listeners (slow clients, the connection cap, refusal before the body) and the
per-merchant network allow-list."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, threads

from gateway.config import default_sandbox_config_path, load_config
from tests.e2e.sdk import fault_of
from tests.harness import ADMIN, Harness, start_gateway
from tests.waiting import eventually, wait_until
from tests.web.clients import is_open


def _config(**gateway: Any) -> Any:
    config = load_config(default_sandbox_config_path())
    return replace(config, gateway=replace(config.gateway, **gateway))


@pytest_twisted.async_yield_fixture
async def bounded(tmp_path: Any) -> AsyncIterator[Harness]:
    """A gateway whose listeners have short limits, so the tests measure them quickly."""
    h = await start_gateway(f"sqlite:///{tmp_path}/gw.db", _config(
        request_deadline_seconds=1.5, idle_timeout_seconds=5.0, max_connections=8))
    try:
        yield h
    finally:
        await h.gateway.stop()


async def _metrics(gw: Harness) -> str:
    resp = await treq.get(f"{gw.admin}/metrics")  # no token, like /healthz
    assert resp.code == 200
    assert resp.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    return (await resp.content()).decode()


def _value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {sample} in /metrics")


@pytest_twisted.ensureDeferred
async def test_metrics_after_sdk_calls(gw: Harness) -> None:
    """Calls by method and outcome, latency, REST requests by endpoint and status, 9119s,
    retries, journal gauges, database time: values after real SDK calls."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, invno = await gw.call(k.activate, created["rno"])
    await fault_of(gw, gw.sdk().credit_invoice, "9999999999", "")
    await gw.fault(method="POST", path="/release-remaining-authorization$", action="fail",
                   status=503, times=1000)
    assert (await fault_of(gw, gw.sdk().cancel_reservation, created["rno"])).faultCode == 9119
    await gw.clear_faults()
    await gw.gateway.refresh_gauges()
    text = await _metrics(gw)
    assert _value(text, 'klarna_gateway_legacy_calls_total{method="activate",outcome="ok"}') == 1
    assert _value(text, 'klarna_gateway_legacy_calls_total{method="credit_invoice",'
                        'outcome="8101"}') == 1
    assert _value(text, 'klarna_gateway_legacy_9119_total{method="cancel_reservation"}') == 1
    assert _value(text, 'klarna_gateway_legacy_call_seconds_count{method="activate"}') == 1
    assert _value(text, 'klarna_gateway_rest_requests_total{endpoint="/ordermanagement/v1/'
                        'orders/{id}/captures",method="POST",status="201"}') == 1
    assert _value(text, 'klarna_gateway_rest_retries_total{endpoint="/ordermanagement/v1/'
                        'orders/{id}/release-remaining-authorization",method="POST"}') >= 1
    assert _value(text, "klarna_gateway_journal_pending_entries") == 1  # the 9119'd cancel
    assert 'klarna_gateway_database_seconds_count{interaction="read_call"}' in text
    assert invno not in text and "sandbox-secret" not in text


@pytest_twisted.ensureDeferred
async def test_readyz_and_healthz(gw: Harness) -> None:
    """Ready while the database is migrated and recovery sweeps; not while draining."""
    resp = await treq.get(f"{gw.admin}/readyz")
    body = await resp.json()
    assert resp.code == 200 and body["ready"] and body["database"] == "ok", body
    assert (await treq.get(f"{gw.admin}/healthz")).code == 200
    gw.gateway.draining = True
    resp = await treq.get(f"{gw.admin}/readyz")
    assert resp.code == 503 and (await resp.json())["draining"] is True
    gw.gateway.draining = False


@pytest_twisted.ensureDeferred
async def test_ready_while_the_first_recovery_sweep_runs_stalled_when_it_hangs(
        gw: Harness) -> None:
    """Right after start the first sweep is under way: that is recovery running (ready),
    not stalled (the race CI met on PostgreSQL, where a sweep takes a few ms). A sweep
    stuck for minutes is stalled (503)."""
    g = gw.gateway
    await eventually(lambda: g.recovery is None or g.recovery.called,
                     "the first real sweep ended")
    hung: defer.Deferred[None] = defer.Deferred()  # the loop starts none while it hangs
    g.recovery, g.last_recovery, g.recovery_started = hung, None, reactor.seconds()
    resp = await treq.get(f"{gw.admin}/readyz")
    assert resp.code == 200 and (await resp.json())["recovery"] == "ok"
    g.recovery_started = reactor.seconds() - 3600
    resp = await treq.get(f"{gw.admin}/readyz")
    assert resp.code == 503 and (await resp.json())["recovery"] == "stalled"
    hung.callback(None)
    g.last_recovery = reactor.seconds()
    assert (await treq.get(f"{gw.admin}/readyz")).code == 200


@pytest_twisted.ensureDeferred
async def test_stop_drains_a_call_in_flight(tmp_path: Any) -> None:
    """stop() while Klarna is slow to answer a capture: the call still finishes and the
    client gets its invno; new connections are refused meanwhile; then the store closes."""
    h = await start_gateway(f"sqlite:///{tmp_path}/gw.db")
    created = await h.create_order()
    await h.fault(method="POST", path="/captures$", action="latency", delay_ms=1500, times=1)
    url = h.url
    call = threads.deferToThread(h.sdk().activate, created["rno"])
    await eventually(lambda: h.requests("/captures"), "the capture is on its way")
    stopped = defer.ensureDeferred(h.gateway.stop())
    u = urlparse(url)

    def refused() -> bool:
        try:
            socket.create_connection((u.hostname, u.port), timeout=1).close()
        except OSError:
            return True
        return False
    await eventually(refused, "new connections are refused while draining")
    risk, invno = await call
    assert risk == "ok" and invno
    await stopped
    assert h.gateway.parts is None


def _drip(host: str, port: int, every: float, out: dict[str, Any]) -> None:
    """Send a request one byte every ``every`` s; record how long until the server cut."""
    body = b"<?xml version='1.0'?><methodCall><methodName>activate</methodName></methodCall>"
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(every)
            out["answer"] = sock.recv(4096)
        except OSError as e:
            out["error"] = type(e).__name__
        else:
            while sock.recv(4096):
                pass
    out["seconds"] = time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_a_dripping_client_is_cut_at_the_deadline(bounded: Harness) -> None:
    """One byte every 250 ms: the legacy listener answers 408 and closes at the 1.5 s
    deadline (30 s by default), not when the client is done."""
    u = urlparse(bounded.url)
    out: dict[str, Any] = {}
    await threads.deferToThread(_drip, u.hostname, u.port, 0.25, out)
    assert out["seconds"] < 4.0, out
    assert b"408" in out.get("answer", b"") or "error" in out, out


def _hold(host: str, port: int, n: int, cap: int, out: dict[str, Any]) -> None:
    """Open ``n`` idle connections; once the server has closed all but ``cap`` (it closes
    the ones beyond its cap as it accepts them), record how many it kept."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection((host, port), timeout=5))
        except OSError:
            pass  # reset the moment it was accepted: refused over the cap
    try:
        wait_until(lambda: sum(map(is_open, socks)) <= cap,
                   "the connections beyond the cap closed", timeout=5)
    except AssertionError:
        pass  # the count below says how many were kept
    out["kept"] = sum(map(is_open, socks))
    for s in socks:
        s.close()


@pytest_twisted.ensureDeferred
async def test_connections_beyond_the_cap_are_closed(bounded: Harness) -> None:
    """With max_connections 8, of 20 idle connections 8 are kept, the rest closed at once."""
    u = urlparse(bounded.url)
    out: dict[str, Any] = {}
    await threads.deferToThread(_hold, u.hostname, u.port, 20, 8, out)
    assert out["kept"] == 8, out


def _upload(url: str, total: int, headers: dict[str, str], out: dict[str, Any]) -> None:
    """Stream ``total`` bytes as a POST body; record the answer and when it came."""
    u = urlparse(url)
    started = time.monotonic()
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST {u.path or '/'} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}"
                     f"\r\n{head}\r\n".encode())
        chunk, sent = b"x" * 65536, 0
        sock.setblocking(False)
        answer = b""
        while sent < total and not answer:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                break
            try:
                answer = sock.recv(4096)
            except (BlockingIOError, OSError):
                pass
        sock.setblocking(True)
        if not answer:
            try:
                answer = sock.recv(4096)
            except OSError:
                pass
    out.update(answer=answer, sent=sent, seconds=time.monotonic() - started)


@pytest.mark.parametrize("listener", ["admin", "sandbox"])
@pytest_twisted.ensureDeferred
async def test_unauthenticated_upload_is_refused_before_the_body(gw: Harness,
                                                                 listener: str) -> None:
    """A 1 GB upload without credentials: 401 long before the body could have arrived,
    with only a sliver of it sent; a declared oversized body with credentials: 413."""
    base = gw.admin if listener == "admin" else gw.sandbox
    path = "/v1/reservations" if listener == "admin" else "/ordermanagement/v1/orders/x/captures"
    out: dict[str, Any] = {}
    await threads.deferToThread(_upload, base + path, 1 << 30, {}, out)
    assert out["answer"].startswith(b"HTTP/1.1 401"), out["answer"][:80]
    assert out["sent"] < 64 << 20 and out["seconds"] < 5, out
    auth = ({"Authorization": "Bearer sandbox-admin"} if listener == "admin" else
            {"Authorization": "Basic UEsxMjM0X3NhbmRib3g6c2FuZGJveC1wYXNzd29yZA=="})
    big: dict[str, Any] = {}
    await threads.deferToThread(_upload, base + path, 64 << 20, auth, big)
    assert big["answer"].startswith(b"HTTP/1.1 413"), big["answer"][:80]


@pytest_twisted.ensureDeferred
async def test_allowed_networks_refuse_other_clients(tmp_path: Any) -> None:
    """eid 5678 accepts calls only from 10.0.0.0/8: from 127.0.0.1 its calls get 1999
    (before the digest is even checked); eid 1234 has no list and works."""
    config = load_config(default_sandbox_config_path())
    from ipaddress import ip_network

    config = replace(config, merchants=tuple(
        replace(m, allowed_networks=(ip_network("10.0.0.0/8"),)) if m.eid == 5678 else m
        for m in config.merchants))
    h = await start_gateway(f"sqlite:///{tmp_path}/gw.db", config)
    try:
        created = await h.create_order(eid=5678)
        f = await fault_of(h, h.sdk(5678, secret="wrong").activate, created["rno"])
        assert f.faultCode == 1999 and "127.0.0.1" in f.faultString
        other = await h.create_order()
        assert (await h.call(h.sdk().activate, other["rno"]))[0] == "ok"
    finally:
        await h.gateway.stop()


def test_threads_left_behind_are_daemons() -> None:
    """A gateway that was never stopped must not keep the interpreter alive."""
    stuck = [t for t in threading.enumerate() if t.name.startswith("gateway-db")
             and not t.daemon]
    assert not stuck
    _ = ADMIN


@pytest.mark.postgres
@pytest_twisted.ensureDeferred
async def test_readyz_flips_when_the_database_goes_away(gw_pg: Harness) -> None:
    """PostgreSQL: ready; the schema's version table gone (an unmigrated or wrong
    database), or the database refusing connections: 503; back: ready again."""
    from sqlalchemy import text

    engine = gw_pg.gateway.parts.db.engine  # type: ignore[union-attr]

    def execute(sql: str) -> None:
        with engine.begin() as conn:
            conn.execute(text(sql))

    assert (await treq.get(f"{gw_pg.admin}/readyz")).code == 200
    await threads.deferToThread(execute, "ALTER TABLE alembic_version RENAME TO av_moved")
    resp = await treq.get(f"{gw_pg.admin}/readyz")
    assert resp.code == 503 and (await resp.json())["database"] != "ok"
    await threads.deferToThread(execute, "ALTER TABLE av_moved RENAME TO alembic_version")
    assert (await treq.get(f"{gw_pg.admin}/readyz")).code == 200
    gw_pg.gateway.parts.db.dispose()  # type: ignore[union-attr]
    real_connect = engine.pool._creator  # type: ignore[attr-defined]

    def refuse() -> Any:
        raise OSError("connection refused (test)")
    engine.pool._creator = refuse  # type: ignore[attr-defined]
    try:
        resp = await treq.get(f"{gw_pg.admin}/readyz")
        assert resp.code == 503 and "unreachable" in (await resp.json())["database"]
    finally:
        engine.pool._creator = real_connect  # type: ignore[attr-defined]
    assert (await treq.get(f"{gw_pg.admin}/readyz")).code == 200
