#!/usr/bin/env python3
"""Soak: M random legacy calls (official Python SDK) under random sandbox faults, with K
SIGKILL/restart cycles of the gateway, some deliberate identical repeats, then an audit
against Klarna and reconcile. Ends with the line

    N calls, D duplicates, L lost, S swallowed, R discrepancies

and exits non-zero unless D, L, S and R are all 0.

N counts logical operations (``--calls``), deliberate repeats included. A logical operation
is what an ERP means to do once (ship a parcel, book a return). A legacy client retries it
after a transport error or a 9119 by re-sending the same call until it gets a definitive
answer: those retries are the SAME logical operation. With ``--repeat-rate`` probability,
after a definitive success, the identical call (same artnos, quantities, ocr, credno) is
sent again as a NEW logical operation: a second parcel, a second identical return, right
away or seconds later. The gateway binds identical calls only until the reply reached its
client, so each successful repeat must be an operation of its own.

Audit, per order, from Klarna's captures/refunds (by id) and the gateway's mapping
(``GET /v1/reservations/{eid}/{rno}``: invoices with capture ids, credits with refund ids).
Each logical activate the client was told succeeded must own a capture of its own (its
invno → that invno's capture id → a capture Klarna applied); each successful
credit_part/credit_invoice must own a refund of its own on the invoice it named.
- duplicates: captures/refunds Klarna applied that no successful operation owns;
- lost: an invno/credit a client was told about that the store or Klarna lacks;
- swallowed: an operation the client was told succeeded that Klarna never applied (a second
  parcel answered with the first one's invno and no second capture, a second return
  answered with success but one refund applied);
- discrepancies: rows of ``klarna-gateway reconcile`` after the run.
A refusal (9103 for a second full activation, 2102 for a second credit_invoice, ...) is a
definitive answer that changed nothing: correct, never swallowed.

    python scripts/chaos.py --calls 1000 --kills 10 --processes 2 \\
        --db 'postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dchaos1'

(a ``search_path`` schema is created when missing; it must not hold an earlier run.)

``--db-restarts N`` restarts PostgreSQL N times mid-load, its data kept: a fast shutdown
(every connection ended with 57P01), ``--db-downtime`` seconds down (1 s: connections
refused), then up again. Each restart begins while Klarna is slow to answer a call: half the
time its mutation (the database goes between the REST step Klarna applies and the call's
outcome), half its read of the order (the database goes before the call's intent). The
gateways answer 9119 meanwhile and the client retries, as after a kill. ``--db-ctl`` is the
command that takes ``stop`` and ``start`` (default: ``pg_ctlcluster
--skip-systemctl-redirect VERSION main``, VERSION the one cluster under /etc/postgresql).
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.testing.processes import (  # noqa: E402
    ADMIN_TOKEN, GatewayProcess, SandboxProcess, db_upgrade, line, run_cli, write_config,
)
from gateway.testing.processes import http as http_json  # noqa: E402

RETRYABLE = (ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException,
             xmlrpc.client.ProtocolError, OSError)
MUTATION_PATHS = [r"/captures$", r"/refunds$", r"/cancel$",
                  r"/release-remaining-authorization$", r"/authorization$",
                  r"/merchant-references$", r"/extend-authorization-time$",
                  r"/trigger-send-out$", r"/orders/[^/]+$"]
ACTIONS = [{"action": "apply_then_fail", "status": 503}, {"action": "apply_then_fail", "status": 0},
           {"action": "fail", "status": 503}, {"action": "fail", "status": 500},
           {"action": "hang"}, {"action": "reset"}, {"action": "rate_limit"},
           {"action": "latency", "delay_ms": 300}]
#: Faults that outlast the gateway's retry budget, so the client is answered 9119 (or times
#: out) and retries the same call: (fault, times).
OUTAGES = [({"action": "fail", "status": 503}, (8, 14)),
           ({"action": "apply_then_fail", "status": 503}, (8, 14)),
           ({"action": "rate_limit"}, (8, 14)), ({"action": "reset"}, (8, 14)),
           ({"action": "hang"}, (3, 5))]
#: Each order: enough of each article for several parcels (1 or 2 pieces each) and returns.
ORDER_LINES = [line("ART-1", "Blåbärssylt", 4, 10000), line("ART-2", "Lingon", 6, 5000)]
KINDS = ["activate_full", "activate_part", "credit_part", "credit_invoice", "update",
         "extend", "email", "cancel"]
WEIGHTS = [2, 8, 4, 2, 2, 1, 1, 0.5]
CREDITS = ("credit_part", "credit_invoice")


@dataclass
class OrderBook:
    order_id: str
    rno: str
    invnos: list[str] = field(default_factory=list)  # told, in order (credit targets)
    parcels: dict[str, str] = field(default_factory=dict)  # invno → the one artno it holds


@dataclass
class Op:
    """One logical operation. Its retries (transport error, 9119) re-send ``call`` and stay
    this op; a deliberate repeat is a new Op with the same ``call`` and ``repeat_of`` set."""

    id: int
    kind: str
    book: OrderBook
    call: Callable[[Any], Any]
    invno: str = ""  # the invoice a credit or email_invoice names
    artno: str = ""  # the article a partial activation or credit lists
    qty: int = 1  # ... and its quantity
    repeat_of: int | None = None
    root: int = 0  # the op whose call this is (its number is in the ocr/credno)
    pause: float = 0.0  # a repeat's wait after its original's answer
    attempts: int = 0
    status: str = ""  # ok | fault | unresolved
    value: Any = None
    killed: bool = False  # a gateway was SIGKILLed during its first attempt
    restarted: bool = False  # ... or PostgreSQL was restarted during it
    cut: bool = False  # ... before that attempt got its answer
    sent_at: float = 0.0  # wall clock (the gateway journals wall-clock seconds too)
    answered_at: float = 0.0

    @property
    def told_invno(self) -> str | None:
        """The invno a successful money operation was answered with."""
        if self.status != "ok":
            return None
        if self.kind.startswith("activate"):
            return str(self.value[1])
        if self.kind in CREDITS:
            return str(self.value)
        return None

    def label(self) -> str:
        rep = f", repeat of #{self.repeat_of} after {self.pause:.1f}s" if self.repeat_of else ""
        kill = ", SIGKILL during it" if self.killed else \
            ", database restarted during it" if self.restarted else ""
        on = f" on {self.invno}" if self.invno else ""
        told = self.value.faultCode if self.status == "fault" else self.value
        return (f"#{self.id} {self.kind}{on} (order {self.book.order_id}{rep}{kill}, "
                f"{self.attempts} attempt(s), sent {self.sent_at:.3f}, answered "
                f"{self.answered_at:.3f}: {self.status} {told!r})")


@dataclass
class Soak:
    args: argparse.Namespace
    sandbox: SandboxProcess
    gateways: list[GatewayProcess]
    rng: random.Random
    orders: list[OrderBook] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)  # cause → retries
    restarts: list[float] = field(default_factory=list)  # seconds each database restart took

    def new_op(self) -> Op:
        book = self.rng.choice(self.orders)
        n = len(self.ops) + 1
        kind = self.rng.choices(KINDS, WEIGHTS)[0]
        if kind in (*CREDITS, "email") and not book.invnos:
            kind = "activate_part"
        invno = self.rng.choice(book.invnos) if kind in (*CREDITS, "email") else ""
        # a credit names an article of its invoice when the soak knows it (a parcel)
        artno = book.parcels.get(invno) or self.rng.choice(["ART-1", "ART-2"])
        qty = self.rng.choice([1, 2]) if kind == "activate_part" else 1
        return Op(n, kind, book, _call(kind, book.rno, invno, artno, qty, n), invno, artno,
                  qty)

    def repeat(self, op: Op) -> Op:
        """The identical call as a new logical operation, now or seconds later."""
        pause = 0.0 if self.rng.random() < 0.5 else self.rng.uniform(0.5, self.args.repeat_pause)
        return Op(len(self.ops) + 1, op.kind, op.book, op.call, op.invno, op.artno, op.qty,
                  repeat_of=op.id, root=op.root or op.id, pause=pause)

    def gateway(self) -> GatewayProcess:
        return self.rng.choice(self.gateways)

    def ensure_running(self) -> None:
        for gw in self.gateways:
            if gw.proc is None or gw.proc.poll() is not None:
                gw.start()

    def attempt(self, call: Callable[[Any], Any], gw: GatewayProcess) -> tuple[str, Any]:
        try:
            return "ok", call(gw.sdk(timeout=self.args.client_timeout))
        except xmlrpc.client.Fault as f:
            if f.faultCode == 9119:
                return "retry", f
            return "fault", f
        except RETRYABLE as e:
            return "retry", e

    def run(self, op: Op, *, kill: bool = False, restart: bool = False,
            give_up_after: float = 120.0) -> None:
        """Send ``op`` like a legacy client: the same call again after a transport error or
        a 9119, until a definitive answer (or ``give_up_after`` seconds: unresolved)."""
        deadline = time.monotonic() + give_up_after
        op.sent_at = op.sent_at or time.time()
        while True:
            gw = self.gateway()
            op.attempts += 1
            if kill and not op.killed:
                op.killed = True
                status, value = self._attempt_and_kill(op, gw)
                op.cut = status == "retry"
            elif restart and not op.restarted:
                op.restarted = True
                status, value = self._attempt_and_restart(op, gw)
                op.cut = status == "retry"
            else:
                status, value = self.attempt(op.call, gw)
            if status != "retry":
                op.status, op.value, op.answered_at = status, value, time.time()
                return
            self.retries["9119" if isinstance(value, xmlrpc.client.Fault)
                         else type(value).__name__] += 1
            if time.monotonic() > deadline:
                op.status, op.value = "unresolved", value
                return
            time.sleep(self.rng.uniform(0.05, 0.3))
            self.ensure_running()

    def _attempt_and_kill(self, op: Op, gw: GatewayProcess) -> tuple[str, Any]:
        """SIGKILL the gateway serving the attempt: half the time while Klarna is slow to
        answer it (mid-call, after Klarna may have applied it), half at any moment."""
        if self.rng.random() < 0.5:
            self.sandbox.fault(path=r"^/ordermanagement/", times=1, action="latency",
                               delay_ms=self.rng.randint(300, 900))
            delay = self.rng.uniform(0.05, 0.3)
        else:
            delay = self.rng.uniform(0.0, 0.4)
        return self._attempt_during(op, gw, gw.kill, delay)

    def _attempt_and_restart(self, op: Op, gw: GatewayProcess) -> tuple[str, Any]:
        """Restart the database while Klarna is slow to answer the attempt: half the time
        its mutation (POST: the database goes between the REST step Klarna applies and
        its outcome), half its read of the order (GET: before its intent)."""
        self.sandbox.fault(path=r"^/ordermanagement/", times=1, action="latency",
                           method="POST" if self.rng.random() < 0.5 else "GET",
                           delay_ms=self.rng.randint(800, 1300))
        return self._attempt_during(op, gw, self.restart_database,
                                    self.rng.uniform(0.05, 0.2))

    def _attempt_during(self, op: Op, gw: GatewayProcess, blow: Callable[[], Any],
                        delay: float) -> tuple[str, Any]:
        """``blow`` (a kill, a restart) ``delay`` seconds into the attempt."""
        out: list[tuple[str, Any]] = []
        t = threading.Thread(target=lambda: out.append(self.attempt(op.call, gw)), daemon=True)
        t.start()
        time.sleep(delay)
        blow()
        t.join(30)
        self.ensure_running()
        return out[0] if out else ("retry", ConnectionError("no answer within 30 s"))

    def restart_database(self) -> None:
        """Stop PostgreSQL, leave it down ``--db-downtime`` seconds, start it (data kept;
        started again whatever happens meanwhile: other users share it)."""
        started = time.monotonic()
        self._db_ctl("stop")
        try:
            time.sleep(self.args.db_downtime)
        finally:
            self._db_ctl("start")
        self.restarts.append(time.monotonic() - started)

    def _db_ctl(self, action: str) -> None:
        done = subprocess.run([*shlex.split(self.args.db_ctl), action], capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            sys.exit(f"database {action} failed: {done.stderr.strip()}")

    def record(self, op: Op) -> None:
        told = op.value.faultCode if op.status == "fault" else op.status
        self.outcomes[f"{op.kind}{' repeat' if op.repeat_of else ''} {told}"] += 1
        invno = op.told_invno
        if op.kind.startswith("activate") and invno and invno not in op.book.invnos:
            op.book.invnos.append(invno)
            if op.kind == "activate_part":
                op.book.parcels[invno] = op.artno


def _call(kind: str, rno: str, invno: str, artno: str, qty: int, n: int
          ) -> Callable[[Any], Any]:
    """The SDK call of one logical operation; run on a fresh client at every attempt (both
    SDKs keep their article list after a fault, so a retry re-adds the articles)."""
    if kind == "activate_full":
        return lambda k: k.activate(rno, ocr=f"chaos-{n}")
    if kind == "activate_part":
        def part(k: Any) -> Any:
            k.add_art_no(qty=qty, artno=artno)
            return k.activate(rno, ocr=f"chaos-{n}")
        return part
    if kind == "credit_part":
        def credit(k: Any) -> Any:
            k.add_art_no(qty=1, artno=artno)
            return k.credit_part(invno, f"CR-{n}")
        return credit
    if kind == "credit_invoice":
        return lambda k: k.credit_invoice(invno, f"CI-{n}")
    if kind == "update":
        def upd(k: Any) -> Any:
            k.set_estore_info(orderid1=f"ERP-{n}", orderid2=f"INT-{n}")
            return k.update(rno)
        return upd
    if kind == "extend":
        return lambda k: k.extend_expiry_date(rno)
    if kind == "email":
        return lambda k: k.email_invoice(invno)
    return lambda k: k.cancel_reservation(rno)


# -- the audit ---------------------------------------------------------------------------


@dataclass
class Audit:
    duplicates: int = 0
    lost: int = 0
    swallowed: int = 0
    findings: list[str] = field(default_factory=list)
    suspects: list[Op] = field(default_factory=list)  # told ops that may own nothing


def audit_order(book: OrderBook, ops: list[Op], order: dict[str, Any],
                mapping: dict[str, Any], out: Audit) -> None:
    """Match what the clients were told on one order against Klarna and the store."""
    captures = {c["capture_id"] for c in order.get("captures") or []}
    refunds = {r["refund_id"] for r in order.get("refunds") or []}
    ours = {i["invno"]: i for i in mapping["invoices"]}
    owners: dict[str, Op] = {}  # invno → the first op told it
    for op in ops:
        invno = op.told_invno
        if not op.kind.startswith("activate") or invno is None:
            continue
        if invno in owners:
            out.swallowed += 1
            out.suspects.append(op)
            out.findings.append(f"swallowed: {op.label()}; invno {invno} already told to "
                                f"#{owners[invno].id}")
            continue
        owners[invno] = op
        inv = ours.get(invno)
        if inv is None or inv["capture_id"] not in captures:
            out.lost += 1
            out.findings.append(f"lost: {op.label()}; store has {inv and inv['capture_id']!r}")
    owned = {ours[i]["capture_id"] for i in owners if i in ours} & captures
    for cid in sorted(captures - owned):
        out.duplicates += 1
        invno = next((i for i, v in ours.items() if v["capture_id"] == cid), None)
        out.findings.append(f"duplicate: capture {cid} on order {book.order_id} "
                            f"(store invno {invno}) owned by no successful activate")
    _audit_refunds(book, ops, refunds, ours, out)


def _audit_refunds(book: OrderBook, ops: list[Op], refunds: set[str],
                   ours: dict[str, Any], out: Audit) -> None:
    """Each successful credit owns a distinct refund the store maps to the invoice it named
    and Klarna applied. A shortfall is lost when the store or Klarna has half of it (a
    store credit Klarna lacks, a Klarna refund the store lacks), swallowed otherwise."""
    told: dict[str, list[Op]] = {}
    for op in ops:
        if op.kind in CREDITS and op.status == "ok":
            if op.told_invno != op.invno:
                out.lost += 1
                out.findings.append(f"lost: {op.label()}; answered with another invno")
                continue
            told.setdefault(op.invno, []).append(op)
    mapped = {c["refund_id"] for i in ours.values() for c in i["credits"]}
    orphans = len(refunds - mapped)  # applied at Klarna, unknown to the store
    owned = 0
    short: list[Op] = []
    for invno, credit_ops in told.items():
        ids = {c["refund_id"] for c in ours.get(invno, {}).get("credits", [])}
        valid, broken = ids & refunds, ids - refunds
        n = min(len(credit_ops), len(valid))
        owned += n
        rest = credit_ops[n:]
        for op in rest[:len(broken)]:
            out.lost += 1
            out.findings.append(f"lost: a credit on {invno} (order {book.order_id}): store "
                                f"credit(s) {sorted(broken)} not applied at Klarna")
        short += rest[len(broken):]
    store_lacks = min(len(short), orphans)
    for invno in {op.invno for op in short[store_lacks:]}:
        out.suspects += told[invno]  # which of them owns nothing: see explain()
    for op in short[:store_lacks]:
        out.lost += 1
        out.findings.append(f"lost: a credit on {op.invno} (order {book.order_id}): a Klarna "
                            f"refund the store lacks")
    swallowed = Counter(op.invno for op in short[store_lacks:])
    for invno, n in swallowed.items():
        out.swallowed += n
        out.findings.append(f"swallowed: {n} credit(s) on {invno} (order {book.order_id}): "
                            f"{len(told[invno])} told, {len(told[invno]) - n} applied")
    extra = len(refunds) - owned - store_lacks
    if extra > 0:
        out.duplicates += extra
        out.findings.append(f"duplicate: {extra} refund(s) on order {book.order_id} owned by "
                            f"no successful credit")


def journal(db: str, order_ids: set[str]) -> list[Any]:
    """The money entries of some orders (to explain a finding)."""
    from sqlalchemy import select

    from gateway.store import models as m
    from gateway.store.database import make_engine

    j = m.journal
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(j).where(j.c.order_id.in_(order_ids)).where(
                j.c.method.in_(["activate", *CREDITS])).order_by(j.c.id)).all())
    finally:
        engine.dispose()


def journal_line(r: Any) -> str:
    return (f"journal {r.id} {r.method} rno={r.rno} invno={r.invno} {r.phase} "
            f"reply={r.reply_json} fault={r.fault_code} attempts={r.attempts} "
            f"created={r.created_at:.3f} updated={r.updated_at:.3f} delivered="
            f"{'-' if r.delivered_at is None else format(r.delivered_at, '.3f')} "
            f"call={_brief(r.call_json)}")


def _brief(call_json: str) -> str:
    """The parts of a journaled call that tell two operations apart (artnos, ocr, credno)."""
    call = json.loads(call_json)
    keep = ("artnos", "ocr", "credno")
    return json.dumps({k: call[k] for k in keep if call.get(k)}, separators=(",", ":"))


def _marker(op: Op) -> tuple[str, str, str]:
    """(method, key, value) naming the call of ``op`` in the journal (its ocr or credno)."""
    method = "activate" if op.kind.startswith("activate") else op.kind
    if method == "activate":
        return method, "ocr", f"chaos-{op.root or op.id}"
    return method, "credno", f"{'CR' if method == 'credit_part' else 'CI'}-{op.root or op.id}"


def _same_call(rows: list[Any], op: Op) -> list[Any]:
    method, key, value = _marker(op)
    return [r for r in rows if r.method == method and json.loads(r.call_json).get(key) == value]


def explain(rows: list[Any], suspects: list[Op], ops: dict[int, Op]) -> list[str]:
    """For each suspect, the journal entry it owns (created while it was being sent), or,
    when it owns none, the identical call's entry it was answered from and when that
    entry's reply was recorded as delivered relative to this send (wall clock, one host)."""
    lines = []
    for op in suspects:
        same = _same_call(rows, op)
        if any(op.sent_at - 0.001 <= r.created_at <= op.answered_at + 0.001 for r in same):
            continue
        prior = max((r for r in same if r.created_at < op.sent_at),
                    key=lambda r: r.created_at, default=None)
        if prior is None:
            lines.append(f"{op.label()} owns no journal entry and follows none")
        elif prior.delivered_at is None:
            killed = op.repeat_of is not None and ops[op.repeat_of].killed
            lines.append(f"{op.label()} was answered from journal {prior.id}, whose reply was "
                         f"never recorded as delivered (the documented residual window if "
                         f"its process died as it answered; SIGKILL then: {killed})")
        elif prior.delivered_at > op.sent_at:
            lines.append(f"{op.label()} was answered from journal {prior.id}: sent "
                         f"{(op.sent_at - prior.updated_at) * 1000:.1f} ms after that entry "
                         f"finished and {(prior.delivered_at - op.sent_at) * 1000:.1f} ms "
                         f"before its delivery was recorded")
        else:
            lines.append(f"{op.label()} was answered from journal {prior.id} although its "
                         f"delivery was recorded "
                         f"{(op.sent_at - prior.delivered_at) * 1000:.1f} ms before")
    return lines


