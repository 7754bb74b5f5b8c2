#!/usr/bin/env python3
"""CPU per call: what one legacy call costs the serving process, sequentially, in CPU-seconds.

Where ``bench.py`` measures throughput (and needs a quiet machine), this counts the CPU
ticks the target process used for N calls sent one after another on one keep-alive
connection: a figure that hardly moves when other work shares the cores, so the journal's
cost can be followed while the code changes. Targets: the same-work proxy
(``proxy_xmlrpc.py``) and the gateway on SQLite or PostgreSQL; ``--profile FILE`` records
the gateway with py-spy (``--format raw``: collapsed stacks, one line per stack).

    python scripts/bench/cpu_per_call.py --calls 2000 --method cancel_reservation
    python scripts/bench/cpu_per_call.py --target gateway-pg --profile /tmp/gw.txt
"""
from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def ticks(pid: int) -> int:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def drive(port: int, bodies: list[bytes]) -> float:
    """Send every body on one keep-alive connection; the wall seconds taken."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    for body in bodies:
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        reply = resp.read()
        if resp.status != 200 or b"<fault>" in reply:
            raise RuntimeError(f"call failed: {resp.status} {reply[:300]!r}")
    return time.monotonic() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=("proxy", "gateway", "gateway-pg"), default="gateway")
    p.add_argument("--method", choices=("cancel_reservation", "activate"),
                   default="cancel_reservation")
    p.add_argument("--calls", type=int, default=1000, help="measured calls")
    p.add_argument("--warmup", type=int, default=200, help="calls before measuring")
    p.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL DSN (gateway-pg)")
    p.add_argument("--profile", help="py-spy raw profile of the target, written here")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cpu-per-call-"))
    services: list[h.Service] = []
    schema = None
    try:
        port = h.free_port()
        cfg = h.write_config(work / "bench.toml", f"http://127.0.0.1:{port}")
        sandbox = h.start_sandbox(work, cfg.path, port)
        services.append(sandbox)
        if args.target == "proxy":
            target = h.start_script(work, "proxy", "proxy_xmlrpc.py", "--sandbox",
                                    sandbox.url.rstrip("/"))
            services.append(target)
            rnos = h.seed(sandbox, args.calls + args.warmup)
        else:
            if args.target == "gateway-pg":
                schema = "cpu_" + uuid.uuid4().hex[:8]
                db = h.pg_create_schema(args.pg, schema)
            else:
                db = f"sqlite:///{work}/gateway.db"
            h.db_upgrade(db)
            target = h.start_gateway(work, cfg.path, db)
            services.append(target)
            rnos = h.seed(sandbox, args.calls + args.warmup, target, cfg.admin_token)
        bodies_of = h.LegacyBodies()
        make = bodies_of.cancel if args.method == "cancel_reservation" else bodies_of.activate
        bodies = [make(rno) for rno in rnos]
        drive(target.port, bodies[:args.warmup])
        spy = None
        if args.profile:
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record",
                                    "-p", str(target.pid), "-o", args.profile, "--format",
                                    "raw", "-r", "500", "--nonblocking", "--gil"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        before, sb_before = ticks(target.pid), ticks(sandbox.pid)
        wall = drive(target.port, bodies[args.warmup:])
        used = (ticks(target.pid) - before) / h._TICK
        sb_used = (ticks(sandbox.pid) - sb_before) / h._TICK
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        n = args.calls
        print(f"{args.target} {args.method}: {n} calls, {used / n * 1000:.2f} ms CPU/call, "
              f"{wall / n * 1000:.2f} ms wall/call (sequential); the sandbox "
              f"{sb_used / n * 1000:.2f} ms CPU/call")
    finally:
        for s in reversed(services):
            s.stop()
        if schema is not None:
            h.pg_drop_schema(args.pg, schema)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
