"""Seeded mode: two fresh sandboxes with one seed give byte-identical transcripts.

The scripted suite talks real HTTP (treq) to real listeners on loopback and records every
response completely: status, every header in wire order (Date, Location, Capture-Id...) and
the body. It sends a fixed ``Host`` header, because ``Location`` echoes the host the client
asked for and two ephemeral listeners have different ports.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor

from gateway.cli import build_parser
from gateway.config import default_sandbox_config_path, load_config
from gateway.sandbox.clock import SEEDED_EPOCH, format_timestamp, parse_timestamp
from gateway.sandbox.ids import REFERENCE_ALPHABET, IdKind, IdSource, configured_seed
from gateway.sandbox.service import listen_sandbox, make_sandbox_site, run_sandbox
from tests.sandbox.support import (
    SandboxRunner,
    PAY_TOKEN,
    TOKEN,
    TOKEN_ORDER,
    TOKEN_STATUS,
    start_seeded_sandbox,
    token_creation_body,
    token_order_body,
)
from tests.sandbox_fixtures import (
    RunningSandbox,
    basic_auth,
    order_body,
    start_sandbox,
    stop_sandbox,
)

OM = "/ordermanagement/v1/orders/"
PAY = "/payments/v1/authorizations/{}/order"
HOST = "sandbox.test:8089"
ADMIN = "Bearer sandbox-admin"
MERCHANT = basic_auth("PK1234_sandbox", "sandbox-password")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class Transcript:
    """Drives one sandbox and records each exchange as one canonical line."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.lines: list[str] = []

    async def send(self, method: str, path: str, body: Any = None, *,
                   authorization: str = MERCHANT, key: str | None = None) -> dict[str, Any]:
        headers = {"Host": HOST, "Authorization": authorization}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        if key is not None:
            headers["Klarna-Idempotency-Key"] = key
        response = await self.sandbox.http.request(method, self.sandbox.url + path, data=data,
                                                   headers=headers)
        content = await response.content()
        raw = [(name.decode(), [v.decode() for v in values])
               for name, values in response.headers.getAllRawHeaders()]
        self.lines.append(f"{method} {path} -> {response.code} {raw} {content.decode()}")
        return {"status": response.code, "headers": {k.lower(): v[0] for k, v in raw},
                "json": json.loads(content) if content else None}

    async def control(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        return await self.send(method, path, body, authorization=ADMIN)


async def regression_suite(t: Transcript) -> None:
    """A small suite touching every kind of generated id, errors, faults and the clock."""
    await t.control("GET", "/sandbox/v1/clock")
    first = (await t.send("POST", PAY.format("auth-1"), order_body(10000)))["json"]["order_id"]
    pending = (await t.send("POST", PAY.format("pending-1"), order_body(3000)))["json"]
    token = (await t.send("POST", PAY_TOKEN.format("auth-2"),
                          token_creation_body()))["json"]["token_id"]
    await t.send("POST", TOKEN_ORDER.format(token), token_order_body(2500, auto_capture=True))
    await t.send("GET", OM + first)
    await t.send("POST", f"{OM}{first}/captures", {"captured_amount": 6000}, key="cap-1")
    await t.send("POST", f"{OM}{first}/captures", {"captured_amount": 99999})  # 403
    await t.send("GET", OM + "no-such-order")  # 404
    await t.send("POST", f"{OM}{first}/refunds", {"refunded_amount": 1000})
    await t.control("POST", "/sandbox/v1/faults",
                    {"method": "POST", "path": "/captures$", "action": "fail", "status": 503})
    await t.send("POST", f"{OM}{first}/captures", {"captured_amount": 4000}, key="cap-2")
    await t.send("POST", f"{OM}{first}/captures", {"captured_amount": 4000}, key="cap-2")
    await t.control("POST", "/sandbox/v1/clock", {"advance_seconds": 29 * 86400})
    await t.send("GET", OM + pending["order_id"])  # EXPIRED by now
    await t.send("GET", OM + first)
    await t.send("GET", f"{OM}{first}/captures")
    await t.send("PATCH", TOKEN_STATUS.format(token), {"status": "CANCELLED"})
    await t.send("GET", TOKEN.format(token))
    await t.send("POST", TOKEN_ORDER.format(token), token_order_body())  # 403
    await t.send("GET", OM + first, authorization=basic_auth("PK1234_sandbox", "wrong"))
    await t.control("GET", f"/sandbox/v1/orders/{first}/operations")


async def run_fresh(seed: int | None) -> list[str]:
    """The suite against a freshly started sandbox (seeded via ``[sandbox] seed``)."""
    sandbox = await (start_seeded_sandbox(seed) if seed is not None else start_sandbox())
    try:
        transcript = Transcript(sandbox)
        await regression_suite(transcript)
    finally:
        await stop_sandbox(sandbox)
    assert not sandbox.violations, sandbox.violations
    return transcript.lines


def ids_in(lines: list[str]) -> set[str]:
    return set(UUID.findall("\n".join(lines)))


@pytest_twisted.ensureDeferred
async def test_same_seed_gives_byte_identical_transcripts():
    """Two fresh sandboxes, seed 7: every response, header and timestamp is the same; the
    clock starts at the documented epoch and only the control API moves it."""
    first = await run_fresh(7)
    second = await run_fresh(7)
    assert first == second
    text = "\n".join(first)
    assert len(ids_in(first)) >= 8  # orders, captures, refunds, token, correlation ids
    assert "Capture-Id" in text and "Refund-Id" in text and f"http://{HOST}/" in text
    assert format_timestamp(SEEDED_EPOCH) in first[0]
    assert '"frozen": true' in first[0]
    assert "Thu, 01 Jan 2026 12:00:00 GMT" in first[1]  # Date header = sandbox time
    assert "Fri, 30 Jan 2026 12:00:00 GMT" in first[-2]  # after the 29-day advance
    assert '"status": "EXPIRED"' in text


@pytest_twisted.ensureDeferred
async def test_different_seed_gives_different_ids():
    """Seed 8 gives none of seed 7's ids; unseeded runs differ from each other."""
    seven, eight = await run_fresh(7), await run_fresh(8)
    assert seven != eight
    assert ids_in(seven).isdisjoint(ids_in(eight))
    assert ids_in(await run_fresh(None)).isdisjoint(ids_in(await run_fresh(None)))


@pytest_twisted.ensureDeferred
async def test_reset_restarts_streams_clock_and_fault_numbers():
    """A seeded sandbox after POST /sandbox/v1/reset repeats a fresh sandbox's transcript."""
    sandbox = await start_seeded_sandbox(7)
    try:
        before = Transcript(sandbox)
        await regression_suite(before)
        reset = await before.control("POST", "/sandbox/v1/reset")
        assert reset["status"] == 204
        after = Transcript(sandbox)
        await regression_suite(after)
    finally:
        await stop_sandbox(sandbox)
    assert not sandbox.violations, sandbox.violations
    assert before.lines[:-1] == after.lines
    assert '"id": "fault-1"' in "\n".join(after.lines)


async def _money_ids(sandbox: RunningSandbox, noisy: bool) -> list[str]:
    """Order, capture and refund ids of a fixed flow, optionally with errors in between."""
    t = Transcript(sandbox)
    ids = []
    for n in range(3):
        if noisy:
            await t.send("GET", OM + "nothing")
            await t.send("POST", PAY.format(f"rejected-{n}"), order_body())
            await t.send("POST", PAY.format("bad"), {"order_amount": "x"})
            await t.control("POST", "/sandbox/v1/faults",
                            {"path": "/refunds$", "action": "rate_limit"})
        order = (await t.send("POST", PAY.format(f"a-{n}"), order_body()))["json"]["order_id"]
        if noisy:
            await t.send("POST", f"{OM}{order}/captures", {"captured_amount": 10**6})
            await t.send("POST", f"{OM}{order}/refunds", {"refunded_amount": 1})  # 429
        capture = await t.send("POST", f"{OM}{order}/captures", {"captured_amount": 500})
        refund = await t.send("POST", f"{OM}{order}/refunds", {"refunded_amount": 100})
        ids += [order, capture["headers"]["capture-id"], refund["headers"]["refund-id"]]
    return ids


@pytest_twisted.ensureDeferred
async def test_errors_do_not_shift_other_id_streams():
    """Each kind of id has its own stream: refusals, faults and extra error responses in
    between leave the order, capture and refund ids unchanged."""
    quiet, noisy = await start_seeded_sandbox(3), await start_seeded_sandbox(3)
    try:
        assert await _money_ids(quiet, noisy=False) == await _money_ids(noisy, noisy=True)
    finally:
        await stop_sandbox(quiet)
        await stop_sandbox(noisy)
    assert not quiet.violations and not noisy.violations, quiet.violations + noisy.violations


@pytest_twisted.ensureDeferred
async def test_unseeded_sandbox_keeps_real_time():
    """Without a seed the clock ticks from the wall clock (and Date follows it)."""
    sandbox = await start_sandbox()
    try:
        assert sandbox.resource.seed is None and not sandbox.clock.frozen
        assert abs((sandbox.clock.now() - datetime.now(UTC)).total_seconds()) < 5
        reply = await sandbox.control("GET", "/sandbox/v1/clock")
        assert reply.json()["frozen"] is False
        await sandbox.advance(86400)
        await sandbox.control("POST", "/sandbox/v1/reset")
        assert (sandbox.clock.now() - datetime.now(UTC)).total_seconds() > 86000  # kept
    finally:
        await stop_sandbox(sandbox)


# --- where the seed comes from ---

def _config(seed: int | None = None) -> Any:
    config = load_config(default_sandbox_config_path())
    if seed is None:
        return config
    return replace(config, sandbox=replace(config.sandbox, seed=seed))


def test_seed_keyword_overrides_the_config():
    """``seed=`` on the builders wins over ``[sandbox] seed``; unset config means unseeded."""
    assert make_sandbox_site(_config(), reactor).resource.seed is None
    assert configured_seed(_config().sandbox) is None
    assert make_sandbox_site(_config(5), reactor).resource.seed == 5
    assert make_sandbox_site(_config(5), reactor, seed=6).resource.seed == 6
    assert make_sandbox_site(_config(), reactor, seed=0).resource.seed == 0
    seeded = make_sandbox_site(_config(), reactor, seed=0).resource
    assert seeded.clock.frozen and seeded.clock.now() == SEEDED_EPOCH
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError):
            make_sandbox_site(_config(), reactor, seed=bad)


