#!/usr/bin/env python3
"""A nightly batch against a merchant's REST rate limit, measured where Klarna would see it.

Two gateway processes on one PostgreSQL activate ``--orders`` orders, half of merchant 1234,
half of 5678, sent at once by an ERP's workers (the official Python SDK, retrying the same
call after a 9119 as a legacy client does). Merchant 1234 has ``rest_rate_limit = --limit``;
the sandbox emulates Klarna's own limit for it with its ``rate_limit`` fault (429 with
``Retry-After: 1`` beyond ``--klarna-limit`` requests in any second). 5678 has no limit.

    python scripts/ratelimit_demo.py --orders 1000 --limit 20 \\
        --db 'postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Drl1'

(a ``search_path`` schema is created when missing; it must not hold an earlier run.)
``--limit 0`` runs the same batch without the gateway's limit, to compare.

What Klarna saw is the sandbox's request log (``GET /sandbox/v1/requests``): per merchant,
the REST requests, the busiest 1-second and 5-second windows, the 429s; what the ERP saw is
each call's answers and latency; the gateways' ``/metrics`` give the slots waited for and
the calls throttled. Every order is then read from the sandbox: captured exactly once. The
last line reads

    1234: at most 19.8 requests/s over any 5 s (limit 20); 5678: 0 waits, 0 throttled; 1000/1000 activated, each captured once

and the exit status is non-zero unless 1234 stayed within its bucket in every 5-second
window (at most 5 × limit + burst requests: a token bucket lets its depth leave at once,
and requests spaced exactly 1/limit apart put one more in a window that starts on one of
them whenever the network delays that one a little), 5678 never waited for a request slot,
and every order was captured once.
"""
from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos import RETRYABLE, prepare_db  # noqa: E402
from gateway.testing.processes import (  # noqa: E402
    GatewayProcess, SandboxProcess, db_upgrade, write_config,
)

LIMITED, OTHER = 1234, 5678
WINDOWS = (1.0, 5.0)


@dataclass
class Call:
    eid: int
    rno: str
    order_id: str
    started: float = 0.0
    answered: float = 0.0
    attempts: int = 0
    retried_9119: int = 0
    outcome: str = ""


@dataclass
class Phase:
    """One merchant's traffic in one phase, as Klarna and the ERP saw it."""

    eid: int
    requests: list[float] = field(default_factory=list)
    rejected: int = 0  # answered 429 by Klarna (the sandbox's rate_limit fault)
    calls: list[Call] = field(default_factory=list)

    def busiest(self, window: float) -> int:
        """Most requests in any half-open window ``[t, t + window)``."""
        times, best, j = sorted(self.requests), 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - window:
                j += 1
            best = max(best, i - j + 1)
        return best

    def span(self) -> float:
        done = [c for c in self.calls if c.answered]
        if not done:
            return 0.0
        return max(c.answered for c in done) - min(c.started for c in done)

    def latency(self, q: float) -> float:
        values = sorted(c.answered - c.started for c in self.calls if c.answered)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def split_log(log: list[dict[str, Any]], eids: tuple[int, ...]) -> dict[int, Phase]:
    phases = {eid: Phase(eid) for eid in eids}
    for r in log:
        if r["eid"] in phases and r["path"].startswith("/ordermanagement/"):
            phases[r["eid"]].requests.append(float(r["received_at"]))
            phases[r["eid"]].rejected += r["fault"] is not None
    return phases


def activate(call: Call, gateway: GatewayProcess, timeout: float) -> None:
    """One activation as a legacy client sends it: the same call again after a 9119 or a
    transport error, until a definitive answer."""
    call.started = time.time()
    while True:
        call.attempts += 1
        try:
            gateway.sdk(call.eid, timeout=timeout).activate(call.rno)
            call.outcome = "ok"
            break
        except xmlrpc.client.Fault as f:
            if f.faultCode != 9119 or call.attempts >= 20:
                call.outcome = f"fault {f.faultCode}"
                break
            call.retried_9119 += 1
        except RETRYABLE as e:
            if call.attempts >= 20:
                call.outcome = type(e).__name__
                break
    call.answered = time.time()