# -- running ----------------------------------------------------------------------------


def prepare_db(db: str) -> None:
    """PostgreSQL with ``options=-csearch_path=<schema>``: create the schema when missing;
    refuse one that already holds tables (reconcile would see an earlier run's orders)."""
    if not db.startswith(("postgresql://", "postgres://")):
        return
    from urllib.parse import parse_qs, urlsplit

    from sqlalchemy import text

    from gateway.store.database import make_engine

    options = " ".join(parse_qs(urlsplit(db).query).get("options", []))
    found = re.search(r"-c\s*search_path=([A-Za-z_][A-Za-z0-9_]*)", options)
    if not found:
        return
    name = found.group(1)
    engine = make_engine(db)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{name}"'))
            tables = conn.execute(text("SELECT count(*) FROM information_schema.tables "
                                       "WHERE table_schema = :s"), {"s": name}).scalar_one()
    finally:
        engine.dispose()
    if tables:
        sys.exit(f"schema {name} already holds {tables} tables: use a fresh one")


def fault_mix(sandbox: SandboxProcess) -> Counter[str]:
    """How often each injected fault kind fired at Klarna's side."""
    status, _, body = http_json("GET", sandbox.url + "/sandbox/v1/faults", bearer=ADMIN_TOKEN)
    mix: Counter[str] = Counter()
    if status == 200:
        for f in body:
            kind = f["action"] + (f"/{f['status']}" if f["action"] in ("fail", "apply_then_fail")
                                  else "")
            mix[kind] += int(f.get("hits") or 0)
    return mix


