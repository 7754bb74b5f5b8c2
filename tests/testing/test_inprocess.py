"""The in-process sandbox and gateway behind the pytest fixtures, used from this suite
(which runs pytest-twisted: these plain ``def`` tests run inside its reactor's greenlet,
the case a blocking SDK call would deadlock on the suite's own reactor).

Also: starts that fail half-way stop what they started, and the private reactor thread
leaves no thread or descriptor behind.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

from gateway.testing.inprocess import KlarnaGateway, KlarnaSandbox
from gateway.testing.reactor_thread import ReactorThread


def closed(url: str) -> bool:
    host, port = url.split("//")[1].rstrip("/").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("klarna-gateway", "gateway-db"))]


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_fixtures_serve_the_sdk_from_a_test_on_the_suites_reactor(
        klarna_gateway: KlarnaGateway) -> None:
    made = klarna_gateway.create_order(rno="ERP-4711")
    assert made.rno == "ERP-4711"
    k = klarna_gateway.sdk()
    k.add_art_no(qty=3, artno="ART-2")
    risk, invno = k.activate(made.rno)
    assert risk == "ok"
    order = klarna_gateway.sandbox.order(made.order_id)
    assert order["status"] == "PART_CAPTURED" and order["captured_amount"] == 15000
    assert klarna_gateway.reservation(1234, "ERP-4711")["invoices"][0]["invno"] == invno
    # an order placed outside the gateway, registered afterwards
    other = klarna_gateway.sandbox.create_order(eid=5678)
    assert klarna_gateway.register(other, eid=5678).order_id == other


def test_the_seed_decides_the_ids() -> None:
    def first_order(seed: int) -> str:
        sandbox = KlarnaSandbox.start(seed=seed)
        try:
            return sandbox.create_order()
        finally:
            sandbox.stop()
    assert first_order(7) == first_order(7) != first_order(8)


def test_a_sandbox_that_fails_after_listening_stops_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def broken(self: KlarnaSandbox) -> Any:
        seen.append(self.url)
        raise RuntimeError("probe failed")
    monkeypatch.setattr(KlarnaSandbox, "clock", broken)
    before = fds()
    with pytest.raises(RuntimeError, match="probe failed"):
        KlarnaSandbox.start()
    assert seen and closed(seen[0])
    assert our_threads() == [] and fds() == before


def test_a_gateway_that_fails_after_listening_stops_again(
        monkeypatch: pytest.MonkeyPatch, klarna_sandbox: KlarnaSandbox,
        tmp_path: Path) -> None:
    seen: list[str] = []

    def broken(self: KlarnaGateway) -> None:
        seen.extend([self.url, self.admin_url])
        raise RuntimeError("probe failed")
    monkeypatch.setattr(KlarnaGateway, "_probe", broken)
    with pytest.raises(RuntimeError, match="probe failed"):
        KlarnaGateway.start(klarna_sandbox, tmp_path)
    assert len(seen) == 2 and all(closed(u) for u in seen)
    assert "gateway-db" not in our_threads()
    assert klarna_sandbox.clock()["frozen"] is True  # the sandbox itself still serves


def test_a_gateway_that_cannot_start_leaves_nothing(klarna_sandbox: KlarnaSandbox,
                                                    tmp_path: Path) -> None:
    with pytest.raises(Exception):
        KlarnaGateway.start(klarna_sandbox, tmp_path,
                            db_url=f"sqlite:///{tmp_path}/no/such/dir/gateway.db")
    assert "gateway-db" not in our_threads()


def test_the_reactor_thread() -> None:
    before, threads_before = fds(), our_threads()
    runner = ReactorThread().start()
    assert runner.alive and len(our_threads()) == len(threads_before) + 1

    async def later(x: int) -> int:
        await task.deferLater(runner.reactor, 0.01, lambda: None)
        return 2 * x
    assert runner.call(later, 21) == 42
    assert runner.call(lambda: "plain") == "plain"
    with pytest.raises(ZeroDivisionError):
        runner.call(lambda: 1 / 0)
    with pytest.raises(TimeoutError):
        runner.call(lambda: task.deferLater(runner.reactor, 5, lambda: None), timeout=0.1)
    with pytest.raises(RuntimeError, match="deadlock"):
        runner.call(runner.call, lambda: None)
    runner.stop()
    runner.stop()
    assert not runner.alive and our_threads() == threads_before and fds() == before
    with pytest.raises(RuntimeError, match="not running"):
        runner.call(lambda: None)
