#!/usr/bin/env python3
"""Benchmark: the gateway against a server doing the same REST work, in one run.

One load generator (wrk, one thread, with ``bodies.lua``; the Python generator in
``load.py`` where wrk is not installed), one sandbox in its own process
(``klarna-gateway sandbox``), and these targets measured one after another:

1. ``bare XML-RPC`` (``bare_xmlrpc.py``): answers at once; the floor of any Twisted
   XML-RPC server;
2. ``same-work proxy`` (``proxy_xmlrpc.py``): the gateway's REST work and nothing else
   (``GET order`` + ``POST cancel``; ``GET order`` + ``POST captures``), no digest, no
   store: the reference the gateway is held against;
3. ``gateway (SQLite)`` and 4. ``gateway (PostgreSQL)``: ``klarna-gateway serve`` with a
   generated config whose merchant points at the sandbox, on a fresh SQLite file and a
   fresh PostgreSQL schema (``db upgrade`` first).

Calls: ``cancel_reservation`` (one distinct AUTHORIZED order each: a cancelled reservation
cannot be cancelled again) and a partial ``activate`` (1 x ART-1 of an order with 2 x ART-1
and 3 x ART-2, one activation per order, so every call does the same work and none is
answered from the gateway's coalescing). Request bodies are built by the official Python
SDK itself (digests included). Orders are created in the sandbox directly and registered
through the gateway's admin API (``POST /v1/reservations``), concurrently, outside the
measured time; how many is sized from a warm-up run, so faster code gets enough orders.

Per target and call: a warm-up, then ``--connections`` connections for ``--duration`` s
(throughput, p50, p99), then 1 connection for ``--single-duration`` s (p50 at one
connection: the target is the gateway adding at most 1 ms over the same-work proxy).
Every reply is checked; a run with faults, socket errors or reused bodies is reported
INVALID and the exit status is 1. With ``--processes N`` (N >= 2) the PostgreSQL gateway
is also measured as 1 and as N processes behind one HAProxy front, for N-process /
1-process throughput. The sandbox forgets its orders between targets, so each sees the
same sandbox.

The machine's cores are shared (generator, servers, sandbox, PostgreSQL, and whatever else
runs there), so each run also reports where the CPU went: ``other`` is processes outside
this bench. A measured run first waits for others to quieten (``--quiet-wait``), is
measured again if they still took more than ``--quiet-threshold`` cores, and is marked
DISTURBED if every attempt was.

    python scripts/bench/bench.py                      # everything, about 7 min when quiet
    python scripts/bench/bench.py --no-pg --processes 1 --duration 5
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402
import load  # noqa: E402
from front import haproxy_front  # noqa: E402

METHODS = ("cancel_reservation", "activate")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


class OrderPool:
    """Fresh AUTHORIZED orders for one target, seeded on demand.

    Orders a run did not reach (past the last body sent) are untouched, so they are kept
    for the target's next run instead of seeding that many again; cancel and partial
    activate both start from such an order.
    """

    def __init__(self, sandbox: h.Service, gateway: h.Service | None, admin_token: str,
                 concurrency: int) -> None:
        self.sandbox, self.gateway = sandbox, gateway
        self.admin_token, self.concurrency = admin_token, concurrency
        self.spare: list[str] = []

    def take(self, n: int) -> list[str]:
        if len(self.spare) < n:
            missing = n - len(self.spare)
            t0 = time.perf_counter()
            self.spare += h.seed(self.sandbox, missing, self.gateway, self.admin_token,
                                 concurrency=self.concurrency)
            log(f"  seeded {missing} orders in {time.perf_counter() - t0:.1f} s")
        out, self.spare = self.spare[:n], self.spare[n:]
        return out

    def give_back(self, rnos: list[str], result: load.Result, connections: int) -> None:
        """Keep what ``result`` never sent (completed calls + at most one in flight per
        connection were sent; nothing is left when the bodies wrapped)."""
        if not result.wrapped:
            self.spare = rnos[result.requests + connections:] + self.spare


#: Orders for a target (None: it needs none, any rno will do).
Pool = OrderPool | None


@dataclass
class Point:
    """One target x call: the loaded run and the one-connection run."""

    target: str
    method: str
    loaded: load.Result
    single: load.Result | None
    reusable: bool
    #: cores used during the loaded run, by group (see ``harness.cpu_split``)
    cores: dict[str, float]
    #: cores used by processes outside this bench during the one-connection run
    single_other: float = 0.0

    def disturbed(self, threshold: float) -> bool:
        return max(self.cores.get("other", 0.0), self.single_other) > threshold

    def problems(self) -> list[str]:
        out = [f"{self.target} {self.method} ({self.loaded.generator}, loaded): {p}"
               for p in self.loaded.problems(self.reusable)]
        if self.single is not None:
            out += [f"{self.target} {self.method} (1 connection): {p}"
                    for p in self.single.problems(self.reusable)]
        return out


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    """Runs loads against targets; owns the sandbox, the bodies builder and the work dir."""

    def __init__(self, args: argparse.Namespace, work: Path, sandbox: h.Service,
                 config: h.BenchConfig) -> None:
        self.args = args
        self.work = work
        self.sandbox = sandbox
        self.config = config
        self.sdk = h.LegacyBodies()
        self.use_wrk = args.generator == "wrk" or (args.generator == "auto" and load.have_wrk())
        self.runs = 0
        #: processes of the target being measured (their CPU is the "target" share)
        self.target_pids: list[int] = []
        #: CPU-seconds by group of the last run
        self.last_cpu: dict[str, float] = {}

    @property
    def generator_name(self) -> str:
        if self.use_wrk:
            return "wrk (1 thread)"
        return "Python threads" + ("" if load.have_wrk() else " (wrk not installed)")

    def bodies(self, method: str, rnos: list[str]) -> list[bytes]:
        build = self.sdk.cancel if method == "cancel_reservation" else self.sdk.activate
        return [build(rno) for rno in rnos]

    def run(self, service: h.Service, bodies: list[bytes], connections: int,
            seconds: int, measured: bool = True) -> load.Result:
        """One load run; records in ``last_cpu`` where the machine's CPU went meanwhile.
        A measured run first waits (``--quiet-wait``) for others' load to subside."""
        path = None
        if self.use_wrk:
            self.runs += 1
            path = load.write_bodies(self.work / f"bodies-{self.runs}.bin", bodies)
        if measured:
            self.wait_quiet()
        before = h.cpu_snapshot()
        try:
            if path is None:
                result = load.run_python(service.port, bodies, connections, seconds)
            else:
                result = load.run_wrk(service.url, path, connections, seconds)
        finally:
            if path is not None:
                path.unlink()
        self.last_cpu = h.cpu_split(before, h.cpu_snapshot(),
                                    {"target": self.target_pids, "sandbox": [self.sandbox.pid]})
        if result.seconds:
            self.last_cpu = {k: v / result.seconds for k, v in self.last_cpu.items()}
        return result

    def wait_quiet(self) -> None:
        """Until processes outside this bench use less than ``--quiet-threshold`` cores
        (sampled over half a second), for at most ``--quiet-wait`` seconds."""
        deadline = time.monotonic() + self.args.quiet_wait
        waited = False
        while True:
            before = h.cpu_snapshot()
            time.sleep(0.5)
            other = h.cpu_split(before, h.cpu_snapshot(), {})["other"] / 0.5
            if other < self.args.quiet_threshold:
                if waited:
                    log("  machine quiet again")
                return
            if time.monotonic() >= deadline:
                log(f"  others still use {other:.2f} cores; measuring anyway")
                return
            if not waited:
                log(f"  others use {other:.2f} cores; waiting up to {self.args.quiet_wait} s")
                waited = True

    def reset_sandbox(self) -> None:
        """Forget all orders (the control API), so every target meets the same sandbox."""
        req = urllib.request.Request(self.sandbox.url + "sandbox/v1/reset", data=b"{}",
                                     method="POST",
                                     headers={"Authorization": f"Bearer {self.config.admin_token}"})
        with urllib.request.urlopen(req, timeout=30):
            pass

    def pool(self, gateway: h.Service | None) -> OrderPool:
        """Orders for the proxy (``gateway`` None: order ids are its rnos) or a gateway."""
        return OrderPool(self.sandbox, gateway, self.config.admin_token,
                         self.args.seed_concurrency)

    @staticmethod
    def rnos(pool: Pool, n: int) -> list[str]:
        if pool is None:
            return [str(8000000000 + i) for i in range(min(n, 5000))]
        return pool.take(n)

    def measure(self, target: str, service: h.Service, method: str, pool: Pool, *,
                single: bool = True) -> Point:
        a = self.args
        log(f"{target}: {method}: warm-up {a.warmup} s")
        warm_rnos = self.rnos(pool, a.warmup_orders)
        warm = self.run(service, self.bodies(method, warm_rnos), a.connections, a.warmup,
                        measured=False)
        if pool is not None:
            pool.give_back(warm_rnos, warm, a.connections)
        loaded, cores = self._least_disturbed(
            lambda: self._seeded_run(service, method, pool, warm.rps, a.connections,
                                     a.duration, a.seed_margin))
        log(f"  {loaded.rps:.0f} calls/s, p50 {loaded.p50_ms:.2f} ms, p99 "
            f"{loaded.p99_ms:.2f} ms, faults {loaded.faults}")
        one: load.Result | None = None
        single_cores: dict[str, float] = {}
        if single:
            # one connection never outruns the loaded rate: it is an upper bound
            one, single_cores = self._least_disturbed(
                lambda: self._seeded_run(service, method, pool, loaded.rps, 1,
                                         a.single_duration, 1.1))
            log(f"  1 connection: p50 {one.p50_ms:.2f} ms ({one.rps:.0f} calls/s)")
        return Point(target, method, loaded, one, reusable=pool is None, cores=cores,
                     single_other=single_cores.get("other", 0.0))

    def _least_disturbed(self, attempt: Callable[[], load.Result]
                         ) -> tuple[load.Result, dict[str, float]]:
        """Run ``attempt`` again (up to ``--disturbed-retries`` times) while others took
        more than ``--quiet-threshold`` cores during it; keep the least disturbed one."""
        best: tuple[load.Result, dict[str, float]] | None = None
        for i in range(1 + self.args.disturbed_retries):
            result = attempt()
            cpu = self.last_cpu
            if best is None or cpu.get("other", 0.0) < best[1].get("other", 0.0):
                best = (result, cpu)
            if cpu.get("other", 0.0) <= self.args.quiet_threshold:
                break
            if i < self.args.disturbed_retries:
                log(f"  others used {cpu.get('other', 0.0):.2f} cores meanwhile; measuring again")
        assert best is not None
        return best

    def _seeded_run(self, service: h.Service, method: str, pool: Pool, rate: float,
                    connections: int, seconds: int, margin: float) -> load.Result:
        """A run with ``rate x seconds x margin + 200`` fresh orders; if it still ran out
        (the estimate came from a colder run), seeded from its own rate and run again."""
        result = load.Result(0, 0, 0, 0, 0, 0, 0, "none")
        for _ in range(2):
            rnos = self.rnos(pool, int(rate * seconds * margin) + 200)
            result = self.run(service, self.bodies(method, rnos), connections, seconds)
            if pool is None:
                break
            pool.give_back(rnos, result, connections)
            if not result.wrapped:
                break
            log("  ran out of orders; seeding more and running again")
            rate = result.rps * 1.3
        return result


