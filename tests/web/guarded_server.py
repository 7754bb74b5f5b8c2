"""A guarded listener in its own process, so its memory can be measured from outside.

``python -m tests.web.guarded_server [--deadline S] [--idle S] [--max-connections N]
[--max-body BYTES] [--linger S] [--drain BYTES] [--token TOKEN] [--plain]`` (run from the
repository root) listens on 127.0.0.1 (a free port), prints ``LISTENING <port>`` on stdout
and serves until killed. ``--plain`` serves a plain ``twisted.web`` Site instead (the
baseline: token checked in ``render``, after the whole body was buffered).
Used by the RSS test and by ``scripts/bench/listener_limits.py``.

:class:`ServerProcess` starts one from a test or a script and reads its memory from
``/proc/<pid>/status`` (Linux).

Routes: ``GET /healthz`` (no token) → ``ok``; ``GET /stats`` → the listener's
:class:`~gateway.web.ListenerStats` as JSON; ``POST`` anywhere → ``ok <body length>``.
Every route but ``/healthz`` needs ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

import argparse
import hmac
import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.web import server
from twisted.web.resource import Resource

from gateway.web import GuardedSite, ListenerLimits, Refusal, RefusalReason, guarded_site


class EchoResource(Resource):
    """Answers from what the guard let through; the body is only measured."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.site: GuardedSite | None = None

    def render_GET(self, request: server.Request) -> bytes:  # noqa: N802 - Twisted API
        if request.path == b"/stats" and self.site is not None:
            stats = self.site.stats
            return json.dumps({
                "open_connections": stats.open_connections,
                "accepted_connections": stats.accepted_connections,
                "refused_connections": stats.refused_connections,
                "refused_requests": {r.name: n for r, n in stats.refused_requests.items()},
                "body_bytes_buffered": stats.body_bytes_buffered,
                "discarded_bytes": stats.discarded_bytes,
            }).encode()
        return b"ok"

    def render_POST(self, request: server.Request) -> bytes:  # noqa: N802 - Twisted API
        content = request.content
        size = 0
        if content is not None:
            content.seek(0, 2)
            size = content.tell()
        return b"ok %d" % size


def bearer_authorizer(token: str) -> Any:
    """``authorize`` for a bearer token; ``/healthz`` is open (like the admin API)."""
    want = f"Bearer {token}".encode()

    def authorize(request: server.Request) -> bool:
        if request.path == b"/healthz":
            return True
        return hmac.compare_digest(request.getHeader(b"authorization") or b"", want)
    return authorize


def bearer_refusal(reason: RefusalReason, request: server.Request | None) -> Refusal | None:
    if reason is RefusalReason.UNAUTHORIZED:
        return Refusal(401, b'{"error": "missing or wrong bearer token"}',
                       ((b"Content-Type", b"application/json"),
                        (b"WWW-Authenticate", b'Bearer realm="test"')))
    return None


def build_site(limits: ListenerLimits, token: str | None = "secret") -> GuardedSite:
    root = EchoResource()
    site = guarded_site(root, limits,
                        authorize=bearer_authorizer(token) if token is not None else None,
                        refusal=bearer_refusal)
    root.site = site
    return site


class PlainEchoResource(EchoResource):
    """The baseline: what the admin API does today, the token checked in ``render``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._authorize = bearer_authorizer(token)

    def render(self, request: server.Request) -> Any:
        if not self._authorize(request):
            request.setResponseCode(401)
            return b'{"error": "missing or wrong bearer token"}'
        return super().render(request)


def plain_site(token: str) -> server.Site:
    return server.Site(PlainEchoResource(token))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = ListenerLimits()
    parser.add_argument("--deadline", type=float, default=defaults.request_deadline_seconds)
    parser.add_argument("--idle", type=float, default=defaults.idle_timeout_seconds)
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections)
    parser.add_argument("--max-body", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--linger", type=float, default=defaults.refusal_linger_seconds)
    parser.add_argument("--drain", type=int, default=defaults.refusal_drain_bytes)
    parser.add_argument("--token", default="secret")
    parser.add_argument("--plain", action="store_true",
                        help="baseline: a plain twisted.web Site, the token checked in render "
                             "(after Twisted has buffered the whole body)")
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
        redirectStandardIO=False)
    limits = ListenerLimits(request_deadline_seconds=args.deadline,
                            idle_timeout_seconds=args.idle,
                            max_connections=args.max_connections,
                            max_body_bytes=args.max_body,
                            refusal_linger_seconds=args.linger,
                            refusal_drain_bytes=args.drain)
    site = plain_site(args.token) if args.plain else build_site(limits, args.token)
    port: Any = reactor.listenTCP(0, site,  # type: ignore[attr-defined]
                                  interface="127.0.0.1", backlog=1024)
    print(f"LISTENING {port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]
    return 0


REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    """``python -m tests.web.guarded_server`` as a child process; use as a context manager.

    Args:
        options: command-line options for the server, e.g. ``["--max-body", "1048576"]``.
    """

    def __init__(self, options: list[str] | None = None, token: str = "secret") -> None:
        self.token = token
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.web.guarded_server", "--token", token,
             *(options or [])],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"guarded_server did not start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory_kib(self) -> dict[str, int]:
        """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) in KiB."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
        return out

    def request(self, method: str, path: str, body: bytes | None = None,
                auth: bool = True) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        status, body = self.request("GET", "/stats")
        assert status == 200, (status, body)
        return json.loads(body)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
