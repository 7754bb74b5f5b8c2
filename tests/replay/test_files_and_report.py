"""Recording files (writer thread, rotation, reading), the edge's ``on_exchange`` hook, the
response parser and parameter replacement, and the report (escaping, JSON)."""
from __future__ import annotations

import json
import xmlrpc.client
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from gateway.cli.record_flags import byte_size
from gateway.edge.resource import Exchange, LegacyResource, Reply, make_site
from gateway.errors import InvalidRequestError, ParseError, UnknownReservationError
from gateway.replay.compare import DIFFERENT, KNOWN, SAME, Outcome, Verdict
from gateway.replay.recording import RecordingError, RecordingWriter, read_recording
from gateway.replay.report import CallResult, Summary, render_html, summary_json
from gateway.replay.runner import outcome_of, prepare
from gateway.testing.processes import run_cli
from gateway.wire.encode import encode_fault, encode_response
from gateway.wire.parse import parse_method_call, parse_method_response, replace_params

DIGEST = "KeS4QOe0pADWVYaFF2Ex9z1+xbVA+zjPWw2/oOEuxOk4YXfvDzDoTi6BuF72IXFTKC4Y94sCaq9vzjGPMeI7Ww=="


def request(method: str = "email_invoice", invno: str = "9000000001") -> bytes:
    return xmlrpc.client.dumps(("4.1", "python:api:3.1.0", 1234, invno, DIGEST), method,
                               encoding="iso-8859-1").encode("latin-1")


def exchange(n: int = 0, *, started: float = 1000.0, fault: int | None = None) -> Exchange:
    reply = encode_fault(fault, "x") if fault else encode_response(f"900000000{n}")
    return Exchange(request=request(invno=f"900000000{n}"), reply=reply, started=started + n,
                    duration=0.0125, path="/", method="email_invoice", eid=1234,
                    fault_code=fault, context={"journal_id": n, "rno": "8", "invno": "9"})


# -- the writer -----------------------------------------------------------------------------


def test_writer_writes_everything_queued_before_close(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path, max_bytes=1 << 20)
    w.start()
    for n in range(200):
        w.submit(exchange(n % 10))
    w.close_sync(10)
    assert w.written == 200 and w.dropped == 0 and w.failed == 0
    [file] = list(tmp_path.glob("recording-*.jsonl"))
    lines = file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 201
    header = json.loads(lines[0])
    assert header == {"kind": "recording", "format": 1, "source": "serve",
                      "started_at": header["started_at"], "file": 1, "upstream": None}
    rec = json.loads(lines[1])
    assert rec["seq"] == 1 and rec["outcome"] == "ok" and rec["duration_ms"] == 12.5
    assert rec["digest"] == {"at": 4, "hash": "sha512", "masked": 1}
    assert rec["context"]["journal_id"] == 0 and rec["body_encoding"] == "latin-1"
    assert DIGEST not in file.read_text(encoding="utf-8")
    w.submit(exchange())  # after close: counted, never written
    assert w.dropped == 1


def test_writer_rotates_and_the_reader_orders_by_start(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path, max_bytes=2048, wall_clock=lambda: 1767268800.0)
    w.start()
    for n in (3, 1, 2, 0, 5, 4):
        w.submit(exchange(n, fault=9109 if n == 5 else None))
    w.close_sync(10)
    files = sorted(tmp_path.glob("*.jsonl"))
    assert [f.name for f in files][:2] == ["recording-20260101T120000Z-1.jsonl",
                                           "recording-20260101T120000Z-2.jsonl"]
    assert all(f.stat().st_size <= 2048 for f in files)
    got = read_recording(tmp_path)
    assert [r.context["journal_id"] for r in got] == [0, 1, 2, 3, 4, 5]
    assert got[5].outcome == "9109" and got[5].hash_name == "sha512"
    assert got[0].request is not None and b"MASKED-DIGEST-sha512" in got[0].request
    assert read_recording(files[0])  # a single file reads too
    # a second recorder in the same second never overwrites: it takes the next numbers
    w2 = RecordingWriter(tmp_path, max_bytes=2048, wall_clock=lambda: 1767268800.0)
    w2.start()
    w2.submit(exchange(9))
    w2.close_sync(10)
    assert len(list(tmp_path.glob("*.jsonl"))) == len(files) + 1