# -- targets --------------------------------------------------------------------------------

def measure_target(bench: Bench, target: str, start: Callable[[], h.Service],
                   pool_of: Callable[[h.Service], Pool]) -> list[Point]:
    bench.reset_sandbox()
    service = start()
    bench.target_pids = [service.pid]
    try:
        pool = pool_of(service)
        return [bench.measure(target, service, m, pool) for m in METHODS]
    finally:
        service.stop()


def main_targets(bench: Bench, pg_url: str | None) -> list[Point]:
    work, sandbox, config = bench.work, bench.sandbox, bench.config
    points = measure_target(bench, "bare XML-RPC",
                            lambda: h.start_script(work, "bare", "bare_xmlrpc.py"),
                            lambda s: None)
    points += measure_target(
        bench, "same-work proxy",
        lambda: h.start_script(work, "proxy", "proxy_xmlrpc.py", "--sandbox", sandbox.url,
                               "--username", h.REST_USER, "--password", h.REST_PASSWORD),
        lambda s: bench.pool(None))
    points += measure_target(
        bench, "gateway (SQLite)",
        lambda: h.start_gateway(work, config.path, f"sqlite:///{work}/gateway.db",
                                "gateway-sqlite"),
        lambda s: bench.pool(s))
    if pg_url is not None:
        points += measure_target(
            bench, "gateway (PostgreSQL)",
            lambda: h.start_gateway(work, config.path, pg_url, "gateway-pg"),
            lambda s: bench.pool(s))
    return points


