"""Importing what a merchant's ERP holds from before the migration, checked against Klarna.

A merchant's ERP holds reservation numbers, invoice numbers and credits Klarna issued before
the gateway existed; without them in the mapping, ``credit_part`` on an old invoice answers
8101. ``klarna-gateway reservations import`` (CSV, :func:`read_csv`) and the admin API's
``POST /v1/imports`` (JSON, :func:`lines_from_json`) both run :func:`run_import`:

1. every row is validated on its own (eid configured, fields present and sized) and repeats
   within the batch are refused;
2. its order is read over REST with the merchant's credentials (once per order, a few at a
   time): a credit's order is its invoice's, from the store or from this batch;
3. the store applies each row (one transaction per row; a dry run: every row in one
   transaction, rolled back), checking it against that order (:mod:`gateway.store.imports`).

The report has one line per row: ``ok`` (applied, or in a dry run would be), ``unchanged``
(already so) or ``refused`` with the reason; a refused row changed nothing.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer

from gateway.config import Config
from gateway.model import (
    CreditImport, ImportKind, ImportOutcome, ImportRow, ImportStatus, InvoiceImport,
    OrderFacts, ReservationImport,
)
from gateway.om.client import DeadlineExceededError, OmClient, RestResponseError, \
    RestTransportError
from gateway.store.store import Store
from gateway.tools.journal import csv_cell

#: The columns of each kind, in CSV order; a CSV's header row names its kind.
FIELDS: dict[ImportKind, tuple[str, ...]] = {
    ImportKind.RESERVATION: ("eid", "rno", "order_id"),
    ImportKind.INVOICE: ("eid", "invno", "order_id", "capture_id"),
    ImportKind.CREDIT: ("eid", "invno", "credno", "refund_id"),
}
#: The JSON body's keys, in the order rows are applied (a credit needs its invoice).
PLURAL: dict[ImportKind, str] = {ImportKind.RESERVATION: "reservations",
                                 ImportKind.INVOICE: "invoices", ImportKind.CREDIT: "credits"}
_HEADERS = {fields: kind for kind, fields in FIELDS.items()}
#: Longest value per field (the store's column sizes); credno alone may be empty.
_SIZES = {"rno": 64, "invno": 64, "order_id": 255, "capture_id": 255, "refund_id": 255,
          "credno": 255}
#: Orders read from Klarna at the same time (its rate limits are per merchant).
READ_CONCURRENCY = 4


class ImportFormatError(ValueError):
    """The input as a whole is unusable (an unknown CSV header, a JSON body of the wrong
    shape): nothing was read from Klarna, nothing changed."""


@dataclass(frozen=True)
class Line:
    """One input row: where it was (``line 3``, ``invoices[0]``), its fields as given, and
    either the checked row or why it was refused before Klarna was asked."""

    where: str
    kind: ImportKind
    fields: dict[str, Any]
    row: ImportRow | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Report:
    dry_run: bool
    lines: tuple[tuple[Line, ImportOutcome], ...]

    def count(self, status: ImportStatus) -> int:
        return sum(1 for _, o in self.lines if o.status is status)

    @property
    def refused(self) -> int:
        return self.count(ImportStatus.REFUSED)

    def format(self, title: str) -> str:
        """The CLI's report: a summary, then one line per row."""
        kinds = sorted({line.kind for line, _ in self.lines}, key=list(PLURAL).index)
        verb = "would add" if self.dry_run else "added"
        head = (f"{title} ({', '.join(PLURAL[k] for k in kinds) or 'no rows'}): "
                f"{verb} {self.count(ImportStatus.OK)}, "
                f"unchanged {self.count(ImportStatus.UNCHANGED)}, problems {self.refused}")
        word = {ImportStatus.OK: verb, ImportStatus.UNCHANGED: "unchanged",
                ImportStatus.REFUSED: "refused"}
        return "\n".join([head] + [f"  {line.where}: {word[o.status]}: {o.message}"
                                   for line, o in self.lines])

    def to_csv(self) -> str:
        """One row per input row: where, kind, status (ok/unchanged/refused), message."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(("where", "kind", "status", "message"))
        for line, o in self.lines:
            writer.writerow([csv_cell(v) for v in (line.where, PLURAL[line.kind],
                                                   o.status.value, o.message)])
        return out.getvalue()

    def to_json(self) -> dict[str, Any]:
        """The admin API's report: per kind, one entry per row in the order given."""
        out: dict[str, Any] = {"dry_run": self.dry_run, "counts": {
            s.value: self.count(s) for s in ImportStatus}}
        for kind, plural in PLURAL.items():
            out[plural] = [{"row": line.fields, "status": o.status.value,
                            "message": o.message, **o.details}
                           for line, o in self.lines if line.kind is kind]
        return out


