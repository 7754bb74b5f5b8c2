"""Authorizations about to lapse: ``klarna-gateway expiring`` (a real process against a real
gateway's store and sandbox), the ``klarna_gateway_authorizations_expiring`` gauge that
``serve`` refreshes, and the pure rules under both.

The sandbox is seeded, so its clock is frozen at 2026-01-01T12:00:00Z whatever the wall
clock says, and moves only through ``POST /sandbox/v1/clock``: time left is counted on
Klarna's clock (the ``Date`` header), so the figures below are exact.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, threads
from twisted.logger import globalLogPublisher

from gateway.cli import expiring as expiring_cli
from gateway.config import load_config, parse_config
from gateway.model import Reservation
from gateway.testing.processes import REST_AUTH, run_cli, write_config
from gateway.tools import expiring as expiry
from tests.harness import ADMIN, SANDBOX_CONFIG, Harness, start_gateway
from tests.waiting import eventually

DAY = 86400


# -- the pure rules ----------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("3d", 3 * DAY), ("12h", 12 * 3600),
                                           ("90m", 5400), ("3600", 3600), ("45s", 45),
                                           (" 1D ", DAY), ("366d", 366 * DAY)])
def test_windows(text: str, seconds: int) -> None:
    assert expiry.parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0d", "3w", "-1d", "1.5d", "367d", "d", "3 d"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        expiry.parse_window(text)


def test_time_left_for_humans() -> None:
    assert expiry.format_left(2 * DAY) == "2d 00h"
    assert expiry.format_left(DAY + 3 * 3600 + 59) == "1d 03h"
    assert expiry.format_left(5 * 3600 + 7 * 60) == "5h 07m"
    assert expiry.format_left(12 * 60 + 30) == "12m"
    assert expiry.format_left(0) == expiry.format_left(-5) == "lapsed"


RES = Reservation(id=1, eid=1234, rno="8000000000", order_id="o-1", status="AUTHORIZED",
                  origin="admin")
ORDER = {"status": "AUTHORIZED", "remaining_authorized_amount": 35000,
         "purchase_currency": "SEK", "expires_at": "2026-01-29T12:00:00Z"}
NOW = 1769601600.0  # 2026-01-28T12:00:00Z


def test_an_open_authorization_and_its_time_left() -> None:
    item = expiry.expiring_item(RES, ORDER, NOW)
    assert item is not None
    assert (item.status, item.remaining, item.currency) == ("AUTHORIZED", 35000, "SEK")
    assert item.expires_at == "2026-01-29T12:00:00Z" and item.seconds_left == DAY
    offset = expiry.expiring_item(RES, {**ORDER, "expires_at": "2026-01-29T13:00:00+01:00"},
                                  NOW)
    assert offset is not None and offset.expires_at == "2026-01-29T12:00:00Z"


@pytest.mark.parametrize("change", [{"status": "CAPTURED"}, {"status": "CANCELLED"},
                                    {"status": "EXPIRED"}, {"remaining_authorized_amount": 0},
                                    {"remaining_authorized_amount": None}])
def test_nothing_left_to_lapse(change: dict[str, Any]) -> None:
    assert expiry.expiring_item(RES, {**ORDER, **change}, NOW) is None


@pytest.mark.parametrize("expires", [None, "soon", 17])
def test_an_open_order_without_a_readable_expiry_is_an_error(expires: Any) -> None:
    with pytest.raises(ValueError):
        expiry.expiring_item(RES, {**ORDER, "expires_at": expires}, NOW)


def test_klarna_time_is_the_date_header() -> None:
    assert expiry.klarna_time({"date": "Wed, 28 Jan 2026 12:00:00 GMT"}, 5.0) == NOW
    assert expiry.klarna_time({"date": "yesterday"}, 5.0) == 5.0
    assert expiry.klarna_time({}, 5.0) == 5.0


def test_the_refresh_interval_is_configurable() -> None:
    raw = {"gateway": {"expiry_check_seconds": 0}, "merchants": []}
    assert parse_config(raw).gateway.expiry_check_seconds == 0.0
    assert load_config(SANDBOX_CONFIG).gateway.expiry_check_seconds == expiry.DEFAULT_INTERVAL


@pytest_twisted.ensureDeferred
async def test_bounded_keeps_only_its_workers_alive_and_the_order() -> None:
    """At most ``concurrency`` calls are under way at once (one coroutine per worker, not one
    per item: a background round over tens of thousands of reservations must not hold them
    all), and the results come back in the items' order."""
    gates: dict[int, defer.Deferred[None]] = {}
    active, peak = [0], [0]

    async def fn(i: int) -> int:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        gates[i] = defer.Deferred()
        await gates[i]
        active[0] -= 1
        return i * 10

    done = defer.ensureDeferred(expiry.bounded(list(range(50)), fn, 4))
    for _ in range(50):
        assert len([g for g in gates.values() if not g.called]) <= 4
        # finish the newest call first, so results complete out of order
        waiting = sorted(i for i, g in gates.items() if not g.called)
        gates[waiting[-1]].callback(None)
    assert await done == [i * 10 for i in range(50)]
    assert peak[0] == 4