def multi_process(bench: Bench, pg_url: str, processes: int) -> list[Point]:
    """The PostgreSQL gateway as 1 and as ``processes`` processes behind one HAProxy."""
    points: list[Point] = []
    for n in (1, processes):
        bench.reset_sandbox()
        gateways = []
        try:
            for i in range(n):
                gateways.append(h.start_gateway(bench.work, bench.config.path, pg_url,
                                                f"gateway-pg-{i + 1}"))
            with haproxy_front(bench.work, gateways) as front:
                bench.target_pids = [front.pid] + [g.pid for g in gateways]
                label = f"{n} process{'es' if n > 1 else ''} + haproxy"
                pool = bench.pool(gateways[0])
                for m in METHODS:
                    points.append(bench.measure(label, front, m, pool, single=False))
        finally:
            for g in gateways:
                g.stop()
    return points


# -- report ---------------------------------------------------------------------------------

def fmt_table(points: list[Point], threshold: float) -> list[str]:
    lines = [f"{'target':<24} {'call':<19} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'p50@1 ms':>9} {'faults':>7}   cores: target sandbox pg gen other (@1)"]
    for p in points:
        single = f"{p.single.p50_ms:9.2f}" if p.single else f"{'-':>9}"
        faults = p.loaded.faults + (p.single.faults if p.single else 0)
        c = p.cores
        flag = "  DISTURBED" if p.disturbed(threshold) else ""
        lines.append(f"{p.target:<24} {p.method:<19} {p.loaded.rps:9.1f} "
                     f"{p.loaded.p50_ms:8.2f} {p.loaded.p99_ms:8.2f} {single} {faults:7d}   "
                     f"{c.get('target', 0):13.2f} {c.get('sandbox', 0):7.2f} "
                     f"{c.get('postgres', 0):4.2f} {c.get('wrk', 0) + c.get('bench', 0):4.2f} "
                     f"{c.get('other', 0):5.2f}"
                     + (f" ({p.single_other:.2f})" if p.single else "") + flag)
    return lines