# -- reading rows -----------------------------------------------------------------------


def read_csv(path: Path, config: Config) -> list[Line]:
    """Rows of one kind, named by the header row (``eid,rno,order_id`` |
    ``eid,invno,order_id,capture_id`` | ``eid,invno,credno,refund_id``); a file without a
    header holds reservations, as before invoices and credits could be imported."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            records = [(n, rec) for n, rec in enumerate(csv.reader(f), start=1)
                       if rec and any(c.strip() for c in rec)]
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    kind, headed = ImportKind.RESERVATION, False
    if records and records[0][1][0].strip().lower() == "eid":
        header = tuple(c.strip().lower() for c in records[0][1])
        if header not in _HEADERS:
            raise ImportFormatError(
                f"{path}: line {records[0][0]}: unknown header {','.join(header)}; one of "
                + " | ".join(",".join(f) for f in FIELDS.values()))
        kind, headed = _HEADERS[header], True
        records = records[1:]
    fields = FIELDS[kind]
    lines = []
    for n, rec in records:
        where = f"line {n}"
        if len(rec) != len(fields):
            hint = "" if headed else " (a file of invoices or credits starts with its header)"
            lines.append(Line(where, kind, {}, problem=f"expected {len(fields)} columns "
                              f"{','.join(fields)}, got {len(rec)}{hint}"))
            continue
        lines.append(checked(where, kind, dict(zip(fields, (c.strip() for c in rec))), config))
    return refuse_repeats(lines)


def lines_from_json(body: dict[str, Any], config: Config) -> list[Line]:
    """``{"reservations": [...], "invoices": [...], "credits": [...]}``, each row an object
    with exactly its kind's fields; rows in that order of kinds."""
    unknown = sorted(set(body) - set(PLURAL.values()) - {"dry_run"})
    if unknown:
        raise ImportFormatError(f"unknown keys {', '.join(unknown)}; expected "
                                f"{', '.join(PLURAL.values())}, dry_run")
    lines = []
    for kind, plural in PLURAL.items():
        items = body.get(plural, [])
        if not isinstance(items, list):
            raise ImportFormatError(f"{plural} must be a list of objects")
        for i, item in enumerate(items):
            lines.append(_json_line(f"{plural}[{i}]", kind, item, config))
    return refuse_repeats(lines)


def _json_line(where: str, kind: ImportKind, item: Any, config: Config) -> Line:
    fields = FIELDS[kind]
    if not isinstance(item, dict):
        return Line(where, kind, {}, problem=f"must be an object with {', '.join(fields)}")
    missing = [f for f in fields if f not in item]
    extra = sorted(str(k) for k in item if k not in fields)
    if missing or extra:
        what = "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                         + ([f"unknown field {', '.join(extra)}"] if extra else []))
        return Line(where, kind, item, problem=what)
    return checked(where, kind, item, config)


def checked(where: str, kind: ImportKind, values: dict[str, Any], config: Config) -> Line:
    """A row whose fields are well formed and whose eid is configured, or its problem."""
    eid = values.get("eid")
    if isinstance(eid, str) and eid.strip().isascii() and eid.strip().isdigit():
        eid = int(eid)
    if not isinstance(eid, int) or isinstance(eid, bool) or config.merchant(eid) is None:
        return Line(where, kind, values, problem=f"eid {values.get('eid')!r} is not a "
                                                 "configured merchant")
    text: dict[str, str] = {}
    for name in FIELDS[kind][1:]:
        value = values[name]
        if isinstance(value, int) and not isinstance(value, bool) and name != "order_id":
            value = str(value)
        if not isinstance(value, str) or len(value.strip()) > _SIZES[name] \
                or (not value.strip() and name != "credno"):
            return Line(where, kind, values, problem=f"{name} must be a "
                        f"{'' if name == 'credno' else 'non-empty '}string of at most "
                        f"{_SIZES[name]} characters")
        text[name] = value.strip()
    row: ImportRow
    if kind is ImportKind.RESERVATION:
        row = ReservationImport(eid, text["rno"], text["order_id"])
    elif kind is ImportKind.INVOICE:
        row = InvoiceImport(eid, text["invno"], text["order_id"], text["capture_id"])
    else:
        row = CreditImport(eid, text["invno"], text["credno"], text["refund_id"])
    return Line(where, kind, values, row=row)


def _identity(row: ImportRow) -> tuple[tuple[Any, ...], str]:
    if isinstance(row, ReservationImport):
        return (row.kind, row.eid, row.rno), f"rno {row.rno}"
    if isinstance(row, InvoiceImport):
        return (row.kind, row.eid, row.invno), f"invno {row.invno}"
    return (row.kind, row.eid, row.refund_id), f"refund {row.refund_id}"


