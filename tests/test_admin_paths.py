"""The admin listener's open paths are exact, and a path or query that does not
percent-decode to UTF-8 is a 400, never a 500 (a real gateway on loopback)."""
from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlparse

import pytest_twisted
import treq
from twisted.internet import threads
from twisted.logger import globalLogPublisher

from tests.harness import ADMIN, Harness


def head_only(url: str, path: str, length: int, wait: float = 3.0) -> bytes:
    """Send a POST's head declaring ``length`` body bytes, send no body, and return what the
    server answers within ``wait`` seconds (nothing: it is waiting for the body)."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=wait) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
        try:
            return sock.recv(4096)
        except OSError:  # the timeout: no answer before the body
            return b""


@pytest_twisted.ensureDeferred
async def test_only_the_exact_open_paths_skip_the_token(gw: Harness) -> None:
    """Before: any path starting with ``/console`` was open, so ``/consoleX`` read up to
    1 MiB of body before its 401. Now it is refused from its head, like every path but
    ``/healthz``, ``/readyz``, ``/metrics`` and the console's own ``/console/…``."""
    for path in ("/consoleX", "/console.php", "/consoles/signin", "/healthzX", "/readyz/x",
                 "/metrics/x", "/metricsX", "//console/"):
        answer = await threads.deferToThread(head_only, gw.admin, path, 1 << 20)
        assert answer.startswith(b"HTTP/1.1 401"), (path, answer[:60])
    for path in ("/healthz", "/readyz", "/metrics", "/console", "/console/",
                 "/console/signin"):
        resp = await treq.get(gw.admin + path, allow_redirects=False)
        assert resp.code in (200, 303), (path, resp.code)
        await resp.content()


@pytest_twisted.ensureDeferred
async def test_a_console_post_from_nobody_is_refused_from_its_head(gw: Harness) -> None:
    """Before: a POST under ``/console/`` with neither a session cookie nor a bearer token
    (``/console/journal``, ``/console/digest``) was read to its end, up to 1 MiB, before the
    console sent it to its sign-in page. Now it is sent there from its head; the sign-in
    form itself, and posts carrying a cookie or a token, are read as before."""
    for path in ("/console/journal", "/console/digest", "/console/signout"):
        answer = await threads.deferToThread(head_only, gw.admin, path, 1 << 20)
        assert answer.startswith(b"HTTP/1.1 303"), (path, answer[:60])
        assert b"Location: /console/signin" in answer, (path, answer)
    # the sign-in form is read (a short body: an answer comes once it arrives)
    assert await threads.deferToThread(head_only, gw.admin, "/console/signin", 1 << 20,
                                       1.0) == b""
    resp = await treq.post(gw.admin + "/console/signin", data={"token": "wrong" * 4},
                           headers={"Origin": gw.admin}, allow_redirects=False)
    assert resp.code == 401, resp.code
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_undecodable_paths_and_queries_are_400(gw: Harness) -> None:
    """Before: ``GET /%ff`` with a valid token was a 500 and a traceback. Now 400 on the
    admin API and the console; nothing is logged as a failure."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for path in ("/%ff", "/v1/journal/%ff", "/v1/reservations/1234/%c3%28",
                     "/v1/journal?eid=%ff", "/console/?q=%ff", "/console/%ff",
                     "/console/journal?method=%fe%ff"):
            resp = await treq.get(gw.admin + path, headers=ADMIN, allow_redirects=False)
            assert resp.code == 400, (path, resp.code, await resp.text())
            await resp.content()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e for e in events if "log_failure" in e] == []