def fmt_ratios(points: list[Point]) -> list[str]:
    by = {(p.target, p.method): p for p in points}
    lines = ["gateway / same-work proxy (throughput ratio; p50 added at 1 connection, target "
             "<= +1 ms):"]
    for method in METHODS:
        ref = by.get(("same-work proxy", method))
        if ref is None:
            continue
        for target in ("gateway (SQLite)", "gateway (PostgreSQL)"):
            p = by.get((target, method))
            if p is None:
                continue
            added = (p.single.p50_ms - ref.single.p50_ms) if p.single and ref.single else 0.0
            lines.append(f"  {method:<19} {target:<21} {p.loaded.rps / ref.loaded.rps:5.2f}x "
                         f"({p.loaded.rps:.0f} / {ref.loaded.rps:.0f} calls/s)   "
                         f"p50@1 {added:+.2f} ms ({p.single.p50_ms if p.single else 0:.2f} vs "
                         f"{ref.single.p50_ms if ref.single else 0:.2f})")
    return lines


def fmt_multi(points: list[Point], processes: int) -> list[str]:
    lines = [f"PostgreSQL, {processes} processes / 1 process behind haproxy "
             "(throughput ratio):"]
    one = {p.method: p for p in points if p.target.startswith("1 process")}
    many = {p.method: p for p in points if not p.target.startswith("1 process")}
    for method in METHODS:
        if method in one and method in many:
            a, b = one[method].loaded.rps, many[method].loaded.rps
            lines.append(f"  {method:<19} {b / a:5.2f}x ({b:.0f} / {a:.0f} calls/s)")
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--connections", type=int, default=20, help="connections of the loaded run")
    p.add_argument("--duration", type=int, default=10, help="seconds of the loaded run")
    p.add_argument("--single-duration", type=int, default=5,
                   help="seconds of the one-connection run")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per target and call")
    p.add_argument("--warmup-orders", type=int, default=1000,
                   help="orders seeded for a warm-up (bodies cycle if it is faster)")
    p.add_argument("--seed-margin", type=float, default=1.5,
                   help="orders seeded = warm-up calls/s x duration x this + 200")
    p.add_argument("--seed-concurrency", type=int, default=8, help="parallel seeding workers")
    p.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL DSN (a fresh schema is made)")
    p.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL targets")
    p.add_argument("--processes", type=int, default=2,
                   help="also run N PostgreSQL gateways behind haproxy vs 1 (N < 2: skip)")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator (auto: wrk if installed)")
    p.add_argument("--quiet-wait", type=int, default=30,
                   help="before a measured run, wait at most this long for others' load to fall")
    p.add_argument("--quiet-threshold", type=float, default=0.2,
                   help="cores others may use for the machine to count as quiet")
    p.add_argument("--disturbed-retries", type=int, default=2,
                   help="measure a run again this often if others' load disturbed it")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (logs, SQLite file) and the PostgreSQL schema")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="kgw-bench-"))
    pg_url, schema = None, f"bench_{uuid.uuid4().hex[:8]}"
    if not args.no_pg:
        pg_url = h.pg_create_schema(args.pg, schema)
        h.db_upgrade(pg_url)
    sandbox_port = h.free_port()
    config = h.write_config(work / "bench.toml", f"http://127.0.0.1:{sandbox_port}")
    sandbox = h.start_sandbox(work, config.path, sandbox_port)
    bench = Bench(args, work, sandbox, config)
    try:
        points = main_targets(bench, pg_url)
        multi: list[Point] = []
        if pg_url is not None and args.processes >= 2:
            if shutil.which("haproxy"):
                multi = multi_process(bench, pg_url, args.processes)
            else:
                log("haproxy not installed (apt-get install -y haproxy): no multi-process run")
    finally:
        sandbox.stop()
        if pg_url is not None and not args.keep:
            h.pg_drop_schema(args.pg, schema)
    report(args, bench, points, multi, time.monotonic() - started, work)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(p.problems() for p in points + multi) else 0


