"""``klarna-gateway replay``: send a recording's calls to a target, in order, and judge them.

For each recorded exchange, in the order the calls started:

1. decode the stored request (its digest is a placeholder) and the recorded reply;
2. map the number it names (:class:`~gateway.replay.compare.NumberMap`), re-sign it with the
   configured merchant's secret (:mod:`gateway.replay.resign`) and send it, the rest of the
   body byte for byte as recorded;
3. learn the invoice number the reply issues, judge the replies
   (:func:`~gateway.replay.compare.judge`), and with an admin API read the REST requests the
   target's journal holds for the call.

Before the first call, with an admin API: the reservations the recording implies
(:mod:`gateway.replay.seed`) that the target does not know are created when the target runs
a sandbox (``POST /v1/sandbox/orders`` with the recorded ``rno``; a target that answers 404
there runs none), and the newest journal id per eid is noted, so an entry newer than it is
the replayed call's (the journal API is read with ``GET /v1/journal?eid=&method=&limit=1``).
A replay assumes nobody else uses those eids on the target meanwhile.

Without an admin API nothing is seeded: when the target answers "unknown reservation"
(9109) for a reservation the recording shows existing, the replay stops there with
:class:`MissingOrders`, which says which reservations the target must hold and how to seed
them, instead of judging every later call on that reservation ``different``.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import treq
from twisted.logger import Logger

from gateway.config import Config
from gateway.errors import FaultCode, GatewayError
from gateway.replay.compare import (
    DIFFERENT, SKIPPED, NumberMap, Outcome, Verdict, judge, learn, mapped_values, number_ref,
)
from gateway.replay.masking import hash_of_placeholder
from gateway.replay.recording import Recorded, iso, read_recording
from gateway.replay.report import CallResult, Summary
from gateway.replay.resign import ResignError, digest_rule, resign
from gateway.replay.seed import Parsed, SeedOrder, seed_orders
from gateway.wire.parse import parse_method_call, parse_method_response, replace_params

log = Logger()

CONTENT_TYPE = b"text/xml"
USER_AGENT = b"klarna-gateway-replay"


@dataclass
class ReplayOptions:
    recording: str
    target: str
    admin: str | None = None
    admin_token: str | None = None
    progress: bool = False
    timeout: float = 60.0


class MissingOrders(Exception):
    """The target does not hold a reservation the recording used, and no ``--admin`` was
    given to seed it: the replay stopped after ``sent`` calls (this one refused, so nothing
    changed on the target)."""

    def __init__(self, eid: int, rno: str, recorded: str, needed: Sequence[SeedOrder],
                 sent: int) -> None:
        super().__init__(f"the target does not hold reservation {rno} (eid {eid})")
        self.eid, self.rno, self.recorded, self.needed, self.sent = (
            eid, rno, recorded, tuple(needed), sent)

    def explanation(self) -> list[str]:
        """What is missing and how to seed it, one line each (for a person at a terminal)."""
        names = ", ".join(f"{s.rno} (eid {s.eid})" for s in self.needed[:10])
        more = f" and {len(self.needed) - 10} more" if len(self.needed) > 10 else ""
        return [
            f"{self}: it answered fault {int(FaultCode.RNO)} (unknown reservation) where the "
            f"recording has {self.recorded!r}; stopped after {self.sent} call(s), no report "
            "written",
            f"the recording uses {len(self.needed)} reservation(s) the target must hold: "
            f"{names}{more}",
            "to create them on a sandbox target (serve --sandbox), run the replay again with "
            "the target's admin API: --admin http://127.0.0.1:8081 --admin-token TOKEN "
            "(serve --sandbox's demo token is sandbox-admin; else the target's admin_token): "
            "each order is created under its recorded rno before the first call",
            "or seed them yourself: POST /v1/sandbox/orders on the admin API with "
            '{"eid", "rno", the order lines} for each, or, on a gateway in front of Klarna, '
            "klarna-gateway reservations add --eid EID --order-id ORDER_ID --rno RNO "
            "(docs/migration-guide.md#compare-record-and-replay)",
        ]


@dataclass
class _Call:
    recorded: Recorded
    method: str = ""
    params: list[Any] = field(default_factory=list)
    outcome: Outcome | None = None
    skip: str | None = None


def outcome_of(reply: bytes, http_status: int = 200) -> Outcome:
    """A reply's :class:`Outcome` (an HTTP error or unreadable XML is an ``error``)."""
    if http_status != 200:
        return Outcome(error=f"HTTP {http_status}")
    try:
        r = parse_method_response(reply)
    except GatewayError as err:
        return Outcome(error=f"unreadable reply: {err.fault_string}")
    return Outcome(value=r.value, fault_code=r.fault_code, fault_string=r.fault_string)