def refuse_repeats(lines: Iterable[Line]) -> list[Line]:
    """A number named twice in one batch is refused the second time (the first wins)."""
    seen: dict[tuple[Any, ...], str] = {}
    out = []
    for line in lines:
        if line.row is not None:
            key, what = _identity(line.row)
            if key in seen:
                line = Line(line.where, line.kind, line.fields,
                            problem=f"{what} repeats {seen[key]}")
            else:
                seen[key] = line.where
        out.append(line)
    return out


# -- checking against Klarna and applying -----------------------------------------------


async def run_import(config: Config, store: Store, om: OmClient, clock: Any,
                     lines: list[Line], *, dry_run: bool, concurrency: int = READ_CONCURRENCY,
                     progress: Callable[[str, int, int], None] | None = None) -> Report:
    """Read each row's order from Klarna (``concurrency`` at a time), then apply the rows in
    order (or preview them). ``progress(stage, done, total)`` hears how far it is."""
    keys = await _order_keys(store, lines)
    facts = await _read_orders(config, om, clock, {k for k in keys.values()
                                                   if isinstance(k, tuple)},
                               concurrency, progress)
    outcomes: dict[int, ImportOutcome] = {}
    ready: list[tuple[int, ImportRow, OrderFacts]] = []
    for i, line in enumerate(lines):
        key = keys.get(i)
        found = facts.get(key) if isinstance(key, tuple) else key
        if line.row is None or not isinstance(found, OrderFacts):
            outcomes[i] = ImportOutcome(ImportStatus.REFUSED,
                                        str(line.problem or found or "not checked"))
        else:
            ready.append((i, line.row, found))
    if dry_run:
        previewed = await store.preview_import([(row, f) for _, row, f in ready])
        outcomes.update(zip((i for i, _, _ in ready), previewed))
    else:
        for n, (i, row, f) in enumerate(ready, start=1):
            outcomes[i] = await store.import_row(row, f)
            if progress is not None:
                progress("rows", n, len(ready))
    return Report(dry_run, tuple((line, outcomes[i]) for i, line in enumerate(lines)))


async def _order_keys(store: Store, lines: list[Line]) -> dict[int, tuple[int, str] | str]:
    """Per row, the (eid, order_id) to read, or why there is none: a credit's order is
    its invoice's (the store's, else an invoice row of this batch)."""
    batch = {(ln.row.eid, ln.row.invno): ln.row.order_id for ln in lines
             if isinstance(ln.row, InvoiceImport)}
    keys: dict[int, tuple[int, str] | str] = {}
    for i, line in enumerate(lines):
        row = line.row
        if isinstance(row, (ReservationImport, InvoiceImport)):
            keys[i] = (row.eid, row.order_id)
        elif isinstance(row, CreditImport):
            invoice = await store.get_invoice(row.eid, row.invno)
            order_id = invoice.order_id if invoice else batch.get((row.eid, row.invno))
            keys[i] = (row.eid, order_id) if order_id else (
                f"invoice {row.invno} is unknown for eid {row.eid}: import it first "
                "(eid,invno,order_id,capture_id)")
    return keys


async def _read_orders(config: Config, om: OmClient, clock: Any, keys: set[tuple[int, str]],
                       concurrency: int = READ_CONCURRENCY,
                       progress: Callable[[str, int, int], None] | None = None,
                       ) -> dict[tuple[int, str], OrderFacts | str]:
    """Each order once, a few at a time; a failure is the reason its rows are refused."""
    budget = config.gateway.retry_budget_seconds
    sem = defer.DeferredSemaphore(max(1, concurrency))
    done = 0

    async def read(eid: int, order_id: str) -> OrderFacts | str:
        nonlocal done
        try:
            return await _read_one(eid, order_id)
        finally:
            done += 1
            if progress is not None:
                progress("orders", done, len(keys))

    async def _read_one(eid: int, order_id: str) -> OrderFacts | str:
        merchant = config.merchant(eid)
        assert merchant is not None
        try:
            order = await om.get_order(merchant, order_id, deadline=clock.seconds() + budget)
        except RestResponseError as e:
            if e.status == 404:
                return f"order {order_id} does not exist for eid {eid}"
            code = f" {e.error_code}" if e.error_code else ""
            return f"Klarna answered {e.status}{code} reading order {order_id}; import " \
                "this row again"
        except (RestTransportError, DeadlineExceededError):
            return f"Klarna did not answer reading order {order_id}; import this row again"
        return OrderFacts.of(order_id, order)

    ordered = sorted(keys)
    try:
        results = await defer.gatherResults(
            [sem.run(read, *k) for k in ordered],
            consumeErrors=True)
    except defer.FirstError as e:  # a bug, not Klarna: raise it as itself
        e.subFailure.raiseException()
    return dict(zip(ordered, results))