@pytest_twisted.ensureDeferred
async def test_listen_sandbox_takes_a_seed():
    """listen_sandbox(seed=N): the first order id is the same in two listeners."""
    import treq

    order_ids = []
    for _ in range(2):
        port = await listen_sandbox(reactor, _config(), "tcp:0:interface=127.0.0.1", seed=11)
        try:
            assert port.factory.resource.seed == 11
            response = await treq.post(
                f"http://127.0.0.1:{port.getHost().port}{PAY.format('t')}",
                json=order_body(), auth=("PK1234_sandbox", "sandbox-password"), persistent=False)
            order_ids.append((await response.json())["order_id"])
        finally:
            await port.stopListening()
    assert order_ids[0] == order_ids[1] and UUID.fullmatch(order_ids[0])


def test_cli_sandbox_accepts_seed(capsys):
    """``klarna-gateway sandbox --seed N`` parses; a negative seed exits 1 before listening."""
    args = build_parser().parse_args(["sandbox", "--seed", "42"])
    assert args.seed == 42
    assert build_parser().parse_args(["sandbox"]).seed is None
    assert run_sandbox("tcp:0:interface=127.0.0.1", seed=-4) == 2
    assert "seed" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_cli_seeded_process_matches_an_in_process_sandbox():
    """A separate ``klarna-gateway sandbox --seed 7`` process (its own hash seed) hands out
    the same ids and timestamps as an in-process sandbox with seed 7."""
    import treq

    runner = SandboxRunner(
        "from gateway.cli import main; raise SystemExit(main(['sandbox', '--seed', '7', "
        "'--listen', 'tcp:0:interface=127.0.0.1']))", PYTHONHASHSEED="random")
    local = await start_seeded_sandbox(7)
    try:
        url = await runner.url.addTimeout(15, reactor)
        assert b"seed 7" in runner.stderr
        answers = []
        for base in (url, local.url):
            response = await treq.post(f"{base}{PAY.format('t')}", json=order_body(),
                                       auth=("PK1234_sandbox", "sandbox-password"),
                                       persistent=False)
            order_id = (await response.json())["order_id"]
            read = await treq.get(f"{base}{OM}{order_id}",
                                  auth=("PK1234_sandbox", "sandbox-password"), persistent=False)
            answers.append(await read.json())
        assert answers[0] == answers[1]
        assert parse_timestamp(answers[0]["created_at"]) == SEEDED_EPOCH
    finally:
        await stop_sandbox(local)
        ended = await runner.stop()
    assert ended == 0