def inject_faults(soak: Soak, args: argparse.Namespace) -> None:
    rng = soak.rng
    if rng.random() < args.fault_rate:
        soak.sandbox.fault(path=rng.choice(MUTATION_PATHS), times=rng.randint(1, 2),
                           **rng.choice(ACTIONS))
    if rng.random() < args.outage_rate:
        spec, (low, high) = rng.choice(OUTAGES)
        soak.sandbox.fault(path=rng.choice(MUTATION_PATHS), times=rng.randint(low, high),
                           **spec)


def soak_calls(soak: Soak, args: argparse.Namespace) -> Counter[str]:
    """Run the logical operations; returns the fault mix met at Klarna's side."""
    kill_at = set(soak.rng.sample(range(args.calls), min(args.kills, args.calls)))
    others = [i for i in range(args.calls) if i not in kill_at]
    restart_at = set(soak.rng.sample(others, min(args.db_restarts, len(others)))) \
        if args.db_restarts else set()
    last: Op | None = None
    for i in range(args.calls):
        inject_faults(soak, args)
        if last is not None and last.status == "ok" and soak.rng.random() < args.repeat_rate:
            op = soak.repeat(last)
            time.sleep(op.pause)
        else:
            op = soak.new_op()
        soak.ops.append(op)
        soak.run(op, kill=i in kill_at, restart=i in restart_at, give_up_after=30.0)
        if op.status != "unresolved":
            soak.record(op)
        last = op
    mix = fault_mix(soak.sandbox)
    soak.sandbox.clear_faults()
    for op in soak.ops:  # the outage is over: clients retry what never got an answer
        if op.status == "unresolved":
            soak.run(op, give_up_after=120.0)
            soak.record(op)
    return mix


