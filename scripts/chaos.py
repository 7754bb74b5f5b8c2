#!/usr/bin/env python3
"""Soak: M random legacy calls (official Python SDK) under random sandbox faults, with K
SIGKILL/restart cycles of the gateway, then reconcile. Ends with the line

    N calls, D duplicates, L lost, R discrepancies

and exits non-zero unless D, L and R are all 0.

- duplicates: captures/refunds Klarna applied beyond the operations the clients were told
  succeeded (each logical call is retried like a legacy client until it gets a definitive
  answer, and every logical call is unique, so no legitimate repeat is miscounted);
- lost: an invno or credit the client was told about that the store or Klarna lacks;
- discrepancies: rows of ``klarna-gateway reconcile`` after the run.

    python scripts/chaos.py --calls 1000 --kills 10 --processes 2 \\
        --db postgresql://postgres@127.0.0.1:5432/test
"""
from __future__ import annotations

import argparse
import http.client
import random
import socket
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
    GatewayProcess, SandboxProcess, db_upgrade, run_cli, write_config,
)

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


@dataclass
class OrderBook:
    """What the clients were told, per order."""

    order_id: str
    rno: str
    invnos: set[str] = field(default_factory=set)
    credits: Counter[str] = field(default_factory=Counter)  # invno → successful credits