@pytest_twisted.ensureDeferred
async def test_bounded_raises_the_first_error_and_stops_taking_items() -> None:
    started: list[int] = []

    async def fn(i: int) -> int:
        started.append(i)
        if i == 3:
            raise KeyError("bug")
        return i

    with pytest.raises(KeyError):
        await expiry.bounded(list(range(100)), fn, 2)
    assert len(started) < 100
    assert await expiry.bounded([], fn, 8) == []


# -- a real gateway ----------------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Harness]:
    """A gateway whose sandbox is seeded: its clock frozen at 2026-01-01T12:00:00Z."""
    h = await start_gateway(f"sqlite:///{tmp_path}/gateway.db", sandbox_seed=11)
    try:
        yield h
    finally:
        await h.gateway.stop()
    assert not h.violations, "\n".join(h.violations)


async def orders_near_expiry(gw: Harness) -> dict[str, dict[str, Any]]:
    """Five reservations, then the sandbox clock moved 26 days on: ``near`` (untouched) and
    ``part`` (part captured) lapse in 2 days; ``late`` was placed 20 days after them; ``done``
    is fully captured and ``gone`` cancelled through the gateway; ``outside`` was captured
    straight at Klarna (the store still says AUTHORIZED)."""
    made = {name: await gw.create_order() for name in ("near", "part", "done", "gone",
                                                        "outside")}
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    await gw.call(k.activate, made["part"]["rno"])
    await gw.call(k.activate, made["done"]["rno"])
    await gw.call(k.cancel_reservation, made["gone"]["rno"])
    resp = await treq.post(f"{gw.sandbox}/ordermanagement/v1/orders/"
                           f"{made['outside']['order_id']}/captures",
                           json={"captured_amount": 35000}, auth=REST_AUTH[1234])
    assert resp.code == 201, await resp.text()
    await gw.advance_clock(20 * DAY)
    made["late"] = await gw.create_order()
    await gw.advance_clock(6 * DAY)
    return made


async def cli(*args: str) -> Any:
    """The console script in a child process (off the reactor, which serves its reads)."""
    return await threads.deferToThread(run_cli, "expiring", *args)


async def scan_in_process(gw: Harness, eid: int | None = None) -> expiry.Scan:
    """What the command reads, read here (to check its other formats without a process)."""
    parts = gw.gateway.parts
    assert parts is not None
    found = await parts.store.list_open_reservations(expiry.OPEN_STATUSES, eid)
    return await expiry.scan(parts.config, parts.om, found, reactor)


