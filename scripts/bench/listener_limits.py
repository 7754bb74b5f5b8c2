#!/usr/bin/env python3
"""Measure what ``gateway.web.guarded_site`` bounds, against a listener in its own process.

Each figure is taken on real loopback sockets against ``python -m tests.web.guarded_server``
(a guarded listener with a bearer-token ``authorize``), with production defaults unless told
otherwise:

1. **drip**: a client sending 1 byte every 250 ms: seconds until the server answered 408
   and closed (the request deadline, 30 s by default);
2. **cap**: ``--attempts`` (3,000) idle connections against ``max_connections`` (512):
   how many the server keeps, and how fast the others are closed;
3. **upload**: a 1 GiB unauthenticated upload streamed from one 64 KiB buffer: time to the
   401, body bytes the client had pushed by then, and the server's RSS growth (``VmRSS``
   and peak ``VmHWM`` from ``/proc``);
4. **ignoring client**: an unauthenticated upload declaring 1 TiB whose client never reads
   and never stops writing: how long and how much the server drains (reads and discards,
   within ``refusal_linger_seconds`` and ``refusal_drain_bytes``) before aborting the
   connection, and its RSS growth;
5. with ``--baseline``: the same 1 GiB upload against a plain ``twisted.web`` Site that
   checks the token in ``render`` (what the admin API does today): time to the 401.

    python scripts/bench/listener_limits.py                # production defaults (~45 s)
    python scripts/bench/listener_limits.py --deadline 5   # a shorter drip figure
    python scripts/bench/listener_limits.py --baseline     # adds the unguarded figure

Linux only (reads ``/proc/<pid>/status``). Run from a checkout with the project installed.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.web import ListenerLimits  # noqa: E402
from tests.web import clients  # noqa: E402
from tests.waiting import wait_until  # noqa: E402
from tests.web.guarded_server import ServerProcess  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20


def upload_head(length: int) -> bytes:
    return (b"POST /upload HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


def server_options(args: argparse.Namespace) -> list[str]:
    return ["--deadline", str(args.deadline), "--idle", str(args.idle),
            "--max-connections", str(args.max_connections), "--max-body", str(args.max_body),
            "--linger", str(args.linger), "--drain", str(args.drain)]


def bench_drip(args: argparse.Namespace) -> None:
    with ServerProcess(server_options(args)) as server:
        request = (b"POST /x HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer secret\r\n"
                   b"Content-Length: 1000\r\n\r\n" + b"x" * 1000)
        result = clients.drip(server.port, request, 0.25, limit=args.deadline + 30)
    if result.closed_after is None:
        print("drip: NOT closed within the deadline + 30 s")
        return
    print(f"drip client (1 B / 250 ms), deadline {args.deadline:g} s: answered "
          f"{result.response.status} and closed after {result.closed_after:.3f} s "
          f"({result.sent} bytes sent)")


def bench_cap(args: argparse.Namespace) -> None:
    with ServerProcess(server_options(args)) as server:
        started = time.monotonic()
        socks = []
        failed: Counter[str] = Counter()
        for _ in range(args.attempts):
            try:
                socks.append(clients.connect(server.port, timeout=5.0))
            except OSError as error:  # a reset can beat connect() back to the client
                failed[type(error).__name__] += 1
        opened = time.monotonic()
        time.sleep(1.0)
        kept = sum(clients.is_open(s) for s in socks)
        for sock in socks:
            sock.close()
        # With the cap full even /stats would be refused: ask once the slots are free.
        wait_until(lambda: server.stats()["open_connections"] == 1,
                   "the connections of the last round closed", timeout=10.0)
        refused = server.stats()["refused_connections"]
    print(f"connection cap {args.max_connections}: {args.attempts} connections attempted in "
          f"{opened - started:.2f} s, {kept} kept after 1 s, "
          f"{len(socks) - kept} closed by the server ({refused} counted as refused over the "
          f"cap), {sum(failed.values())} reset before connect() returned"
          + (f" {dict(failed)}" if failed else ""))


def bench_upload(args: argparse.Namespace, *, ignore_answer: bool) -> None:
    with ServerProcess(server_options(args)) as server:
        assert server.request("POST", "/x", b"warm")[0] == 200
        assert server.request("POST", "/x", b"warm", auth=False)[0] == 401
        before = server.memory_kib()
        if ignore_answer:
            started = time.monotonic()
            sent, how = stream_ignoring_answers(server.port, 1 << 40, limit=60.0)
            took = time.monotonic() - started
            wait_until(lambda: server.stats()["open_connections"] == 1,
                       "the upload's connection closed", timeout=5.0)
            stats = server.stats()
        else:
            upload = clients.stream_upload(server.port, upload_head(GiB), GiB, limit=120)
        after = server.memory_kib()
    growth = (after["VmRSS"] - before["VmRSS"]) / 1024
    peak = (after["VmHWM"] - before["VmRSS"]) / 1024
    memory = (f"server RSS {before['VmRSS'] / 1024:.1f} -> {after['VmRSS'] / 1024:.1f} MiB "
              f"(growth {growth:.2f} MiB, peak growth {peak:.2f} MiB)")
    if ignore_answer:
        print(f"endless unauthenticated upload, client ignoring the 401: connection ended "
              f"after {took:.2f} s ({how}); {sent / MiB:.0f} MiB sent, "
              f"{stats['discarded_bytes'] / MiB:.0f} MiB read and discarded by the server, "
              f"{stats['body_bytes_buffered'] - 4} body bytes buffered; {memory}")
        return
    status = upload.response.status
    print(f"1 GiB unauthenticated upload: {status} after "
          f"{(upload.answered_after or 0) * 1000:.1f} ms, "
          f"{upload.body_bytes_sent / MiB:.1f} MiB of body pushed into the socket by then; "
          f"{memory}")


def stream_ignoring_answers(port: int, size: int, limit: float) -> tuple[int, str]:
    """Write the body without ever reading, until the server cuts the connection (or
    ``limit`` seconds pass); returns (bytes sent, how it ended)."""
    with clients.connect(port, timeout=limit) as sock:
        sock.sendall(upload_head(size))
        sent = 0
        end = time.monotonic() + limit
        try:
            while sent < size and time.monotonic() < end:
                sent += sock.send(clients.ZEROS[:min(len(clients.ZEROS), size - sent)])
        except OSError as error:
            return sent, f"server reset: {type(error).__name__}"
        return sent, "not cut off" if sent < size else "whole body sent"


def bench_baseline(args: argparse.Namespace) -> None:
    with ServerProcess(["--plain"]) as server:
        before = server.memory_kib()
        upload = clients.stream_upload(server.port, upload_head(GiB), GiB, limit=300)
        after = server.memory_kib()
    print(f"baseline, plain twisted.web Site (token checked in render): "
          f"{upload.response.status} after {(upload.answered_after or 0):.2f} s, once all "
          f"{upload.body_bytes_sent / MiB:.0f} MiB had been sent (Twisted spooled the body "
          f"to a temp file first); server RSS growth "
          f"{(after['VmRSS'] - before['VmRSS']) / 1024:.2f} MiB")


def main(argv: list[str] | None = None) -> int:
    defaults = ListenerLimits()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=defaults.request_deadline_seconds)
    parser.add_argument("--idle", type=float, default=defaults.idle_timeout_seconds)
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections)
    parser.add_argument("--max-body", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--linger", type=float, default=defaults.refusal_linger_seconds)
    parser.add_argument("--drain", type=int, default=defaults.refusal_drain_bytes)
    parser.add_argument("--attempts", type=int, default=3000)
    parser.add_argument("--baseline", action="store_true",
                        help="also time the same upload against an unguarded Site")
    parser.add_argument("--only", choices=["drip", "cap", "upload", "ignoring", "baseline"],
                        action="append", help="run only these figures")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("needs Linux (/proc/<pid>/status)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.attempts + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    print(f"limits: request_deadline_seconds={args.deadline:g} idle_timeout_seconds="
          f"{args.idle:g} max_connections={args.max_connections} max_body_bytes="
          f"{args.max_body} refusal_linger_seconds={args.linger:g} refusal_drain_bytes="
          f"{args.drain}")
    figures = args.only or ["drip", "cap", "upload", "ignoring"] + (
        ["baseline"] if args.baseline else [])
    for figure in figures:
        if figure == "drip":
            bench_drip(args)
        elif figure == "cap":
            bench_cap(args)
        elif figure == "upload":
            bench_upload(args, ignore_answer=False)
        elif figure == "ignoring":
            bench_upload(args, ignore_answer=True)
        elif figure == "baseline":
            bench_baseline(args)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
