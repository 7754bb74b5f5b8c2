"""``klarna-gateway record --upstream`` in front of a fake v2 endpoint, then ``klarna-gateway
replay`` of that recording against the gateway: same / known difference / different, and a
non-zero exit. Both commands run as real processes (the console script's contracts)."""
from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol, reactor, utils
from twisted.web import server

from gateway.replay.masking import mask_generic
from gateway.replay.recording import read_recording
from tests.e2e.sdk import fault_of
from tests.harness import SECRETS, Harness
from tests.replay.fake_v2 import FakeV2

RNO = "7700000001"


class _Cli(protocol.ProcessProtocol):
    """A long-running CLI child: its output, a Deferred for its first matching line and one
    for its exit status."""

    def __init__(self, pattern: str) -> None:
        self.out = b""
        self.err = b""
        self.pattern = re.compile(pattern)
        self.ready: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.out += data
        m = self.pattern.search(self.out.decode("utf-8", "replace"))
        if m and not self.ready.called:
            self.ready.callback(m.group(1))

    def errReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.err += data

    def processEnded(self, reason: Any) -> None:  # noqa: N802 - Twisted API
        code = getattr(reason.value, "exitCode", None)
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"exited {code}: {self.err.decode()[-2000:]}"))
        self.ended.callback(code)


async def _record(upstream: str, out: Path) -> tuple[_Cli, Any, str]:
    cli = _Cli(r"proxy on (\S+)")
    args = [sys.executable, "-m", "gateway.cli", "record", "--upstream", upstream,
            "--listen", "tcp:0:interface=127.0.0.1", "--out", str(out)]
    transport = reactor.spawnProcess(cli, sys.executable, args, env=dict(os.environ),
                                     path=str(Path(__file__).resolve().parents[2]))
    url = await cli.ready
    return cli, transport, url


@pytest_twisted.ensureDeferred
async def test_v2_recording_replayed_against_the_gateway(gw: Harness, tmp_path: Path) -> None:
    fake = FakeV2()
    port = reactor.listenTCP(0, server.Site(fake), interface="127.0.0.1")
    rec = tmp_path / "rec"
    try:
        cli, transport, proxy = await _record(f"http://127.0.0.1:{port.getHost().port}/", rec)
        k = gw.sdk(uri=proxy)
        k.add_art_no(qty=1, artno="ART-1")
        risk, invno = await gw.call(k.activate, RNO)
        assert (risk, invno) == ("no_risk", "555000001")
        k.set_estore_info(orderid1="ERP-7")
        assert (await fault_of(gw, k.update, RNO)).faultCode == 9103
        k.clear()
        assert await gw.call(k.email_invoice, invno) == invno
        k.add_art_no(qty=1, artno="NOPE")
        assert (await fault_of(gw, k.credit_part, invno, "CR-0")).faultCode == 9107
        k.clear()
        k.add_art_no(qty=1, artno="ART-1")
        assert await gw.call(k.credit_part, invno, "CR-1") == invno
        await gw.call(k.extend_expiry_date, RNO)
        await gw.call(k.invoice_amount, invno)
        k.clear()
        assert (await fault_of(gw, k.activate, "8999999999")).faultCode == 9109
        transport.signalProcess(signal.SIGTERM)
        assert await cli.ended == 0, cli.err.decode()
    finally:
        await port.stopListening()
    assert len(fake.calls) == 8 and not fake.bad_digests  # forwarded unchanged

    recorded = read_recording(rec)
    assert [r.method for r in recorded] == [
        "activate", "update", "email_invoice", "credit_part", "credit_part",
        "extend_expiry_date", "invoice_amount", "activate"]
    assert [r.outcome for r in recorded] == ["ok", "9103", "ok", "9107", "ok", "ok", "ok",
                                             "9109"]
    data = b"".join(p.read_bytes() for p in rec.glob("recording-*.jsonl"))
    assert SECRETS[1234].encode() not in data
    assert mask_generic(data)[1] == 0 and data.count(b"MASKED-DIGEST-sha512") == 8
    assert b'"source": "proxy"' in data

    report, summary_path = tmp_path / "report.html", tmp_path / "summary.json"
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "gateway.cli", "replay", str(rec), "--target", gw.url,
                         "--admin", gw.admin, "--admin-token", "sandbox-admin",
                         "--report", str(report), "--summary", str(summary_path)],
        env=dict(os.environ), path=str(Path(__file__).resolve().parents[2]))
    assert code == 1, (out, err)
    assert b"1 different" in out
    summary = json.loads(summary_path.read_text())
    got = [(c["method"], c["verdict"], c["rule"]) for c in summary["calls"]]
    assert got == [
        ("activate", "known difference", "no-risk"),
        ("update", "known difference", "update-after-activation"),
        ("email_invoice", "same", None),
        ("credit_part", "known difference", "credit-unknown-artno"),
        ("credit_part", "same", None),
        ("extend_expiry_date", "known difference", "expiry-from-call-day"),
        ("invoice_amount", "different", None),
        ("activate", "same", None),
    ]
    assert summary["numbers"]["invno"] == {"555000001": "9000000000"}
    assert [s["rno"] for s in summary["seeded"]] == [RNO]
    assert summary["result"] == "different"
    mapping = await gw.mapping(1234, RNO)
    assert mapping["rno"] == RNO and [i["invno"] for i in mapping["invoices"]] == ["9000000000"]
    html = report.read_text(encoding="utf-8")
    for text in ("known difference", "no-risk", "update-after-activation",
                 "credit-unknown-artno", "different", "12345", "POST"):
        assert text in html
    assert "<script" not in html