def test_writer_bounds_its_queue(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path, max_queue_bytes=1)  # not started: nothing drains
    w.submit(exchange())
    assert w.dropped == 1


def test_reading_refuses_what_is_no_recording(tmp_path: Path) -> None:
    with pytest.raises(RecordingError):
        read_recording(tmp_path)  # no files
    with pytest.raises(RecordingError):
        read_recording(tmp_path / "missing.jsonl")
    (tmp_path / "recording-x-1.jsonl").write_text("not json\n")
    with pytest.raises(RecordingError, match="not JSON"):
        read_recording(tmp_path)
    (tmp_path / "recording-x-1.jsonl").write_text('{"kind": "recording", "format": 99}\n')
    with pytest.raises(RecordingError, match="format 99"):
        read_recording(tmp_path)


def test_prepare_skips_what_cannot_be_replayed(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path, source="proxy")
    w.start()
    w.submit(Exchange(request=b"{}", reply=b"", started=1, duration=0, path="/", method=None,
                      eid=None, fault_code=None, http_status=502))
    w.submit(Exchange(request=None, reply=encode_fault(-32700, "too large"), started=2,
                      duration=0, path="/", method=None, eid=None, fault_code=None))
    w.submit(Exchange(request=b"<x/>", reply=b"<html/>", started=3, duration=0, path="/",
                      method=None, eid=None, fault_code=None))
    w.submit(Exchange(request=request(), reply=encode_response("9000000001"), started=4,
                      duration=0, path="/", method=None, eid=None, fault_code=None))
    w.close_sync(10)
    recorded = read_recording(tmp_path)
    assert [r.outcome for r in recorded] == ["http-502", "-32700", "unreadable", "ok"]
    assert recorded[3].method == "email_invoice" and recorded[3].eid == 1234
    calls = prepare(recorded)
    assert [c.skip is None for c in calls] == [False, False, False, True]


# -- the edge's hook ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_on_exchange_sees_the_bytes_on_the_wire() -> None:
    seen: list[Exchange] = []

    async def dispatch(method: str, params: list[Any], client: str | None) -> Any:
        if params[3] == "unknown":
            error = UnknownReservationError("rno unknown")
            error.context = {"journal_id": 7, "rno": "unknown", "invno": None}
            raise error
        return Reply("9000000001", context={"journal_id": 6, "rno": "1", "invno": params[3]})
    resource = LegacyResource(dispatch, on_exchange=seen.append)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        make_site(resource))
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/xmlrpc"
        for invno in ("9000000001", "unknown"):
            resp = await treq.post(url, data=request(invno=invno))
            body = await resp.content()
            assert body == seen[-1].reply
    finally:
        await port.stopListening()
    ok_, fault_ = seen
    assert ok_.request == request() and ok_.path == "/xmlrpc" and ok_.method == "email_invoice"
    assert ok_.fault_code is None and ok_.context["journal_id"] == 6 and ok_.duration >= 0
    assert fault_.fault_code == 9109 and fault_.context["journal_id"] == 7
    assert parse_method_response(fault_.reply).fault_code == 9109


# -- wire helpers ---------------------------------------------------------------------------


def test_parse_method_response() -> None:
    r = parse_method_response(encode_response(["ok", "9000000001"]))
    assert r.ok and r.value == ["ok", "9000000001"]
    r = parse_method_response(encode_fault(9109, "unknown_reservation"))
    assert (r.ok, r.fault_code, r.fault_string) == (False, 9109, "unknown_reservation")
    php = (b"<?xml version='1.0'?><methodResponse><params><param><value><double>"
           b"0.1000000000000000055511</double></value></param></params></methodResponse>")
    assert parse_method_response(php).value == Decimal("0.1000000000000000055511")
    string_code = (b"<methodResponse><fault><value><struct><member><name>faultCode</name>"
                   b"<value><string>9103</string></value></member></struct></value></fault>"
                   b"</methodResponse>")
    assert parse_method_response(string_code).fault_code == 9103
    for bad in (request(), b"<methodResponse/>", b"<!DOCTYPE x><x/>", b"not xml"):
        with pytest.raises((ParseError, InvalidRequestError)):
            parse_method_response(bad)


