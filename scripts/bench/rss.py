#!/usr/bin/env python3
"""Memory: the gateway process's RSS growth over many calls after a warm-up (target <= 10 %).

Which calls, and why: each seeded order gets three calls, in this order, a chunk of orders
apart: ``extend_expiry_date``, a partial ``activate`` (1 x ART-1) and ``cancel_reservation``
(which then releases the uncaptured rest). So

* every call goes the full path (digest, journal, lease, REST, reply): all three are
  distinct, so none is answered from the gateway's coalescing (an identical call within
  30 s would be, and repeating one cheap call on a few reservations would measure the
  replay path, not the real one);
* every call touches a *different* reservation than most before it, so a per-order
  structure that is never freed (leases, caches keyed by order or fingerprint) shows up
  as growth; a loop over a small set of reservations would hide it;
* the three most different paths are covered (a mutation answered with a date read back,
  a capture that allocates an invno, a status change), at a third of the seeding that
  cancel-only would need (100,000 calls = 33,334 orders instead of 100,000).

Orders are created and registered before the warm-up; the baseline is the RSS right after
the warm-up, so start-up and first-use allocations are not counted as growth. RSS
(``VmRSS``) is printed every ``--interval`` calls. The load generator is the Python one
(threads, keep-alive): it sends an exact number of calls, which wrk cannot.

    python scripts/bench/rss.py                        # 100,000 calls, several minutes
    python scripts/bench/rss.py --calls 20000 --db postgresql
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402
import load  # noqa: E402


def mixed_bodies(sdk: h.LegacyBodies, rnos: list[str], chunk: int) -> list[bytes]:
    """extend x chunk, activate x chunk, cancel x chunk, per chunk of orders: the calls on
    one order are ``chunk`` calls apart, so they never overlap (one call per order at a
    time) and each finds the order in the state it needs."""
    bodies: list[bytes] = []
    for start in range(0, len(rnos), chunk):
        part = rnos[start:start + chunk]
        bodies += [sdk.extend(r) for r in part]
        bodies += [sdk.activate(r) for r in part]
        bodies += [sdk.cancel(r) for r in part]
    return bodies


@dataclass
class _Mark:
    """Where an RSS interval starts: time, calls done, CPU snapshot."""

    t: float
    done: int
    cpu: dict[tuple[int, int], Any]


def mib(kib: int) -> float:
    return kib / 1024


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--calls", type=int, default=100_000, help="measured calls")
    p.add_argument("--warmup-calls", type=int, default=6_000, help="calls before the baseline")
    p.add_argument("--interval", type=int, default=10_000, help="print RSS every N calls")
    p.add_argument("--connections", type=int, default=20, help="concurrent connections")
    p.add_argument("--chunk", type=int, default=1000,
                   help="orders per chunk (calls on one order are this many calls apart)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                   help="gateway store")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="PostgreSQL DSN (with --db postgresql; a fresh schema is made)")
    p.add_argument("--seed-concurrency", type=int, default=8, help="parallel seeding workers")
    p.add_argument("--limit", type=float, default=10.0, help="allowed growth, percent")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="kgw-rss-"))
    schema = f"bench_rss_{uuid.uuid4().hex[:8]}"
    db_url = f"sqlite:///{work}/gateway.db"
    if args.db == "postgresql":
        db_url = h.pg_create_schema(args.pg, schema)
        h.db_upgrade(db_url)
    port = h.free_port()
    config = h.write_config(work / "bench.toml", f"http://127.0.0.1:{port}")
    sandbox = h.start_sandbox(work, config.path, port)
    gateway = None
    try:
        gateway = h.start_gateway(work, config.path, db_url)
        return measure(args, sandbox, gateway, config)
    finally:
        if gateway is not None:
            gateway.stop()
        sandbox.stop()
        if args.db == "postgresql":
            h.pg_drop_schema(args.pg, schema)
        shutil.rmtree(work, ignore_errors=True)
        print(f"elapsed {time.monotonic() - started:.0f} s", flush=True)


def measure(args: argparse.Namespace, sandbox: h.Service, gateway: h.Service,
            config: h.BenchConfig) -> int:
    sdk = h.LegacyBodies()
    orders = -(-(args.calls + args.warmup_calls) // 3)
    t0 = time.monotonic()
    rnos = h.seed(sandbox, orders, gateway, config.admin_token,
                  concurrency=args.seed_concurrency)
    print(f"seeded {orders} orders in {time.monotonic() - t0:.0f} s; gateway pid "
          f"{gateway.pid}, RSS {mib(h.rss_kib(gateway.pid)):.1f} MiB", flush=True)
    bodies = mixed_bodies(sdk, rnos, args.chunk)
    warm = load.run_python(gateway.port, bodies[:args.warmup_calls], args.connections)
    time.sleep(1.0)
    base = h.rss_kib(gateway.pid)
    print(f"warm-up: {warm.requests} calls, {warm.faults} faults; baseline RSS "
          f"{mib(base):.1f} MiB", flush=True)
    print(f"{'calls':>8} {'seconds':>8} {'RSS MiB':>8} {'growth':>8} {'calls/s':>8} "
          f"{'gw cores':>8} {'others':>7}", flush=True)
    measured = bodies[args.warmup_calls:args.warmup_calls + args.calls]
    # per interval: the rate, and the cores of the gateway and of processes outside this
    # script (a slowdown with idle others means per-call cost grows, e.g. with table size)
    last = _Mark(time.monotonic(), 0, h.cpu_snapshot())
    t1 = last.t
    lock = threading.Lock()

    def sample(done: int) -> None:
        nonlocal last
        if done % args.interval and done != len(measured):
            return
        rss, mark = h.rss_kib(gateway.pid), _Mark(time.monotonic(), done, h.cpu_snapshot())
        with lock:
            span = max(mark.t - last.t, 1e-9)
            cpu = h.cpu_split(last.cpu, mark.cpu, {"gateway": [gateway.pid],
                                                   "sandbox": [sandbox.pid]})
            print(f"{done:8d} {mark.t - t1:8.0f} {mib(rss):8.1f} "
                  f"{(rss - base) / base * 100:+7.1f}% {(done - last.done) / span:8.0f} "
                  f"{cpu['gateway'] / span:8.2f} {cpu['other'] / span:7.2f}", flush=True)
            last = mark

    result = load.run_python(gateway.port, measured, args.connections, on_done=sample)
    time.sleep(1.0)
    end = h.rss_kib(gateway.pid)
    growth = (end - base) / base * 100
    print(f"{result.requests} calls ({result.rps:.0f} calls/s, {args.db}), {result.faults} "
          f"faults, {result.errors} socket errors", flush=True)
    verdict = "within" if growth <= args.limit else "OVER"
    print(f"RSS {mib(base):.1f} -> {mib(end):.1f} MiB: growth {growth:+.1f} % over "
          f"{result.requests} calls ({verdict} the {args.limit:.0f} % target)", flush=True)
    if result.faults or result.errors or warm.faults:
        print("INVALID run: some calls failed", flush=True)
        return 1
    return 0 if growth <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