# --- the id source itself ---

seeds = st.integers(min_value=0, max_value=2**64)
kinds = st.sampled_from(list(IdKind))


@given(seed=seeds, kind=kinds)
def test_seeded_ids_are_uuid4_and_repeatable(seed, kind):
    """Any seed: ids are version-4 UUIDs, the same sequence every time and after restart."""
    source = IdSource(seed)
    drawn = [source.new(kind) for _ in range(5)]
    assert all(UUID.fullmatch(i) for i in drawn) and len(set(drawn)) == 5
    assert [IdSource(seed).new(kind) for _ in range(1)] == drawn[:1]
    source.restart()
    assert [source.new(kind) for _ in range(5)] == drawn


@given(seed=seeds, noise=st.lists(kinds, max_size=6))
def test_streams_are_independent(seed, noise):
    """Drawing other kinds of ids in between never changes the order id stream."""
    plain, noisy = IdSource(seed), IdSource(seed)
    expected = [plain.order_id() for _ in range(3)]
    got = []
    for _ in range(3):
        for kind in noise:
            if kind is not IdKind.ORDER:
                noisy.new(kind)
        got.append(noisy.order_id())
    assert got == expected


@given(seed=seeds)
def test_seeds_differ_and_references_are_klarna_shaped(seed):
    """Neighbouring seeds start differently; references are 7 characters of the alphabet."""
    assert IdSource(seed).order_id() != IdSource(seed + 1).order_id()
    reference = IdSource(seed).reference()
    assert len(reference) == 7 and set(reference) <= set(REFERENCE_ALPHABET)


def test_unseeded_source_is_random_and_seeds_are_checked():
    """No seed: fresh uuid4 every time; a negative or non-integer seed is refused."""
    source = IdSource()
    assert source.seed is None and source.order_id() != source.order_id()
    for bad in (-1, "7", 2.0, False):
        with pytest.raises(ValueError):
            IdSource(bad)
