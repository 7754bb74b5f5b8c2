"""Masking with no gaps: a digest built into a body the gateway cannot parse never reaches
a recording, a replay report, the journal or a log line.

The example is the review's (the digest in ``<![CDATA[…]]>``, trailing junk). The property
builds real digests (every hash the SDKs use, random secrets and parts) into arbitrary
malformed bodies (CDATA, character references, attributes, comments, the method name,
base64 text right against it, truncation, junk before and after), sends each to a real
gateway recording with ``serve --record``, and looks for the digest, as written and with
XML character references decoded, in the recording line, the log events of the request,
then the journal and the HTML and JSON replay reports of the whole recording.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.replay.masking import mask_request
from gateway.store.search import JournalQuery
from gateway.testing.processes import run_cli, write_config
from gateway.wire.parse import parse_method_call
from tests.live import LiveGateway, event_text

HASHES = ("md5", "sha224", "sha256", "sha384", "sha512")
B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def make_digest(parts: list[str], secret: str, hash_name: str) -> str:
    text = ":".join([*parts, secret]).encode("latin-1")
    return base64.b64encode(hashlib.new(hash_name, text).digest()).decode("ascii")


def call_body(inner: bytes, method: bytes = b"check_order_status") -> bytes:
    return (b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<methodCall><methodName>' + method
            + b"</methodName><params><param><value><string>4.1</string></value></param>"
            + b"<param><value><string>py:3.1.0</string></value></param>"
            + b"<param><value><int>1234</int></value></param>"
            + b"<param><value>" + inner + b"</value></param>"
            + b"<param><value><string>8000000000</string></value></param>"
            + b"<param><value><int>0</int></value></param></params></methodCall>")


def unparseable(body: bytes) -> bool:
    try:
        parse_method_call(body)
    except GatewayError:
        return True
    return False


def leaks(digest: str, text: str) -> bool:
    return digest in text or digest in html.unescape(text)


def test_the_reviews_example_is_masked() -> None:
    """Before: the digest in CDATA with trailing junk was recorded as it was."""
    digest = make_digest(["1234", "8000000000"], "sandbox-secret", "sha512")
    body = call_body(b"<string><![CDATA[" + digest.encode() + b"]]></string>") + b"junk<"
    assert unparseable(body)
    masked = mask_request(body)
    assert digest.encode() not in masked.body and masked.masked == 1
    assert b"MASKED-DIGEST-sha512" in masked.body


def wrap(digest: bytes, how: str) -> bytes:
    refs = b"".join(b"&#%d;" % c for c in digest)
    return {
        "bare": digest,
        "string": b"<string>" + digest + b"</string>",
        "cdata": b"<string><![CDATA[" + digest + b"]]></string>",
        "cdata-bare": b"<![CDATA[" + digest + b"]]>",
        "refs": b"<string>" + refs + b"</string>",
        "hex-refs": b"<string>" + b"".join(b"&#x%x;" % c for c in digest) + b"</string>",
        "attribute": b'<string a="' + digest + b'"/>',
        "comment": b"<!-- " + digest + b" -->",
        "spaced": b"<string>\n  " + digest + b"\n</string>",
    }[how]


@st.composite
def malformed(draw: Any) -> tuple[str, bytes]:
    digest = make_digest(draw(st.lists(st.text(alphabet=st.characters(max_codepoint=255),
                                                   max_size=12), max_size=4)),
                         draw(st.text(alphabet=st.characters(min_codepoint=33,
                                                             max_codepoint=255),
                                      min_size=1, max_size=24)),
                         draw(st.sampled_from(HASHES)))
    raw = digest.encode("ascii")
    inner = wrap(raw, draw(st.sampled_from(["bare", "string", "cdata", "cdata-bare", "refs",
                                            "hex-refs", "attribute", "comment", "spaced"])))
    glued = draw(st.binary(max_size=6).map(lambda b: bytes(B64[c % 64] for c in b)))
    where = draw(st.sampled_from(["value", "method", "alone"]))
    if where == "value":
        body = call_body(glued + inner + glued)
    elif where == "method":
        body = call_body(b"<string>x</string>", method=glued + raw + glued)
    else:
        body = glued + inner + glued
    junk = draw(st.binary(max_size=16))
    cut = draw(st.sampled_from(["junk-after", "junk-before", "truncate", "both"]))
    end = body.find(raw) + len(raw) if raw in body else len(body)
    if cut == "junk-after":
        body = body + junk + b"<"
    elif cut == "junk-before":
        body = junk + b"<" + body
    elif cut == "truncate":
        body = body[:draw(st.integers(min_value=min(end + 40, len(body)),
                                      max_value=len(body)))] + b"<!"
    else:
        body = junk + body + junk + b"</"
    return digest, body


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    directory = tmp_path_factory.mktemp("masking")
    gw = LiveGateway.start(directory, record_dir=str(directory / "rec"))
    try:
        yield gw
    finally:
        gw.stop()


def latest_record(gw: LiveGateway, count: int) -> dict[str, Any]:
    recorder = gw.gateway.recorder
    deadline = time.monotonic() + 10
    while recorder.written < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.written == count
    recorder_file = recorder.files[-1]
    while True:  # ``written`` counts lines handed to the file: wait until it holds them
        # split on "\n" only: a JSON line may hold U+0085 or U+2028, which splitlines() cuts
        text = recorder_file.read_text(encoding="utf-8")
        if text.endswith("\n") or time.monotonic() > deadline:
            *_, last = text.rstrip("\n").split("\n")
            return dict(json.loads(last))
        time.sleep(0.01)


def test_digests_in_malformed_bodies_never_reach_files_or_logs(recording: LiveGateway,
                                                                tmp_path: Path) -> None:
    gw, sent = recording, []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=malformed())
    def one(case: tuple[str, bytes]) -> None:
        digest, body = case
        assume(unparseable(body))
        gw.take_events()
        gw.request("legacy", b"POST", b"/", body, {b"Content-Type": b"text/xml"})
        sent.append(digest)
        record = latest_record(gw, len(sent))
        for name in ("request", "reply", "method"):
            assert not leaks(digest, str(record.get(name))), (name, body, record)
        assert not leaks(digest, json.dumps(record, ensure_ascii=False)), (body, record)
        logged = [event_text(e) for e in gw.take_events()]
        assert not any(leaks(digest, line) for line in logged), (body, logged)

    one()
    assert sent
    page = gw.call(gw.gateway.store.search_journal, JournalQuery(limit=500))
    journal = json.dumps([repr(e) for e in page.entries], ensure_ascii=False)
    assert not [d for d in sent if leaks(d, journal)]
    gw.sandbox.runner.call(gw.gateway.recorder.close, gw.sandbox.runner.reactor)
    config = write_config(tmp_path / "gw.toml", gw.sandbox.url)
    report, summary = tmp_path / "report.html", tmp_path / "summary.json"
    done = run_cli("replay", str(gw.directory / "rec"), "--target", gw.gateway.legacy_url,
                   "--config", str(config), "--report", str(report),
                   "--summary", str(summary), "--no-progress")
    assert done.returncode in (0, 1), done.stderr
    for text in (report.read_text(encoding="utf-8"), summary.read_text(encoding="utf-8"),
                 done.stdout, done.stderr):
        assert not [d for d in sent if leaks(d, text)]
