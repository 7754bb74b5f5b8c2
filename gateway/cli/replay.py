"""``record`` and ``replay``: recordings of legacy exchanges for migration teams.

- ``klarna-gateway record --upstream URL --listen ENDPOINT --out DIR [--config FILE]``: a
  transparent recording proxy in front of another XML-RPC endpoint (runs the reactor until
  SIGINT/SIGTERM, then writes everything queued).
- ``klarna-gateway replay RECORDING --target URL --report FILE.html [--config FILE]
  [--summary FILE.json] [--admin URL --admin-token TOKEN]``: re-signs and sends the
  recorded calls, writes the report; exit 0 when no call is ``different``, 1 when one is,
  2 when the recording cannot be read or (without ``--admin``) the target lacks a
  reservation the recording uses (:class:`~gateway.replay.runner.MissingOrders` says how to
  seed it).

``serve --record DIR [--record-max-bytes N]`` records the gateway's own exchanges (the
flags are added here, next to the commands that read what they write).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli.common import (
    PROG, add_config_flag, check_endpoint, config_from, config_path, describe, one_line,
    react, seconds,
)
from gateway.cli.record_flags import add_record_flags
from gateway.tools import inputs
from gateway.tools.inputs import Exit


def cmd_record(args: argparse.Namespace) -> int:
    from twisted.internet import defer, reactor

    from gateway import logs
    from gateway.replay.proxy import ProxyService
    from gateway.web import ListenerLimits

    upstream = inputs.http_url(args.upstream, "--upstream")
    check_endpoint(args.listen, "--listen")
    inputs.writable_dir(args.out, "--out")
    limits, max_body = ListenerLimits(), None
    path = config_path(args)
    if path is not None:
        g = config_from(path).gateway
        limits = ListenerLimits(request_deadline_seconds=g.request_deadline_seconds,
                                idle_timeout_seconds=g.idle_timeout_seconds,
                                max_connections=g.max_connections)
        max_body = g.max_body_bytes
    inputs.reachable(upstream, "--upstream")
    logs.start(verbose=args.verbose)
    kwargs: dict[str, Any] = {"max_body_bytes": max_body} if max_body else {}
    service = ProxyService(reactor, upstream, args.listen, args.out,
                           max_bytes=args.record_max_bytes, limits=limits,
                           timeout=args.timeout, **kwargs)
    status = {"code": 0}

    def started(_: Any) -> None:
        print(f"{PROG}: record: proxy on {service.url} → {upstream}; recording to "
              f"{args.out} (stop with Ctrl-C)", flush=True)

    def failed(f: Any) -> None:
        message, code, _ = describe(f.value)
        print(f"{PROG}: record: cannot start: {one_line(message)}", file=sys.stderr)
        status["code"] = int(code)
        reactor.stop()  # type: ignore[attr-defined]

    async def stop() -> None:
        await service.stop()
        w = service.writer
        lost = f"; {w.dropped + w.failed} not written" if w.dropped or w.failed else ""
        print(f"{PROG}: record: stopped; {w.written} exchange(s) recorded to {args.out}"
              f"{lost}", flush=True)

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: defer.ensureDeferred(service.start()).addCallbacks(started, failed))
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", lambda: defer.ensureDeferred(stop()))
    reactor.run()  # type: ignore[attr-defined]
    return status["code"]


def cmd_replay(args: argparse.Namespace) -> int:
    """Everything a replay needs is checked before the first call is sent: the recording,
    the report and summary paths, the target (and admin API) answering."""
    from gateway.files import write_private
    from gateway.replay.recording import RecordingError, recording_files
    from gateway.replay.report import render_html, summary_json
    from gateway.replay.runner import (
        MissingOrders, Replayer, ReplayOptions, verdict_exit_code,
    )

    target = inputs.http_url(args.target, "--target")
    admin = inputs.http_url(args.admin, "--admin") if args.admin else None
    report_path = inputs.writable_file(args.report, "--report")
    summary_path = inputs.writable_file(args.summary, "--summary") if args.summary else None
    try:
        recording_files(args.recording)
    except RecordingError as e:
        raise inputs.InputError(f"{e}: give a recording file or a directory of "
                                "recording-*.jsonl files") from None
    config = config_from(args.config, sandbox=True)
    inputs.reachable(target, "--target")
    if admin:
        inputs.reachable(admin, "--admin")
    options = ReplayOptions(recording=args.recording, target=target, admin=admin,
                            admin_token=args.admin_token, timeout=args.timeout,
                            progress=sys.stderr.isatty() and not args.no_progress)

    async def work(reactor: Any) -> int:
        try:
            summary = await Replayer(config, options).run()
        except RecordingError as e:
            raise inputs.InputError(str(e)) from None
        except MissingOrders as e:  # no --admin: say how to seed, no traceback, no report
            for line in e.explanation():
                print(f"{PROG}: replay: {line}", file=sys.stderr)
            return Exit.UNUSABLE
        write_private(report_path, render_html(summary))  # 0600: it shows call contents
        if summary_path is not None:
            write_private(summary_path, summary_json(summary))
        counts = summary.counts
        print("replay: " + ", ".join(f"{counts[k]} {k}" for k in counts)
              + f"; report {args.report}")
        for problem in summary.problems:
            print(f"{PROG}: replay: {problem}", file=sys.stderr)
        unanswered = [c for c in summary.calls if c.new is not None and c.new.error
                      and not c.new.error.startswith("HTTP ")]
        if unanswered:
            print(f"{PROG}: replay: {len(unanswered)} call(s) got no answer from {target}: "
                  f"{unanswered[0].new.error}: is the target running?", file=sys.stderr)
        sent = [c for c in summary.calls if c.new is not None]
        return (Exit.UNREACHABLE if sent and len(unanswered) == len(sent)
                else verdict_exit_code(summary))
    return react(work)


def register(sub: Any) -> None:
    s = sub.add_parser("record", help="a recording proxy in front of another XML-RPC "
                                      "endpoint (the legacy platform)",
                       description="Forward every POST to --upstream unchanged, answer with "
                                   "its reply unchanged, and record both (digests masked) "
                                   "as JSONL in --out. The upstream must accept connections "
                                   "when it starts. Stopped (SIGINT/SIGTERM), it says how "
                                   "many exchanges it recorded. Exit status 2: unusable "
                                   "flag, configuration or listener; 3: the upstream cannot "
                                   "be reached.")
    s.add_argument("--upstream", required=True, metavar="URL",
                   help="the XML-RPC endpoint to forward to, http(s)://HOST[:PORT]/PATH")
    s.add_argument("--listen", required=True, metavar="ENDPOINT",
                   help="where to listen (a Twisted endpoint, e.g. tcp:8080)")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="recording directory (created if missing; its parent must exist)")
    add_config_flag(s, extra=": listener limits and body size from [gateway]; without "
                              "either, the defaults", required=False)
    s.add_argument("--timeout", type=seconds, default=60.0, metavar="SECONDS",
                   help="upstream timeout per call")
    s.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    add_record_flags(s, out_flag=None)
    s.set_defaults(func=cmd_record)

    s = sub.add_parser("replay", help="replay a recording against a target and report the "
                                      "differences",
                       description="Re-sign and send the recorded calls in order, map "
                                   "reservation and invoice numbers, and write an HTML report "
                                   "(and a JSON summary). The recording, the report paths "
                                   "and the target are checked before the first call is "
                                   "sent. Exit status 0: no call different; 1: some call "
                                   "different; 2: unusable recording, flag or path, or (without "
                                   "--admin, which seeds a sandbox target) a reservation the "
                                   "recording uses that the target does not hold: it says "
                                   "how to seed it; 3: the target (or admin API) cannot be "
                                   "reached.")
    s.add_argument("recording", metavar="RECORDING",
                   help="a recording file or a directory of recording-*.jsonl files")
    s.add_argument("--target", required=True, metavar="URL",
                   help="the XML-RPC endpoint to replay against, e.g. http://127.0.0.1:8080/")
    s.add_argument("--report", required=True, metavar="FILE.html",
                   help="the HTML report to write (its directory must exist)")
    s.add_argument("--summary", default=None, metavar="FILE.json",
                   help="also write the verdicts as JSON (default: none)")
    add_config_flag(s, extra=": the merchants whose secrets re-sign the calls; without "
                              "either, the demo merchants", required=False)
    s.add_argument("--admin", default=None, metavar="URL",
                   help="the target gateway's admin API: seeds a sandbox target, reads the "
                        "journal")
    s.add_argument("--admin-token", default=None, metavar="TOKEN",
                   help="bearer token of --admin (default: the configuration's admin_token)")
    s.add_argument("--timeout", type=seconds, default=60.0, metavar="SECONDS",
                   help="how long each call (and admin request) may take")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: a bar when stderr is a terminal)")
    s.set_defaults(func=cmd_replay)
