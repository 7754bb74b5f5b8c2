"""A recording of the gateway itself (``serve --record``), replayed against a fresh gateway.

Gateway A (seeded sandbox) records an SDK session; gateway B (another seeded sandbox, another
database, invoice numbers from another start) knows none of its reservations. The replay
seeds them through B's admin API under the recorded numbers, maps A's invoice numbers to
B's as B issues them, re-signs every call, and every verdict reads ``same``.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest_twisted

from gateway.calls import REGISTRY
from gateway.config import load_config
from gateway.edge.resource import Exchange
from gateway.replay.compare import SAME
from gateway.replay.masking import mask_generic
from gateway.replay.recording import read_recording
from gateway.replay.report import render_html, summary_json
from gateway.replay.runner import Replayer, ReplayOptions
from gateway.wire.parse import parse_method_call
from tests.harness import SANDBOX_CONFIG, SECRETS, Harness, start_gateway
from tests.replay.scenario import run_session


def sent_digests(gw: Harness, into: list[str]) -> None:
    """Also collect the digests the SDK really sent (to prove none reached the files)."""
    legacy = gw.gateway.legacy
    assert legacy is not None
    record = legacy._on_exchange
    assert record is not None

    def both(exchange: Exchange) -> None:
        if exchange.request:
            method, params = parse_method_call(exchange.request)
            lookup = REGISTRY.lookup(method)
            if lookup is not None and lookup.digest_at is not None:
                into.append(params[lookup.digest_at])
        record(exchange)
    legacy._on_exchange = both


def recording_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.glob("recording-*.jsonl")))


@pytest_twisted.ensureDeferred
async def test_recorded_session_replays_all_same(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    a = await start_gateway(f"sqlite:///{tmp_path}/a.db", sandbox_seed=7, record_dir=str(rec))
    digests: list[str] = []
    try:
        sent_digests(a, digests)
        session = await run_session(a)
    finally:
        await a.gateway.stop()  # a clean stop writes every exchange
    recorded = read_recording(rec)
    assert [r.method for r in recorded] == [
        "update", "activate", "email_invoice", "credit_part", "credit_part",
        "extend_expiry_date", "activate", "activate", "invoice_amount"]
    assert [r.outcome for r in recorded].count("ok") == 7
    assert all(r.context.get("journal_id") for r in recorded if r.outcome == "ok")
    assert recorded[1].context["rno"] == session.rnos[0]
    assert recorded[1].context["invno"] == session.invnos[0]
    data = recording_bytes(rec)
    assert len(digests) == 9
    for digest in digests:
        assert digest.encode() not in data
    for secret in SECRETS.values():
        assert secret.encode() not in data
    assert mask_generic(data)[1] == 0, "a digest-shaped value is in the recording"
    assert data.count(b"MASKED-DIGEST-sha512") == 9
    assert "Blåbärssylt".encode("utf-8") in data  # Latin-1 bodies stored losslessly
    assert recorded[0].request is not None and "Blåbärssylt".encode("latin-1") in \
        recorded[0].request

    config = load_config(SANDBOX_CONFIG)
    config_b = replace(config, gateway=replace(config.gateway, invno_start=9100000000))
    b = await start_gateway(f"sqlite:///{tmp_path}/b.db", config=config_b, sandbox_seed=7)
    try:
        summary = await Replayer(config, ReplayOptions(
            recording=str(rec), target=b.url, admin=b.admin, admin_token="sandbox-admin",
        )).run()
    finally:
        await b.gateway.stop()
    assert not b.violations
    verdicts = [(c.method, c.verdict.verdict, c.verdict.reason) for c in summary.calls]
    assert all(v == SAME for _, v, _ in verdicts), verdicts
    assert summary.counts == {"same": 9, "known difference": 0, "different": 0, "skipped": 0}
    assert not summary.problems
    assert [s["rno"] for s in summary.seeded] == session.rnos
    assert [s["registered_rno"] for s in summary.seeded] == session.rnos
    assert summary.numbers["invno"] == {session.invnos[0]: "9100000000",
                                        session.invnos[1]: "9100000001"}
    activate = summary.calls[1]
    assert activate.new is not None and activate.new.value == ["ok", "9100000000"]
    assert activate.rest_requests is not None
    assert [s["method"] for s in activate.rest_requests] == ["POST"]
    assert activate.rest_requests[0]["path"].endswith("/captures")
    credit = summary.calls[4]
    assert credit.mapped == {f"invno {session.invnos[0]}": "9100000000"}
    assert credit.rest_requests and credit.rest_requests[0]["path"].endswith("/refunds")
    unknown = summary.calls[6]
    assert unknown.new is not None and unknown.new.fault_code == 9109
    assert unknown.rest_requests == [] and unknown.journal_id is not None  # no REST request
    doc = json.loads(summary_json(summary))
    assert doc["result"] == "ok" and len(doc["calls"]) == 9
    html = render_html(summary)
    assert "same: 9" in html and "MASKED-DIGEST-sha512" in html
    assert all(d not in html for d in digests)


@pytest_twisted.ensureDeferred
async def test_recorder_rotates_files_by_size(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    gw = await start_gateway(f"sqlite:///{tmp_path}/g.db", record_dir=str(rec),
                             record_max_bytes=4096)
    try:
        created = await gw.create_order()
        k = gw.sdk()
        for _ in range(6):
            await gw.call(k.extend_expiry_date, created["rno"])
    finally:
        await gw.gateway.stop()
    files = sorted(rec.glob("recording-*.jsonl"))
    assert len(files) >= 2
    assert all(f.stat().st_size <= 4096 for f in files)
    names = [f.name for f in files]
    stamp = names[0].split("-")[1]
    assert set(names) == {f"recording-{stamp}-{n}.jsonl" for n in range(1, len(files) + 1)}
    first: Any = json.loads(files[0].read_text().splitlines()[0])
    assert first["kind"] == "recording" and first["source"] == "serve"
    assert [r.method for r in read_recording(rec)] == ["extend_expiry_date"] * 6
