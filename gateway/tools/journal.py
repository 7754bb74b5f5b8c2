"""Journal search as migration teams use it: filters in, entries out (JSON, JSONL, CSV, table).

One place for what ``GET /v1/journal`` (admin API), ``klarna-gateway journal`` (CLI) and the
console share, so the three cannot drift: the filter names and their validation
(:func:`parse_query`), the opaque cursor, the ISO-8601 times (UTC, ``Z``) and the record
each entry becomes (:func:`entry_record`), and the export that pages through every
matching entry (:func:`iterate`) without holding them all in memory.
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from gateway.model import EntryState, JournalEntry
from gateway.store.search import MAX_LIMIT, MERCHANT_REF_KEYS, JournalQuery

#: Filter parameters (query string / CLI flags), in the order
#: docs/migration-guide.md#compare-the-journal lists them.
FILTERS = ("eid", "method", "rno", "invno", "order_id", "merchant_order_id", "outcome",
           "since", "until")
PAGING = ("limit", "cursor", "format")
FORMATS = ("json", "jsonl", "csv")
DEFAULT_LIMIT = 50

CSV_COLUMNS = ("id", "created_at", "eid", "method", "outcome", "state", "rno", "invno",
               "order_id", "orderid1", "orderid2", "fault_code", "fault_string", "notes",
               "reply", "rest_steps", "call", "attempts", "updated_at", "delivered_at")

_CURSOR_PREFIX = "journal-before:"
_MAX_TEXT = 255


class FilterError(ValueError):
    """A filter or paging parameter is malformed; ``name`` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Search:
    """A parsed search: the store query and the output format."""

    query: JournalQuery
    format: str = "json"


# -- times and cursors -------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ``2026-11-01T10:00:00.123Z`` (UTC, milliseconds), None stays None."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str, name: str) -> float:
    """ISO-8601 (``2026-11-01``, ``2026-11-01T10:00:00Z``, with an offset) → epoch seconds.
    A time without an offset is UTC, like every time the gateway prints."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(name, f"not an ISO-8601 time: {text[:64]!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def encode_cursor(before: int) -> str:
    """Opaque to clients (they pass it back unchanged); it is the keyset bound."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{before}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise FilterError("cursor", "not a cursor this gateway issued") from None
    number = raw[len(_CURSOR_PREFIX):]
    if not raw.startswith(_CURSOR_PREFIX) or not _whole(number) or len(number) > 18:
        raise FilterError("cursor", "not a cursor this gateway issued")
    return int(number)


# -- parsing -----------------------------------------------------------------------------