def run_batch(calls: list[Call], gateways: list[GatewayProcess], workers: int,
              timeout: float) -> None:
    """Each merchant's calls by its own ``workers`` (one ERP per merchant), all at once."""
    threads = []
    for eid in sorted({c.eid for c in calls}):
        work: queue.Queue[Call] = queue.Queue()
        for c in calls:
            if c.eid == eid:
                work.put(c)

        def worker(n: int, work: queue.Queue[Call] = work) -> None:
            gw = gateways[n % len(gateways)]
            while True:
                try:
                    c = work.get_nowait()
                except queue.Empty:
                    return
                activate(c, gw, timeout)
        threads += [threading.Thread(target=worker, args=(n,), daemon=True)
                    for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def gateway_metrics(gateways: list[GatewayProcess]) -> Counter[tuple[str, str]]:
    """The rate-limit metrics of every process, summed: (metric, eid) → value."""
    from prometheus_client.parser import text_string_to_metric_families
    import urllib.request

    wanted = {"klarna_gateway_rest_rate_limit_wait_seconds_count": "waits",
              "klarna_gateway_rest_rate_limit_wait_seconds_sum": "waited_s",
              "klarna_gateway_rest_throttled_calls_total": "throttled",
              "klarna_gateway_rest_429_total": "429s"}
    total: Counter[tuple[str, str]] = Counter()
    for gw in gateways:
        with urllib.request.urlopen(gw.admin_url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in wanted:
                    total[(wanted[s.name], s.labels["eid"])] += s.value
    return total


def captured_once(sandbox: SandboxProcess, calls: list[Call]) -> int:
    def check(c: Call) -> bool:
        order = sandbox.order(c.order_id, c.eid)
        return order["status"] == "CAPTURED" and len(order["captures"]) == 1
    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(check, calls))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=1000, help="half of each merchant")
    ap.add_argument("--limit", type=float, default=20.0,
                    help="merchant 1234's rest_rate_limit (0: none, to compare)")
    ap.add_argument("--burst", type=int, default=1, help="merchant 1234's rest_rate_burst")
    ap.add_argument("--klarna-limit", type=int, default=20,
                    help="Klarna's limit for 1234 the sandbox enforces (0: none)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8, help="ERP workers per merchant")
    ap.add_argument("--client-timeout", type=float, default=10.0)
    ap.add_argument("--db", help="database URL (default: SQLite in the work dir, 1 process)")
    ap.add_argument("--workdir")
    return ap.parse_args(argv)


def report_phase(name: str, phases: dict[int, Phase], limit: float) -> list[str]:
    lines = [f"# {name}"]
    for eid, ph in sorted(phases.items()):
        seconds = (max(ph.requests) - min(ph.requests)) if len(ph.requests) > 1 else 0.0
        rates = ", ".join(f"busiest {w:.0f} s: {ph.busiest(w)} ({ph.busiest(w) / w:.1f}/s)"
                          for w in WINDOWS)
        lim = f"limit {limit:g}/s" if eid == LIMITED and limit else "no limit"
        lines.append(f"  {eid} ({lim}): {len(ph.requests)} REST requests in {seconds:.1f} s; "
                     f"{rates}; {ph.rejected} answered 429")
        if ph.calls:
            ok = sum(c.outcome == "ok" for c in ph.calls)
            lines.append(f"      {ok}/{len(ph.calls)} activated in {ph.span():.1f} s "
                         f"({ok / max(ph.span(), 1e-9):.1f}/s); call latency p50 "
                         f"{ph.latency(0.5):.2f} s, p95 {ph.latency(0.95):.2f} s, max "
                         f"{ph.latency(1.0):.2f} s; {sum(c.retried_9119 for c in ph.calls)}"
                         f" calls answered 9119 and retried")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kgw-ratelimit-"))
    work.mkdir(parents=True, exist_ok=True)
    db = args.db or f"sqlite:///{work}/gateway.db"
    processes = args.processes if db.startswith("postgres") else 1
    prepare_db(db)
    sandbox = SandboxProcess(log_path=work / "sandbox.log").start()
    merchants = {LIMITED: {"rest_rate_limit": args.limit, "rest_rate_burst": args.burst}}
    config = write_config(work / "gateway.toml", sandbox.url, merchants=merchants)
    db_upgrade(db)
    gateways = [GatewayProcess(config, db, log_path=work / f"gateway-{i}.log")
                for i in range(processes)]
    try:
        for gw in gateways:
            gw.start()
        if args.klarna_limit:
            sandbox.fault(path="^/ordermanagement/", action="rate_limit", eid=LIMITED,
                          per_second=args.klarna_limit, retry_after=1, times=None)
        eids = [LIMITED, OTHER] * (args.orders // 2)
        with ThreadPoolExecutor(16) as pool:
            order_ids = list(pool.map(lambda eid: sandbox.create_order(eid), eids))
        sandbox.clear_requests()
        started = time.monotonic()

        def register(pair: tuple[int, tuple[int, str]]) -> Call:
            n, (eid, order_id) = pair
            return Call(eid, gateways[n % len(gateways)].register(eid, order_id), order_id)
        with ThreadPoolExecutor(2 * args.workers) as pool:
            calls = list(pool.map(register, enumerate(zip(eids, order_ids))))
        registered = time.monotonic() - started
        registration = split_log(sandbox.requests(), (LIMITED, OTHER))
        sandbox.clear_requests()
        run_batch(calls, gateways, args.workers, args.client_timeout)
        batch = split_log(sandbox.requests(), (LIMITED, OTHER))
        for c in calls:
            batch[c.eid].calls.append(c)
        metrics = gateway_metrics(gateways)
        sandbox.clear_faults()
        once = captured_once(sandbox, calls)
    finally:
        for gw in gateways:
            gw.stop()
        sandbox.stop()

    print(f"# {len(calls)} activations ({args.orders // 2} per merchant) through "
          f"{processes} gateway process(es) on {db.split('?')[0]}; "
          f"{args.workers} ERP workers per merchant; Klarna's limit for {LIMITED} in the "
          f"sandbox: {args.klarna_limit or 'none'}/s (429, Retry-After: 1)")
    for line in report_phase(f"registration of the orders ({registered:.1f} s)",
                             registration, args.limit):
        print(line)
    for line in report_phase("the batch of activations", batch, args.limit):
        print(line)
    print("# gateways' metrics (all processes): " + "; ".join(
        f"{eid}: {metrics[('waits', str(eid))]:.0f} slots waited for "
        f"({metrics[('waited_s', str(eid))]:.1f} s in all), "
        f"{metrics[('throttled', str(eid))]:.0f} throttled, "
        f"{metrics[('429s', str(eid))]:.0f} 429s received" for eid in (LIMITED, OTHER)))
    most = max(ph.busiest(5.0) for ph in (registration[LIMITED], batch[LIMITED]))
    busiest = most / 5.0
    other_waits = metrics[("waits", str(OTHER))] + metrics[("throttled", str(OTHER))]
    activated = sum(c.outcome == "ok" for c in calls)
    print(f"{LIMITED}: at most {busiest:.1f} requests/s over any 5 s "
          f"(limit {args.limit:g}); {OTHER}: {metrics[('waits', str(OTHER))]:.0f} waits, "
          f"{metrics[('throttled', str(OTHER))]:.0f} throttled; {activated}/{len(calls)} "
          f"activated, {'each captured once' if once == len(calls) else f'{once} captured once'}")
    within = not args.limit or most <= args.limit * 5.0 + args.burst
    return 0 if within and other_waits == 0 and activated == once == len(calls) else 1


if __name__ == "__main__":
    sys.exit(main())
