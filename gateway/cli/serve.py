"""``serve`` and ``sandbox``: the long-running commands (they run the reactor themselves)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli.common import (
    PROG, add_config_flag, add_db_flags, check_endpoint, config_from, db_url, describe,
    error_line,
)
from gateway.cli.record_flags import add_record_flags
from gateway.config import DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN, DEFAULT_SANDBOX_LISTEN
from gateway.tools.inputs import InputError

#: ``serve --sandbox`` without ``--listen``: the demo's secrets are public, so it listens on
#: loopback only.
SANDBOX_LISTEN = "tcp:8080:interface=127.0.0.1"


def cmd_serve(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor

    from twisted.logger import Logger

    from gateway.service import Gateway, GatewayOptions

    config = config_from(args.config, sandbox=args.sandbox)
    listen = args.listen or (SANDBOX_LISTEN if args.sandbox else DEFAULT_LISTEN)
    check_endpoint(listen, "--listen")
    check_endpoint(args.admin_listen, "--admin-listen")
    if args.sandbox:
        check_endpoint(args.sandbox_listen, "--sandbox-listen")
    options = GatewayOptions(
        listen=listen, admin_listen=args.admin_listen, db_url=db_url(args),
        sandbox_listen=args.sandbox_listen if args.sandbox else None,
        sandbox_seed=args.sandbox_seed, record_dir=args.record,
        record_max_bytes=args.record_max_bytes)
    from gateway import logs

    logs.start(args.log_format, args.log_file, verbose=args.verbose, reactor=reactor)
    gateway = Gateway(config, options, reactor)
    status = {"code": 0}

    def started(_: Any) -> None:
        from gateway.service import describe, redact_url

        assert gateway.legacy_port is not None and gateway.admin_port is not None
        banner = {"legacy_listen": describe(gateway.legacy_port),
                  "legacy_url": gateway.legacy_url,
                  "admin_listen": describe(gateway.admin_port),
                  "admin_url": gateway.admin_url, "sandbox_url": gateway.sandbox_url,
                  "database": redact_url(options.db_url)}
        if args.log_format == "json":
            # A person reads the text banner; a log shipper reads this one event.
            Logger(namespace="gateway.serve").info(
                "klarna-gateway serving: legacy XML-RPC on {legacy_listen} ({legacy_url}); "
                "admin API on {admin_listen} ({admin_url}); database {database}",
                event="started", **banner)
            return
        print(f"{PROG}: legacy XML-RPC on {banner['legacy_listen']} ({gateway.legacy_url})",
              flush=True)
        print(f"{PROG}: admin API on {banner['admin_listen']} ({gateway.admin_url})"
              + (f"; sandbox on {gateway.sandbox_url}" if gateway.sandbox_url else ""),
              flush=True)
        print(f"{PROG}: database {banner['database']}", flush=True)

    def failed(f: Any) -> None:
        message, code, _ = describe(f.value)
        fields = {}
        if args.debug and args.log_format == "json":
            fields["traceback"] = f.getTraceback()
        elif args.debug:
            f.printTraceback(file=sys.stderr)
        error_line(f"cannot start: {message}", code, as_json=args.log_format == "json",
                   **fields)
        status["code"] = int(code)
        reactor.stop()  # type: ignore[attr-defined]

    def begin() -> None:
        d = defer.ensureDeferred(gateway.start())
        d.addCallbacks(started, failed)

    reactor.callWhenRunning(begin)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", lambda: defer.ensureDeferred(gateway.stop()))
    reactor.run()  # type: ignore[attr-defined]
    return status["code"]


def cmd_sandbox(args: argparse.Namespace) -> int:
    from gateway.sandbox.ids import check_seed
    from gateway.sandbox.service import run_sandbox

    config = config_from(args.config, sandbox=True)
    check_endpoint(args.listen, "--listen")
    try:
        check_seed(args.seed)
    except ValueError as e:
        raise InputError(f"--seed: {e}") from None
    return run_sandbox(args.listen, str(config.source), seed=args.seed,
                       log_format=args.log_format)


def add_log_format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines, or JSON lines (every field of each event; then "
                             "every line the process writes is JSON)")


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the gateway",
                       description="Run the gateway: legacy XML-RPC for the ERPs, the admin "
                                   "API (and console, /metrics) on its own listener, every "
                                   "call performed on Klarna's Order Management REST API. "
                                   "With --sandbox and no configuration it runs the demo "
                                   "merchants against an in-process sandbox. A SQLite store "
                                   "is migrated at start; PostgreSQL needs `db upgrade`. "
                                   "Exit status 2: unusable configuration, flag or "
                                   "listener (e.g. a port in use); 3: the database cannot "
                                   "be reached.")
    add_config_flag(s, extra=" unless --sandbox: then the demo merchants")
    s.add_argument("--listen", default=None, metavar="ENDPOINT",
                   help=f"legacy XML-RPC endpoint (default: {DEFAULT_LISTEN}, all interfaces; "
                        f"with --sandbox {SANDBOX_LISTEN}, loopback only: the demo's secrets "
                        "are public)")
    s.add_argument("--admin-listen", default=DEFAULT_ADMIN_LISTEN, metavar="ENDPOINT",
                   help="admin API, console and /metrics endpoint")
    s.add_argument("--sandbox-listen", default=DEFAULT_SANDBOX_LISTEN, metavar="ENDPOINT",
                   help="sandbox endpoint (with --sandbox)")
    add_db_flags(s)
    s.add_argument("--sandbox", action="store_true",
                   help="run the Order Management sandbox in-process and point merchants at it")
    s.add_argument("--sandbox-seed", type=int, default=None, metavar="N",
                   help="with --sandbox: reproducible ids and a frozen sandbox clock "
                        "(overrides [sandbox] seed)")
    s.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    add_log_format_flag(s)
    s.add_argument("--log-file", default=None, metavar="PATH",
                   help="log to this file instead of stderr; SIGHUP reopens it (logrotate)")
    add_record_flags(s)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("sandbox", help="run the Order Management sandbox alone",
                       description="Run the Order Management emulator on its own: Klarna's "
                                   "REST paths, refusals, idempotency, expiry and fault "
                                   "injection, for regression suites. Orders live in memory. "
                                   "Exit status 2: unusable configuration, flag or "
                                   "listener (e.g. a port in use).")
    s.add_argument("--listen", default=DEFAULT_SANDBOX_LISTEN, metavar="ENDPOINT",
                   help="where the sandbox listens")
    add_config_flag(s, extra=": its merchants; without either, the demo merchants of "
                              "config/sandbox.toml", required=False)
    s.add_argument("--seed", type=int, default=None, metavar="N",
                   help="reproducible ids and a frozen clock (overrides [sandbox] seed)")
    add_log_format_flag(s)
    s.set_defaults(func=cmd_sandbox)