def prepare(recorded: Sequence[Recorded]) -> list[_Call]:
    """Decode every recorded exchange; the ones that cannot be replayed say why."""
    calls = []
    for r in recorded:
        c = _Call(r)
        calls.append(c)
        if r.request is None:
            c.skip = "the request was not recorded (over the size limit)"
        elif r.http_status != 200:
            c.skip = f"recorded HTTP {r.http_status}: no XML-RPC reply to compare"
        else:
            try:
                c.method, c.params = parse_method_call(r.request)
            except GatewayError as err:
                c.skip = f"the recorded request is no XML-RPC call: {err.fault_string}"
                continue
            c.outcome = outcome_of(r.reply)
            if c.outcome.error is not None:
                c.skip = f"the recorded reply is not XML-RPC: {c.outcome.error}"
    return calls


class Replayer:
    """One replay run (state: the number map, journal watermarks, the summary)."""

    def __init__(self, config: Config, options: ReplayOptions, http: Any = None) -> None:
        self.config = config
        self.options = options
        self.http = http or treq
        self.numbers = NumberMap()
        self.watermark: dict[int, int] = {}
        token = options.admin_token or config.gateway.admin_token
        self.admin_headers = {b"Authorization": [f"Bearer {token}".encode()]}
        self.summary = Summary(recording=options.recording, target=options.target,
                               admin=options.admin, started_at=iso(time.time()))

    async def run(self) -> Summary:
        calls = prepare(read_recording(self.options.recording))
        parsed = [Parsed(c.method, c.params, c.recorded.eid, c.outcome, c.recorded.context)
                  for c in calls if c.skip is None and c.outcome is not None]
        needed = seed_orders(parsed)
        unseeded = not self.options.admin  # (an admin API that refuses the token: a problem)
        if self.options.admin:
            await self._seed(needed)
            for eid in sorted({p.eid for p in parsed if p.eid is not None}):
                self.watermark[eid] = await self._newest_journal_id(eid, None) or 0
        bar = _progress(len(calls)) if self.options.progress else None
        try:
            for n, c in enumerate(calls, 1):
                self.summary.calls.append(result := await self._one(n, c))
                if unseeded:
                    self._check_held(n, c, result, needed)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        self.summary.numbers = self.numbers.as_json()
        self.summary.finished_at = iso(time.time())
        return self.summary

    # -- one call ----------------------------------------------------------------------

    async def _one(self, n: int, c: _Call) -> CallResult:
        r = c.recorded
        result = CallResult(n=n, where=r.where, method=c.method or (r.method or "?"),
                            eid=r.eid, recorded_at=iso(r.started),
                            verdict=Verdict(SKIPPED, c.skip or ""), recorded=c.outcome,
                            params=c.params, recorded_journal_id=r.context.get("journal_id"),
                            recorded_duration_ms=r.duration_ms)
        if c.skip is not None or c.outcome is None or r.request is None:
            return result
        replacements, ref = mapped_values(c.method, c.params, self.numbers)
        if ref is not None and replacements:
            result.mapped[f"{ref.kind} {ref.value}"] = next(iter(replacements.values()))
            result.params = [replacements.get(i, v) for i, v in enumerate(c.params)]
        body = self._signed(c, replacements, result)
        started = time.monotonic()
        new = await self._send(body)
        result.duration_ms = round((time.monotonic() - started) * 1000, 3)
        result.new = new
        conflict = learn(c.method, c.outcome, new, self.numbers)
        if conflict:
            result.notes.append(conflict)
        result.verdict = judge(c.method, c.outcome, new, self.numbers)
        if self.options.admin and new.error is None and r.eid is not None:
            await self._journal(result, r.eid, c.method, ref, replacements)
        return result

    def _check_held(self, n: int, c: _Call, result: CallResult,
                    needed: Sequence[SeedOrder]) -> None:
        """Raise :class:`MissingOrders` when the target did not know a reservation that the
        recording shows existing (and the recorded call got another answer)."""
        new, recorded = result.new, c.outcome
        if new is None or recorded is None or new.fault_code != FaultCode.RNO \
                or recorded.fault_code == FaultCode.RNO or c.recorded.eid is None:
            return
        ref = number_ref(c.method, c.params)
        if ref is None or ref.kind not in ("rno", "any"):
            return
        if any(s.eid == c.recorded.eid and s.rno == ref.value for s in needed):
            raise MissingOrders(c.recorded.eid, ref.value, recorded.label, needed, n)

    def _signed(self, c: _Call, replacements: dict[int, str], result: CallResult) -> bytes:
        """The body to send: numbers mapped, digest rebuilt where the recording masked it."""
        values = dict(replacements)
        rule = digest_rule(c.method)
        merchant = self.config.merchant(c.recorded.eid) if c.recorded.eid is not None else None
        if rule is None:
            result.notes.append("sent as recorded: the method declares no digest rule")
        elif rule[0] < len(c.params):
            hash_name = hash_of_placeholder(c.params[rule[0]])
            if hash_name is None:
                result.notes.append("digest not re-signed: the recorded one was no digest")
            elif merchant is None:
                result.notes.append(f"digest not re-signed: eid {c.recorded.eid} is not "
                                    "configured here")
            else:
                mapped = [values.get(i, v) for i, v in enumerate(c.params)]
                try:
                    position, digest = resign(c.method, mapped, merchant.secret_bytes,
                                              hash_name)
                    values[position] = digest
                except ResignError as err:
                    result.notes.append(f"digest not re-signed: {err}")
        assert c.recorded.request is not None
        if not values:
            return c.recorded.request
        return replace_params(c.recorded.request, values)

    async def _send(self, body: bytes) -> Outcome:
        try:
            response = await self.http.request(
                "POST", self.options.target, data=body,
                headers={b"Content-Type": [CONTENT_TYPE], b"User-Agent": [USER_AGENT]},
                timeout=self.options.timeout)
            reply = await response.content()
        except Exception as err:  # noqa: BLE001 - any transport failure is this call's error
            return Outcome(error=f"{type(err).__name__}: {err}"[:300])
        return outcome_of(reply, response.code)

    # -- admin API -----------------------------------------------------------------------

    async def _admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.options.admin is not None
        url = self.options.admin.rstrip("/") + path
        kwargs: dict[str, Any] = {"headers": self.admin_headers,
                                  "timeout": self.options.timeout}
        if body is not None:
            kwargs["json"] = body
        response = await self.http.request(method, url, **kwargs)
        try:
            data = await response.json()
        except Exception:  # noqa: BLE001 - not JSON: keep the status only
            data = None
        return response.code, data

    async def _seed(self, seeds: list[SeedOrder]) -> None:
        for seed in seeds:
            code, _ = await self._admin(
                "GET", f"/v1/reservations/{seed.eid}/{quote(seed.rno, safe='')}")
            if code == 200:
                continue
            if code == 401:
                self.summary.problems.append("the admin API refused the token: no seeding, "
                                             "no journal")
                self.options.admin = None
                return
            body = seed.body()
            code, data = await self._admin("POST", "/v1/sandbox/orders", body)
            if code == 409:
                body.pop("rno")
                code, data = await self._admin("POST", "/v1/sandbox/orders", body)
            if code == 404 and isinstance(data, dict) and "sandbox" in str(data.get("error")):
                missing = len(seeds) - len(self.summary.seeded)
                self.summary.problems.append(
                    f"the target runs no sandbox: {missing} recorded reservation(s) it does "
                    "not know were not created")
                return
            if code != 201 or not isinstance(data, dict):
                self.summary.problems.append(f"could not seed rno {seed.rno} (eid {seed.eid}): "
                                             f"HTTP {code} {data}")
                continue
            rno = str(data.get("rno"))
            if rno != seed.rno:
                self.numbers.rno[seed.rno] = rno
            self.summary.seeded.append({"eid": seed.eid, "rno": seed.rno,
                                        "registered_rno": rno, "order_id": data.get("order_id"),
                                        "amount": body["order_amount"],
                                        "lines": body["order_lines"]})

    async def _newest_journal_id(self, eid: int, method: str | None) -> int | None:
        entry = await self._newest_entry(eid, method)
        return None if entry is None else int(entry["id"])

    async def _newest_entry(self, eid: int, method: str | None) -> dict[str, Any] | None:
        query = {"eid": str(eid), "limit": "1", **({"method": method} if method else {})}
        code, data = await self._admin("GET", "/v1/journal?" + urlencode(query))
        if code != 200 or not isinstance(data, dict) or not data.get("entries"):
            return None
        return data["entries"][0]

    async def _journal(self, result: CallResult, eid: int, method: str, ref: Any,
                       replacements: dict[int, str]) -> None:
        """The target's journal entry of this call: the newest of its eid and method, if
        newer than any seen (none: refused before it was journaled)."""
        try:
            entry = await self._newest_entry(eid, method)
        except Exception as err:  # noqa: BLE001 - the report says so; the replay goes on
            result.journal_note = f"journal not read: {type(err).__name__}"
            return
        if entry is None or int(entry["id"]) <= self.watermark.get(eid, 0):
            result.journal_note = "no journal entry (refused before it was journaled)"
            return
        number = next(iter(replacements.values()), ref.value if ref is not None else None)
        if number is not None and number not in (entry.get("rno"), entry.get("invno")):
            result.journal_note = "no journal entry for this call's number"
            return
        self.watermark[eid] = int(entry["id"])
        result.journal_id = int(entry["id"])
        result.rest_requests = [
            {"method": s.get("method"), "path": s.get("path"), "body": s.get("body"),
             "state": s.get("state"), "purpose": s.get("purpose")}
            for s in entry.get("rest_steps") or []]


def _progress(total: int) -> Any:
    """A tqdm bar on stderr, or ``None`` (not installed: no bar)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="call", file=sys.stderr, desc="replay")


def verdict_exit_code(summary: Summary) -> int:
    """0 when nothing is ``different``, else 1."""
    return 1 if summary.counts[DIFFERENT] else 0