def report(args: argparse.Namespace, bench: Bench, points: list[Point], multi: list[Point],
           elapsed: float, work: Path) -> None:
    print(f"klarna-gateway bench: load generator {bench.generator_name}; "
          f"{args.connections} connections x {args.duration} s and 1 connection x "
          f"{args.single_duration} s per target and call, after {args.warmup} s warm-up; "
          "sandbox in its own process; generator, servers, sandbox and PostgreSQL share "
          f"this machine's {os.cpu_count()} cores")
    print("cores = CPU cores each used during the loaded run (gen = load generator and this "
          "script; "
          "other = processes outside this bench, i.e. someone else's load on the machine; pg "
          "counts every PostgreSQL backend, others' too)")
    print("\n".join(fmt_table(points, args.quiet_threshold)))
    print("\n".join(fmt_ratios(points)))
    if multi:
        print("\n".join(fmt_table(multi, args.quiet_threshold)))
        print("\n".join(fmt_multi(multi, args.processes)))
    disturbed = [f"{p.target} {p.method}" for p in points + multi
                 if p.disturbed(args.quiet_threshold)]
    if disturbed:
        print(f"DISTURBED (others used more than {args.quiet_threshold} cores during the run; "
              "treat these figures as low): " + ", ".join(disturbed))
    problems = [x for p in points + multi for x in p.problems()]
    if problems:
        print("INVALID run:\n  " + "\n  ".join(problems))
    else:
        print("all replies were successes (0 faults, 0 socket errors, no body reused)")
    print(f"elapsed {elapsed:.0f} s" + (f"; work directory {work}" if args.keep else ""))


if __name__ == "__main__":
    sys.exit(main())