def report(found: expiry.Scan, within: str, fmt: str = "table") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = expiring_cli.report(found, expiry.parse_window(within), within, fmt, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_the_cli_reports_what_lapses_and_exits_1(seeded: Harness, tmp_path: Path,
                                                       ) -> None:
    made = await orders_near_expiry(seeded)
    config = str(write_config(tmp_path / "gw.toml", seeded.sandbox))
    base = ("--config", config, "--db", f"sqlite:///{tmp_path}/gateway.db")

    result = await cli("--within", "3d", *base)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["eid", "rno", "order", "id", "status", "remaining", "expires",
                                "at", "time", "left"]
    rows = [line.split() for line in lines[1:-1]]
    assert {r[1] for r in rows} == {made["near"]["rno"], made["part"]["rno"]}
    by_rno = {r[1]: r for r in rows}
    assert by_rno[made["near"]["rno"]] == [
        "1234", made["near"]["rno"], made["near"]["order_id"], "AUTHORIZED", "350.00", "SEK",
        "2026-01-29T12:00:00Z", "2d", "00h"]
    assert by_rno[made["part"]["rno"]][3:5] == ["PART_CAPTURED", "250.00"]
    assert lines[-1].startswith("2 authorization(s) expire within 3d")

    result = await cli("--within", "3d", "--format", "json", *base)
    as_json = json.loads(result.stdout)
    assert result.returncode == 1 and as_json["within_seconds"] == 3 * DAY
    assert as_json["unreadable"] == []
    assert [e["seconds_left"] for e in as_json["expiring"]] == [2 * DAY, 2 * DAY]
    assert {e["order_id"] for e in as_json["expiring"]} == {made["near"]["order_id"],
                                                            made["part"]["order_id"]}
    result = await cli("--within", "47h", *base)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no authorization expires within 47h")

    found = await scan_in_process(seeded)
    code, out, _ = report(found, "49h", "csv")
    rows_csv = list(csv.DictReader(io.StringIO(out)))
    assert code == 1 and sorted(r["remaining_authorized_amount"] for r in rows_csv) == [
        "25000", "35000"]
    assert {r["expires_at"] for r in rows_csv} == {"2026-01-29T12:00:00Z"}
    code, out, _ = report(found, "22d")  # `late` lapses in exactly 22 days
    assert code == 1 and made["late"]["rno"] in out
    assert made["done"]["rno"] not in out and made["gone"]["rno"] not in out
    assert report(await scan_in_process(seeded, eid=5678), "3d")[0] == 0


@pytest.mark.parametrize("args, message", [
    (("--within", "soon"), "klarna-gateway: --within: expected a duration"),
    (("--eid", "9999"), "klarna-gateway: --eid: eid 9999 is not configured"),
    (("--eid", "x"), "klarna-gateway: expiring: argument --eid: not an eid: 'x'"),
    (("--config", "/nonexistent/gw.toml"), "klarna-gateway: Error in configuration"),
])
def test_bad_flags_are_one_line_and_exit_2(args: tuple[str, ...], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before anything is opened (so in-process: no reactor is run)."""
    from gateway.cli import main

    config = str(SANDBOX_CONFIG)
    assert main(["expiring", "--config", config, "--db", "sqlite:///x.db", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(message) and err.count("\n") == 1


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_cli_errors_are_one_line(seeded: Harness, tmp_path: Path) -> None:
    made = await orders_near_expiry(seeded)
    config = str(write_config(tmp_path / "gw.toml", seeded.sandbox))
    result = await cli("--config", config, "--db", f"sqlite:///{tmp_path}/none.db")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("klarna-gateway: no database at ")
    assert result.stderr.count("\n") == 1
    # Klarna refuses one read: it is named on stderr; what was read is still reported.
    await seeded.fault(method="GET", path=f"/orders/{made['late']['order_id']}$",
                       action="fail", status=404, times=None)
    result = await cli("--within", "3d", "--config", config, "--db",
                       f"sqlite:///{tmp_path}/gateway.db")
    assert result.returncode == 1 and made["near"]["rno"] in result.stdout
    assert re.fullmatch(rf"klarna-gateway: eid 1234 rno {made['late']['rno']} order {made['late']['order_id']}"
                        r": not read: Klarna answered HTTP 404 \S+\n", result.stderr)
    code, _, err = report(await scan_in_process(seeded), "1h")
    assert code == 2 and made["late"]["rno"] in err, "nothing found, one order unknown"


async def metrics_text(gw: Harness) -> str:
    resp = await treq.get(gw.admin + "/metrics")
    assert resp.code == 200
    return str(await resp.text())


def gauge(text: str, within: str) -> float | None:
    found = re.search(r'^klarna_gateway_authorizations_expiring\{within="%s"\} (\S+)$'
                      % within, text, re.M)
    return float(found.group(1)) if found else None


@pytest_twisted.ensureDeferred
async def test_the_gauge_counts_what_lapses_after_a_refresh(seeded: Harness) -> None:
    made = await orders_near_expiry(seeded)
    watch = seeded.gateway.expiry
    assert watch is not None
    scan = await watch.refresh()
    assert scan is not None and scan.checked >= 3
    assert made["outside"]["order_id"] in {r.order_id for r, _ in scan.final}
    text = await metrics_text(seeded)
    assert gauge(text, "3d") == 2.0 and gauge(text, "1d") == 0.0
    # The order captured straight at Klarna is recorded CAPTURED: the next round skips it.
    assert (await seeded.mapping(1234, made["outside"]["rno"]))["status"] == "CAPTURED"
    before = scan.checked
    again = await watch.refresh()
    assert again is not None and again.final == ()
    assert again.checked == before - len(scan.final)
    await seeded.advance_clock(DAY + 1)
    await watch.refresh()
    text = await metrics_text(seeded)
    assert gauge(text, "1d") == 2.0 and gauge(text, "3d") == 2.0
    # The console's expiring page is the same reading.
    resp = await treq.get(seeded.admin + "/console/expiring?days=1", headers=ADMIN)
    page = await resp.text()
    assert made["near"]["order_id"] in page and made["late"]["order_id"] not in page


@pytest_twisted.ensureDeferred
async def test_a_round_reads_the_store_a_page_at_a_time(seeded: Harness,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Pages of one reservation give the same reading as one page of all of them: every
    open reservation is checked once, and the gauge counts the same."""
    made = await orders_near_expiry(seeded)
    watch = seeded.gateway.expiry
    assert watch is not None
    monkeypatch.setattr(expiry, "PAGE_SIZE", 1)
    pages: list[int] = []
    listing = watch.store.list_open_reservations

    async def counted(*args: Any, **kwargs: Any) -> Any:
        found = await listing(*args, **kwargs)
        pages.append(len(found))
        return found
    monkeypatch.setattr(watch.store, "list_open_reservations", counted)
    scan = await watch.refresh()
    assert scan is not None and scan.checked == len(pages) - 1 == 4  # near part late outside
    assert pages == [1, 1, 1, 1, 0]
    assert {e.reservation.order_id for e in scan.open} == {made["near"]["order_id"],
                                                           made["part"]["order_id"]}
    assert [r.order_id for r, _ in scan.final] == [made["outside"]["order_id"]]
    text = await metrics_text(seeded)
    assert gauge(text, "3d") == 2.0 and gauge(text, "1d") == 0.0


@pytest_twisted.ensureDeferred
async def test_a_failed_round_logs_one_line_and_keeps_the_gauge(seeded: Harness) -> None:
    await orders_near_expiry(seeded)
    watch = seeded.gateway.expiry
    assert watch is not None
    await watch.refresh()
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        await seeded.fault(method="GET", path="/ordermanagement/v1/orders/", action="fail",
                           status=404, times=None)
        assert await watch.refresh() is None
    finally:
        globalLogPublisher.removeObserver(events.append)
    mine = [e for e in events if "expiring" in str(e.get("log_format", ""))]
    assert len(mine) == 1 and mine[0].get("log_failure") is None
    assert "could be read" in mine[0]["e"] and "HTTP 404" in mine[0]["e"]
    assert gauge(await metrics_text(seeded), "3d") == 2.0


@pytest_twisted.ensureDeferred
async def test_a_round_still_running_is_not_started_again(seeded: Harness) -> None:
    await orders_near_expiry(seeded)
    watch = seeded.gateway.expiry
    assert watch is not None
    await watch.refresh()
    await seeded.fault(method="GET", path="/ordermanagement/v1/orders/", action="latency",
                       delay_ms=300, times=None)
    pending = defer.ensureDeferred(watch.refresh())
    await eventually(lambda: watch.running, "the round is running")
    watch._tick()  # what the LoopingCall does when the next round is due
    assert watch.skipped == 1
    assert await pending is not None and not watch.running


@pytest_twisted.ensureDeferred
async def test_expiry_checks_can_be_turned_off(tmp_path: Path) -> None:
    config = load_config(SANDBOX_CONFIG)
    config = replace(config, gateway=replace(config.gateway, expiry_check_seconds=0.0))
    h = await start_gateway(f"sqlite:///{tmp_path}/gateway.db", config=config)
    try:
        assert h.gateway.expiry is None
        assert gauge(await metrics_text(h), "3d") is None
    finally:
        await h.gateway.stop()
