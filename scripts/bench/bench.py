#!/usr/bin/env python3
"""Benchmark: the gateway's ``cancel_reservation`` against a bare twisted.web.xmlrpc server.

One command, one load generator (threads with keep-alive HTTP/1.1 connections, identical
for every target), three targets measured in the same run:

1. ``bare``: a bare ``twisted.web.xmlrpc`` server answering ``cancel_reservation`` "ok";
2. ``gateway``: ``klarna-gateway serve`` (SQLite store) cancelling a fresh AUTHORIZED order
   per request, with the sandbox in a separate process: digest check, journal, GET order,
   POST cancel with an idempotency key, reply;
3. ``rest``: the same load generator calling the sandbox's ``GET order`` + ``POST cancel``
   directly, the REST work the gateway does per call.

Prints requests/s for bare and gateway and their ratio, and p50/p99 latency of the gateway
minus the direct REST calls (the latency the gateway adds).

    python scripts/bench/bench.py --requests 1000 --concurrency 8
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.testing.processes import (  # noqa: E402
    REST_AUTH, GatewayProcess, SandboxProcess, _wait_http, db_upgrade, free_port,
    write_config,
)

SECRET = "sandbox-secret"


def cancel_body(rno: str, eid: int = 1234) -> bytes:
    digest = base64.b64encode(hashlib.sha512(f"{eid}:{rno}:{SECRET}".encode("latin-1"))
                              .digest()).decode()
    return xmlrpc.client.dumps(("4.1", "python:api:3.1.0", rno, eid, digest),
                               "cancel_reservation", encoding="iso-8859-1").encode("latin-1")


Request = Callable[[http.client.HTTPConnection, int], None]


def load(port: int, n: int, concurrency: int, request: Request) -> tuple[float, list[float]]:
    """Run ``request(conn, i)`` for i in 0..n-1 over ``concurrency`` keep-alive connections."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            request(conn, i)
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - t0), latencies


def xmlrpc_request(bodies: list[bytes]) -> Request:
    def request(conn: http.client.HTTPConnection, i: int) -> None:
        conn.request("POST", "/", bodies[i], {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200 or b"<fault>" in data or b"ok" not in data:
            raise RuntimeError(f"bad reply: {data[:200]!r}")
    return request


def rest_request(order_ids: list[str]) -> Request:
    auth = "Basic " + base64.b64encode(":".join(REST_AUTH[1234]).encode()).decode()

    def request(conn: http.client.HTTPConnection, i: int) -> None:
        path = f"/ordermanagement/v1/orders/{order_ids[i]}"
        conn.request("GET", path, headers={"Authorization": auth})
        r = conn.getresponse()
        r.read()
        conn.request("POST", path + "/cancel", b"", {"Authorization": auth,
                                                     "Klarna-Idempotency-Key": f"bench-{i}"})
        r = conn.getresponse()
        r.read()
        if r.status != 204:
            raise RuntimeError(f"cancel answered {r.status}")
    return request


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--db", default=None, help="gateway store URL (default: SQLite in a temp dir)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kgw-bench-"))
    n, c = args.requests, args.concurrency

    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_xmlrpc.py")),
                             str(bare_port)])
    sandbox = SandboxProcess(log_path=work / "sandbox.log").start()
    config = write_config(work / "gw.toml", sandbox.url)
    db = args.db or f"sqlite:///{work}/gw.db"
    db_upgrade(db)
    gw = GatewayProcess(config, db, log_path=work / "gw.log").start()
    try:
        _wait_http(f"http://127.0.0.1:{bare_port}/", bare)
        print(f"preparing {2 * n} sandbox orders ...", file=sys.stderr)
        gw_orders = [sandbox.create_order() for _ in range(n)]
        rnos = [gw.register(1234, o) for o in gw_orders]
        rest_orders = [sandbox.create_order() for _ in range(n)]
        warm = [sandbox.create_order() for _ in range(20)]
        load(gw.port, 20, 2, xmlrpc_request([cancel_body(gw.register(1234, o)) for o in warm]))

        bare_rps, bare_lat = load(bare_port, n, c, xmlrpc_request([cancel_body(r) for r in rnos]))
        gw_rps, gw_lat = load(gw.port, n, c, xmlrpc_request([cancel_body(r) for r in rnos]))
        rest_rps, rest_lat = load(sandbox.port, n, c, rest_request(rest_orders))
    finally:
        gw.stop()
        sandbox.stop()
        bare.terminate()
        bare.wait()
    print(f"requests={n} concurrency={c} store={db.split(':')[0]} (load generator, bare server, gateway and sandbox "
          f"share the machine's cores)")
    print(f"bare twisted.web.xmlrpc cancel_reservation: {bare_rps:8.1f} req/s  "
          f"p50 {pct(bare_lat, .5):6.2f} ms  p99 {pct(bare_lat, .99):6.2f} ms")
    print(f"gateway cancel_reservation (full path):     {gw_rps:8.1f} req/s  "
          f"p50 {pct(gw_lat, .5):6.2f} ms  p99 {pct(gw_lat, .99):6.2f} ms")
    print(f"direct REST GET order + POST cancel:        {rest_rps:8.1f} req/s  "
          f"p50 {pct(rest_lat, .5):6.2f} ms  p99 {pct(rest_lat, .99):6.2f} ms")
    print(f"gateway / bare throughput ratio: {gw_rps / bare_rps:.3f}")
    print(f"latency added over direct REST: p50 {pct(gw_lat, .5) - pct(rest_lat, .5):+.2f} ms, "
          f"p99 {pct(gw_lat, .99) - pct(rest_lat, .99):+.2f} ms")
    print(f"(mean gateway {statistics.mean(gw_lat) * 1000:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