@dataclass
class Soak:
    args: argparse.Namespace
    sandbox: SandboxProcess
    gateways: list[GatewayProcess]
    rng: random.Random
    orders: list[OrderBook] = field(default_factory=list)
    seq: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    calls: int = 0

    def pick_call(self) -> tuple[OrderBook, str, Callable[[Any], Any]]:
        book = self.rng.choice(self.orders)
        self.seq += 1
        n = self.seq
        kinds = ["activate_full", "activate_part", "activate_part", "credit_part",
                 "credit_invoice", "update", "extend", "email", "cancel"]
        weights = [2, 4, 4, 4, 2, 2, 1, 1, 0.5]
        kind = self.rng.choices(kinds, weights)[0]
        if kind in ("credit_part", "credit_invoice", "email") and not book.invnos:
            kind = "activate_part"
        invno = self.rng.choice(sorted(book.invnos)) if book.invnos else ""
        artno = self.rng.choice(["ART-1", "ART-2"])
        rno = book.rno
        if kind == "activate_full":
            return book, kind, lambda k: k.activate(rno, ocr=f"chaos-{n}")
        if kind == "activate_part":
            def part(k: Any) -> Any:
                k.add_art_no(qty=1, artno=artno)
                return k.activate(rno, ocr=f"chaos-{n}")
            return book, kind, part
        if kind == "credit_part":
            def credit(k: Any) -> Any:
                k.add_art_no(qty=1, artno=artno)
                return k.credit_part(invno, f"CR-{n}")
            return book, kind + ":" + invno, credit
        if kind == "credit_invoice":
            return book, kind + ":" + invno, lambda k: k.credit_invoice(invno, f"CI-{n}")
        if kind == "update":
            def upd(k: Any) -> Any:
                k.set_estore_info(orderid1=f"ERP-{n}", orderid2=f"INT-{n}")
                return k.update(rno)
            return book, kind, upd
        if kind == "extend":
            return book, kind, lambda k: k.extend_expiry_date(rno)
        if kind == "email":
            return book, kind, lambda k: k.email_invoice(invno)
        return book, kind, lambda k: k.cancel_reservation(rno)

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

    def run_logical(self, call: Callable[[Any], Any], *, kill: bool = False,
                    give_up_after: float = 120.0) -> tuple[str, Any]:
        """One logical call, retried like a legacy client until definitive."""
        deadline = time.monotonic() + give_up_after
        first = True
        while True:
            gw = self.gateway()
            if first and kill:
                out: list[tuple[str, Any]] = []
                t = threading.Thread(target=lambda out=out, gw=gw: out.append(
                    self.attempt(call, gw)), daemon=True)
                t.start()
                time.sleep(self.rng.uniform(0.0, 0.4))
                gw.kill()
                t.join(30)
                self.ensure_running()
                status, value = out[0] if out else ("retry", None)
            else:
                status, value = self.attempt(call, gw)
            first = False
            if status != "retry":
                return status, value
            if time.monotonic() > deadline:
                return "unresolved", value
            time.sleep(self.rng.uniform(0.05, 0.3))
            self.ensure_running()

    def record(self, book: OrderBook, kind: str, status: str, value: Any) -> None:
        self.outcomes[f"{kind.split(':')[0]} {status if status != 'fault' else value.faultCode}"] += 1
        if status != "ok":
            return
        if kind.startswith("activate"):
            book.invnos.add(str(value[1]))
        elif kind.startswith(("credit_part", "credit_invoice")):
            book.credits[kind.split(":", 1)[1]] += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=60)
    p.add_argument("--kills", type=int, default=2)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--orders", type=int, default=0, help="default: calls / 6")
    p.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    p.add_argument("--fault-rate", type=float, default=0.35)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--client-timeout", type=float, default=10.0)
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kgw-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    db = args.db or f"sqlite:///{work}/gateway.db"
    if args.processes > 1 and db.startswith("sqlite"):
        p.error("several processes need a shared PostgreSQL (--db postgresql://...)")
    rng = random.Random(args.seed)
    sandbox = SandboxProcess(log_path=work / "sandbox.log").start()
    config = write_config(work / "gateway.toml", sandbox.url, rest_timeout_seconds=1.5,
                          retry_budget_seconds=5.0)
    db_upgrade(db)
    gateways = [GatewayProcess(config, db, log_path=work / f"gateway-{i}.log")
                for i in range(args.processes)]
    for gw in gateways:
        gw.start()
    soak = Soak(args, sandbox, gateways, rng)
    try:
        for _ in range(args.orders or max(3, args.calls // 6)):
            order_id = sandbox.create_order()
            soak.orders.append(OrderBook(order_id, gateways[0].register(1234, order_id)))
        kill_at = set(rng.sample(range(args.calls), min(args.kills, args.calls)))
        pending: list[tuple[OrderBook, str, Callable[[Any], Any]]] = []
        started = time.monotonic()
        for i in range(args.calls):
            if rng.random() < args.fault_rate:
                sandbox.fault(path=rng.choice(MUTATION_PATHS), times=rng.randint(1, 2),
                              **rng.choice(ACTIONS))
            book, kind, call = soak.pick_call()
            status, value = soak.run_logical(call, kill=i in kill_at, give_up_after=30.0)
            soak.calls += 1
            if status == "unresolved":
                pending.append((book, kind, call))
            else:
                soak.record(book, kind, status, value)
        sandbox.clear_faults()
        for book, kind, call in pending:  # the outage is over: clients retry once more
            status, value = soak.run_logical(call, give_up_after=120.0)
            soak.record(book, kind, status, value)
        elapsed = time.monotonic() - started
    finally:
        for gw in gateways:
            gw.stop()
    reconcile = run_cli("reconcile", "--config", str(config), "--db", db, timeout=600)
    discrepancies = 0
    for line in reconcile.stdout.splitlines():
        if line.endswith("discrepancies between the store and Klarna:"):
            discrepancies = int(line.split()[0])
    if reconcile.returncode not in (0, 1):
        print(reconcile.stdout + reconcile.stderr, file=sys.stderr)
        discrepancies = max(discrepancies, 1)
    duplicates = lost = 0
    gateways[0].start()
    try:
        for book in soak.orders:
            ops = sandbox.operations(book.order_id)
            captures = [o for o in ops if o["method"] == "POST" and o["path"].endswith("/captures") and o.get("status", 201) < 300]
            refunds = [o for o in ops if o["method"] == "POST" and o["path"].endswith("/refunds") and o.get("status", 201) < 300]
            mapping = gateways[0].mapping(1234, book.rno)
            ours = {i["invno"]: i for i in mapping["invoices"]}
            duplicates += max(0, len(captures) - len(book.invnos))
            lost += max(0, len(book.invnos) - len(captures))
            lost += sum(1 for inv in book.invnos if inv not in ours)
            told = sum(book.credits.values())
            duplicates += max(0, len(refunds) - told)
            lost += max(0, told - len(refunds))
            for invno, n in book.credits.items():
                have = len([c for c in ours.get(invno, {}).get("credits", [])])
                lost += max(0, n - have)
    finally:
        gateways[0].stop()
        sandbox.stop()
    kills = sum(gw.kills for gw in gateways)
    print(f"# {args.processes} process(es), {kills} kills, {len(soak.orders)} orders, "
          f"db {db.split(':')[0]}, {elapsed:.0f}s; workdir {work}", file=sys.stderr)
    for key, n in sorted(soak.outcomes.items()):
        print(f"#   {key}: {n}", file=sys.stderr)
    if discrepancies:
        print(reconcile.stdout, file=sys.stderr)
    print(f"{soak.calls} calls, {duplicates} duplicates, {lost} lost, "
          f"{discrepancies} discrepancies")
    return 0 if duplicates == lost == discrepancies == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