def reconcile_count(config: Path, db: str) -> tuple[int, str]:
    reconcile = run_cli("reconcile", "--config", str(config), "--db", db, timeout=600)
    discrepancies = 0
    for line in reconcile.stdout.splitlines():
        if line.endswith("discrepancies between the store and Klarna:"):
            discrepancies = int(line.split()[0])
    if reconcile.returncode not in (0, 1):
        print(reconcile.stdout + reconcile.stderr, file=sys.stderr)
        discrepancies = max(discrepancies, 1)
    return discrepancies, reconcile.stdout


def audit(soak: Soak, gw: GatewayProcess) -> Audit:
    out = Audit()
    by_order: dict[str, list[Op]] = {}
    for op in soak.ops:
        by_order.setdefault(op.book.order_id, []).append(op)
    for book in soak.orders:
        audit_order(book, by_order.get(book.order_id, []), soak.sandbox.order(book.order_id),
                    gw.mapping(1234, book.rno), out)
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=60, help="logical operations, repeats included")
    p.add_argument("--kills", type=int, default=2)
    p.add_argument("--db-restarts", type=int, default=0,
                   help="restart PostgreSQL this many times mid-load, its data kept")
    p.add_argument("--db-downtime", type=float, default=1.0,
                   help="seconds PostgreSQL stays down at each restart")
    p.add_argument("--db-ctl", default=None,
                   help="the command that takes stop and start (default: pg_ctlcluster "
                        "--skip-systemctl-redirect VERSION main, VERSION the one cluster "
                        "under /etc/postgresql)")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--orders", type=int, default=0, help="default: calls / 6")
    p.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    p.add_argument("--fault-rate", type=float, default=0.35)
    p.add_argument("--outage-rate", type=float, default=0.05,
                   help="chance per call of a fault that outlasts the gateway's retry budget")
    p.add_argument("--repeat-rate", type=float, default=0.2,
                   help="after a success, chance that the next operation is its identical "
                        "repeat (half immediately, half after 0.5..--repeat-pause s)")
    p.add_argument("--repeat-pause", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--client-timeout", type=float, default=10.0)
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    if args.processes > 1 and not (args.db or "").startswith("postgres"):
        p.error("several processes need a shared PostgreSQL (--db postgresql://...)")
    if args.db_restarts and not (args.db or "").startswith("postgres"):
        p.error("--db-restarts restarts PostgreSQL: give --db postgresql://...")
    if args.db_restarts and args.db_ctl is None:
        versions = sorted(Path("/etc/postgresql").glob("*"))
        if len(versions) != 1:
            p.error("give --db-ctl (no single cluster under /etc/postgresql)")
        args.db_ctl = f"pg_ctlcluster --skip-systemctl-redirect {versions[0].name} main"
    return args


def report(soak: Soak, mix: Counter[str], result: Audit, discrepancies: int,
           reconcile_out: str, db: str, elapsed: float, work: Path) -> None:
    args = soak.args
    err = sys.stderr
    repeats = [op for op in soak.ops if op.repeat_of]
    kills = sum(gw.kills for gw in soak.gateways)
    restarts = (f"{len(soak.restarts)} database restarts ("
                f"{sum(op.cut and op.restarted for op in soak.ops)} cut a call before its "
                f"answer, each {args.db_downtime:g}s down and at most "
                f"{max(soak.restarts):.1f}s from stop to started), "
                if soak.restarts else "")
    print(f"# {args.processes} process(es), {kills} kills "
          f"({sum(op.cut and op.killed for op in soak.ops)} cut a call before its answer, "
          f"{sum(op.killed and bool(op.repeat_of) for op in soak.ops)} during a repeat), "
          f"{restarts}{len(soak.orders)} orders, db {db.split(':')[0]}, {elapsed:.0f}s; "
          f"workdir {work}", file=err)
    print(f"# {len(repeats)} deliberate repeats "
          f"({sum(op.pause == 0 for op in repeats)} immediate, "
          f"{sum(op.pause > 0 for op in repeats)} after a pause), "
          f"{sum(soak.retries.values())} retries of the same operation "
          f"({', '.join(f'{k} {n}' for k, n in sorted(soak.retries.items())) or 'none'}), "
          f"{sum(op.status == 'unresolved' for op in soak.ops)} unresolved", file=err)
    print(f"# faults fired at Klarna's side: "
          f"{', '.join(f'{k} {n}' for k, n in sorted(mix.items()) if n) or 'none'}", file=err)
    for key, n in sorted(soak.outcomes.items()):
        print(f"#   {key}: {n}", file=err)
    for line in result.findings:
        print(f"# {line}", file=err)
    if result.findings:
        ids = {op.book.order_id for op in soak.ops}
        rows = journal(db, {i for i in ids if any(i in f for f in result.findings)})
        for line in explain(rows, result.suspects, {o.id: o for o in soak.ops}):
            print(f"# why: {line}", file=err)
        shown = {r.id for op in result.suspects for r in _same_call(rows, op)}
        for row in rows:
            if row.id in shown:
                print(f"#   {journal_line(row)}", file=err)
    if discrepancies:
        print(reconcile_out, file=err)


def main() -> int:
    args = parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kgw-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    db = args.db or f"sqlite:///{work}/gateway.db"
    prepare_db(db)
    sandbox = SandboxProcess(log_path=work / "sandbox.log").start()
    config = write_config(work / "gateway.toml", sandbox.url, rest_timeout_seconds=1.5,
                          retry_budget_seconds=5.0)
    db_upgrade(db)
    gateways = [GatewayProcess(config, db, log_path=work / f"gateway-{i}.log")
                for i in range(args.processes)]
    soak = Soak(args, sandbox, gateways, random.Random(args.seed))
    try:
        for gw in gateways:
            gw.start()
        for _ in range(args.orders or max(3, args.calls // 6)):
            order_id = sandbox.create_order(lines=ORDER_LINES)
            soak.orders.append(OrderBook(order_id, gateways[0].register(1234, order_id)))
        started = time.monotonic()
        mix = soak_calls(soak, args)
        elapsed = time.monotonic() - started
        for gw in gateways:
            gw.stop()
        discrepancies, reconcile_out = reconcile_count(config, db)
        gateways[0].start()
        result = audit(soak, gateways[0])
    finally:
        for gw in gateways:
            gw.stop()
        sandbox.stop()
    report(soak, mix, result, discrepancies, reconcile_out, db, elapsed, work)
    print(f"{len(soak.ops)} calls, {result.duplicates} duplicates, {result.lost} lost, "
          f"{result.swallowed} swallowed, {discrepancies} discrepancies")
    return 0 if result.duplicates == result.lost == result.swallowed == discrepancies == 0 \
        else 1


if __name__ == "__main__":
    sys.exit(main())
