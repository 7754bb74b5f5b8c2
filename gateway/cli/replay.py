"""``record`` and ``replay``: recordings of legacy exchanges for migration teams.

- ``klarna-gateway record --upstream URL --listen ENDPOINT --out DIR [--config FILE]``: a
  transparent recording proxy in front of another XML-RPC endpoint (runs the reactor until
  SIGINT/SIGTERM, then writes everything queued).
- ``klarna-gateway replay RECORDING --target URL --report FILE.html [--config FILE]
  [--summary FILE.json] [--admin URL --admin-token TOKEN]``: re-signs and sends the
  recorded calls, writes the report; exit 0 when no call is ``different``, 1 when one is,
  2 when the recording cannot be read.

``serve --record DIR [--record-max-bytes N]`` records the gateway's own exchanges (the
flags are added here, next to the commands that read what they write).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli.common import config_from
from gateway.cli.record_flags import add_record_flags

def cmd_record(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor

    from gateway import logs
    from gateway.replay.proxy import ProxyService
    from gateway.web import ListenerLimits

    limits, max_body = ListenerLimits(), None
    if args.config is not None:
        g = config_from(args.config).gateway
        limits = ListenerLimits(request_deadline_seconds=g.request_deadline_seconds,
                                idle_timeout_seconds=g.idle_timeout_seconds,
                                max_connections=g.max_connections)
        max_body = g.max_body_bytes
    logs.start(verbose=args.verbose)
    kwargs: dict[str, Any] = {"max_body_bytes": max_body} if max_body else {}
    service = ProxyService(reactor, args.upstream, args.listen, args.out,
                           max_bytes=args.record_max_bytes, limits=limits,
                           timeout=args.timeout, **kwargs)
    status = {"code": 0}

    def started(_: Any) -> None:
        print(f"klarna-gateway record: proxy on {service.url} → {args.upstream}; recording "
              f"to {args.out}", flush=True)

    def failed(f: Any) -> None:
        print(f"klarna-gateway record: cannot start: {f.getErrorMessage()}", file=sys.stderr)
        status["code"] = 1
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: defer.ensureDeferred(service.start()).addCallbacks(started, failed))
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", lambda: defer.ensureDeferred(service.stop()))
    reactor.run()  # type: ignore[attr-defined]
    return status["code"]


def cmd_replay(args: argparse.Namespace) -> int:
    from twisted.internet import defer, task

    from gateway.files import write_private
    from gateway.replay.recording import RecordingError
    from gateway.replay.report import render_html, summary_json
    from gateway.replay.runner import Replayer, ReplayOptions, verdict_exit_code

    config = config_from(args.config, sandbox=args.config is None)
    options = ReplayOptions(recording=args.recording, target=args.target, admin=args.admin,
                            admin_token=args.admin_token, timeout=args.timeout,
                            progress=sys.stderr.isatty() and not args.no_progress)
    result: dict[str, Any] = {"code": 0}

    async def main(reactor: Any) -> None:
        try:
            summary = await Replayer(config, options).run()
        except RecordingError as e:
            print(f"klarna-gateway replay: {e}", file=sys.stderr)
            result["code"] = 2
            return
        write_private(args.report, render_html(summary))  # 0600: it shows call contents
        if args.summary:
            write_private(args.summary, summary_json(summary))
        counts = summary.counts
        print("replay: " + ", ".join(f"{counts[k]} {k}" for k in counts)
              + f"; report {args.report}")
        for problem in summary.problems:
            print(f"replay: {problem}", file=sys.stderr)
        result["code"] = verdict_exit_code(summary)

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return int(result["code"])


def register(sub: Any) -> None:
    s = sub.add_parser("record", help="a recording proxy in front of another XML-RPC "
                                      "endpoint (the legacy platform)",
                       description="Forward every POST to --upstream unchanged, answer with "
                                   "its reply unchanged, and record both (digests masked) "
                                   "as JSONL in --out.")
    s.add_argument("--upstream", required=True, metavar="URL",
                   help="the XML-RPC endpoint to forward to")
    s.add_argument("--listen", required=True, metavar="ENDPOINT",
                   help="where to listen (a Twisted endpoint, e.g. tcp:8080)")
    s.add_argument("--out", required=True, metavar="DIR", help="recording directory")
    s.add_argument("--config", default=None,
                   help="TOML configuration (listener limits and body size from [gateway])")
    s.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="upstream timeout per call (default 60)")
    s.add_argument("-v", "--verbose", action="store_true")
    add_record_flags(s, out_flag=None)
    s.set_defaults(func=cmd_record)

    s = sub.add_parser("replay", help="replay a recording against a target and report the "
                                      "differences",
                       description="Re-sign and send the recorded calls in order, map "
                                   "reservation and invoice numbers, and write an HTML report "
                                   "(and a JSON summary). Exit 1 when any call is different.")
    s.add_argument("recording", metavar="RECORDING",
                   help="a recording file or a directory of recording-*.jsonl files")
    s.add_argument("--target", required=True, metavar="URL", help="the XML-RPC endpoint")
    s.add_argument("--report", required=True, metavar="FILE.html")
    s.add_argument("--summary", default=None, metavar="FILE.json")
    s.add_argument("--config", default=None,
                   help="TOML configuration: the merchants whose secrets re-sign the calls")
    s.add_argument("--admin", default=None, metavar="URL",
                   help="the target gateway's admin API: seeds a sandbox target, reads the "
                        "journal")
    s.add_argument("--admin-token", default=None, metavar="TOKEN",
                   help="bearer token of --admin (default: the configuration's admin_token)")
    s.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_replay)