def test_replace_params_keeps_everything_else() -> None:
    body = request()
    out = replace_params(body, {3: "9100000000", 4: "new"})
    method, params = parse_method_call(out)
    assert method == "email_invoice" and params == ["4.1", "python:api:3.1.0", 1234,
                                                    "9100000000", "new"]
    with pytest.raises(ValueError):
        replace_params(body, {9: "x"})


# -- the report -----------------------------------------------------------------------------


def test_report_escapes_everything_and_serialises_exact_values() -> None:
    evil = '<script>alert("x")</script>&amp;'
    summary = Summary(recording="rec<1>", target='http://t/"x"', admin=None,
                      started_at="2026-01-01T00:00:00.000Z", finished_at="later")
    summary.calls = [
        CallResult(n=1, where="f:2", method="invoice_address", eid=1234, recorded_at="t",
                   verdict=Verdict(DIFFERENT, f"replies differ {evil}"),
                   recorded=Outcome(value=[evil, Decimal("1.10"), b"\x00\xff"]),
                   new=Outcome(fault_code=9103, fault_string=evil), params=[evil],
                   rest_requests=[{"method": "POST", "path": f"/o/{evil}", "body": {"a": evil},
                                   "state": "done"}], journal_id=3),
        CallResult(n=2, where="f:3", method="activate", eid=1234, recorded_at="t",
                   verdict=Verdict(KNOWN, "no_risk", "no-risk", "`activate` <never>"),
                   recorded=Outcome(value=["no_risk", "1"]), new=Outcome(value=["ok", "2"]),
                   mapped={"invno 1": "2"}),
        CallResult(n=3, where="f:4", method="x", eid=None, recorded_at="t",
                   verdict=Verdict(SAME, "equal"), recorded=Outcome(error="boom <b>"),
                   new=None, journal_note="not <read>"),
    ]
    html = render_html(summary)
    assert "<script" not in html and "alert(&quot;x&quot;)" in html
    assert "&amp;amp;" in html and "rec&lt;1&gt;" in html and "&lt;never&gt;" in html
    assert "not &lt;read&gt;" in html and "boom &lt;b&gt;" in html
    assert html.count("<table>") == 1 and html.startswith("<!DOCTYPE html>")
    doc = json.loads(summary_json(summary))
    assert doc["counts"] == {"same": 1, "known difference": 1, "different": 1, "skipped": 0}
    assert doc["result"] == "different"
    assert doc["calls"][0]["recorded"]["value"] == [evil, "1.10", {"base64": "AP8="}]
    assert doc["calls"][0]["new"] == {"outcome": "9103", "fault_code": 9103,
                                      "fault_string": evil}
    assert doc["calls"][1]["rule"] == "no-risk"


def test_outcome_of_http_errors_and_unreadable_replies() -> None:
    assert outcome_of(b"", 502).error == "HTTP 502"
    assert outcome_of(b"<html/>").error is not None
    assert outcome_of(encode_response("ok")).value == "ok"


# -- command line ---------------------------------------------------------------------------


def test_byte_sizes() -> None:
    assert byte_size("64MiB") == byte_size("64M") == 64 << 20
    assert byte_size("4096") == 4096 and byte_size("2KiB") == 2048 and byte_size("1G") == 1 << 30
    for bad in ("", "12", "64 parsecs", "-1"):
        with pytest.raises(Exception):
            byte_size(bad)


def test_replay_cli_without_a_recording_exits_2(tmp_path: Path) -> None:
    done = run_cli("replay", str(tmp_path / "none"), "--target", "http://127.0.0.1:9/",
                   "--report", str(tmp_path / "r.html"))
    assert done.returncode == 2 and "no such file" in done.stderr
    assert not (tmp_path / "r.html").exists()
    done = run_cli("record", "--help")
    assert done.returncode == 0 and "--upstream" in done.stdout
    assert "--record-max-bytes" in done.stdout
    done = run_cli("serve", "--help")
    assert done.returncode == 0 and "--record DIR" in done.stdout
    assert "--record-max-bytes" in done.stdout