def _whole(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _text(value: str, name: str) -> str:
    if not value or len(value) > _MAX_TEXT or any(ord(c) < 32 for c in value):
        raise FilterError(name, f"must be 1 to {_MAX_TEXT} printable characters")
    return value


def _outcome(value: str) -> dict[str, Any]:
    v = value.strip().lower()
    if v == "ok":
        return {"state": EntryState.DONE}
    if v == "pending":
        return {"state": EntryState.PENDING}
    if v in ("fault", "failed"):
        return {"state": EntryState.FAILED}
    if re.fullmatch(r"-?\d{1,6}", v):
        return {"state": EntryState.FAILED, "fault_code": int(v)}
    raise FilterError("outcome", "must be ok, pending, fault or a fault code such as 9103")


def parse_query(params: Mapping[str, str], *, formats: tuple[str, ...] = FORMATS,
                eid: int | None = None) -> Search:
    """Validate search parameters (strings, as a query string gives them).

    ``eid`` forces the merchant (a merchant's console session): a different ``eid``
    parameter is refused rather than silently widened or narrowed.
    """
    unknown = sorted(set(params) - set(FILTERS) - set(PAGING))
    if unknown:
        raise FilterError(unknown[0], "unknown parameter (filters: " + ", ".join(FILTERS) + ")")
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    kw: dict[str, Any] = {}
    if "eid" in given:
        if not _whole(given["eid"]) or not 0 < int(given["eid"]) < 10**15:
            raise FilterError("eid", "must be a positive integer")
        kw["eid"] = int(given["eid"])
        if eid is not None and kw["eid"] != eid:
            raise FilterError("eid", f"this session may only see eid {eid}")
    elif eid is not None:
        kw["eid"] = eid
    for name in ("method", "rno", "invno", "order_id", "merchant_order_id"):
        if name in given:
            kw[name] = _text(given[name], name)
    if "outcome" in given:
        kw.update(_outcome(given["outcome"]))
    for name in ("since", "until"):
        if name in given:
            kw[name] = parse_time(given[name], name)
    limit = given.get("limit", str(DEFAULT_LIMIT))
    if not _whole(limit) or not 1 <= int(limit) <= MAX_LIMIT:
        raise FilterError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    kw["limit"] = int(limit)
    if "cursor" in given:
        kw["before"] = decode_cursor(given["cursor"])
    fmt = given.get("format", formats[0])
    if fmt not in formats:
        raise FilterError("format", "must be one of " + ", ".join(formats))
    return Search(JournalQuery(**kw), fmt)


# -- records -----------------------------------------------------------------------------


def outcome_of(e: JournalEntry) -> str:
    """``ok``, ``pending`` or the fault code, as the ``outcome`` filter spells them."""
    if e.state is EntryState.PENDING:
        return "pending"
    if e.state is EntryState.DONE:
        return "ok"
    return str(e.fault_code) if e.fault_code is not None else "fault"


def entry_record(e: JournalEntry) -> dict[str, Any]:
    """One entry as JSON: the legacy call, the REST steps it became, notes, reply or fault,
    and when the reply reached the client (``delivered_at``; None: not, or not yet)."""
    return {
        "id": e.id, "eid": e.eid, "method": e.method, "outcome": outcome_of(e),
        "state": e.state.value, "rno": e.rno, "invno": e.invno, "order_id": e.order_id,
        "call": e.call,
        "rest_steps": [{"step": s.step, "method": s.http_method, "path": s.path,
                        "body": s.body, "purpose": s.purpose, "state": s.state.value,
                        "money": s.money.value, "idempotency_key": s.idempotency_key,
                        "result": s.result, "updated_at": iso(s.updated_at)}
                       for s in e.steps],
        "notes": list(e.notes), "reply": e.reply, "fault_code": e.fault_code,
        "fault_string": e.fault_string, "attempts": e.attempts,
        "created_at": iso(e.created_at), "updated_at": iso(e.updated_at),
        "delivered_at": iso(e.delivered_at),
    }


def page_json(entries: tuple[JournalEntry, ...], next_before: int | None) -> dict[str, Any]:
    return {"entries": [entry_record(e) for e in entries],
            "next_cursor": None if next_before is None else encode_cursor(next_before)}


def jsonl_line(e: JournalEntry) -> str:
    return json.dumps(entry_record(e), ensure_ascii=False, sort_keys=True) + "\n"


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    if text[:1] in ("=", "+", "@", "\t", "\r") or (
            text[:1] == "-" and not re.fullmatch(r"-\d+(\.\d+)?", text)):
        text = "'" + text
    return text


csv_cell = _cell  # the public name (reconcile's and the import report's CSV use it)


def csv_header() -> str:
    return _csv_line(list(CSV_COLUMNS))


def csv_line(e: JournalEntry) -> str:
    rec = entry_record(e)
    rec["notes"] = " | ".join(e.notes)
    for key in MERCHANT_REF_KEYS:
        rec[key] = e.call.get(key) or None
    return _csv_line([_cell(rec.get(c)) for c in CSV_COLUMNS])


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


def table(entries: tuple[JournalEntry, ...] | list[JournalEntry]) -> str:
    """A terminal table: one line per call, its REST steps summarised."""
    head = ("id", "created_at", "eid", "method", "number", "outcome", "rest steps",
            "delivered_at")
    lines = [head]
    for e in entries:
        steps = ", ".join(f"{s.http_method} {s.path.rsplit('/', 1)[-1]} {s.state.value}"
                          for s in e.steps) or "-"
        lines.append((str(e.id), iso(e.created_at) or "", str(e.eid), e.method,
                      e.invno or e.rno or "", outcome_of(e), steps, iso(e.delivered_at) or "-"))
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)


async def pages(store: Any, query: JournalQuery) -> AsyncIterator[tuple[JournalEntry, ...]]:
    """Every entry matching ``query`` (from its cursor on, whatever its limit), a store page
    of :data:`MAX_LIMIT` at a time: exports never hold the whole journal in memory."""
    q = replace(query, limit=MAX_LIMIT)
    while True:
        page = await store.search_journal(q)
        if page.entries:
            yield page.entries
        if page.next_before is None:
            return
        q = replace(q, before=page.next_before)
