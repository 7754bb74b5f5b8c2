"""The HTTP face of KCO v2 recurring orders on the legacy listener.

``POST /checkout/recurring/{token}/orders`` and ``GET /checkout/recurring/{token}``; every
answer is a JSON object (the official clients read ``e.json`` on errors and crash on
anything else), never a redirect or a 201 (the clients then silently lose the numbers).
"""
from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from gateway.legacy.resource import peer_hung_up
from gateway.recurring.service import RecurringService, V2Answer, v2_error

log = Logger()

PREFIX = b"/checkout/recurring/"
_ORDERS = re.compile(r"^/+checkout/recurring/([^/]+)/orders/?$")
_STATUS = re.compile(r"^/+checkout/recurring/([^/]+)/?$")
MAX_BODY_BYTES = 1 << 20


class RecurringResource(Resource):
    isLeaf = True

    def __init__(self, service: RecurringService) -> None:
        super().__init__()
        self.service = service

    def render(self, request: server.Request) -> Any:
        d = defer.ensureDeferred(self._answer(request))
        d.addErrback(lambda f: log.failure("recurring order request failed", f))
        return server.NOT_DONE_YET

    async def _answer(self, request: server.Request) -> None:
        path = request.path.decode("utf-8", "replace")
        auth = (request.getHeader(b"authorization") or b"").decode("latin-1")
        method = request.method
        answer: V2Answer
        try:
            if method == b"POST" and (m := _ORDERS.match(path)):
                answer = await self.service.create(m.group(1), _body(request), auth or None)
            elif method == b"GET" and (m := _STATUS.match(path)):
                answer = await self.service.status(m.group(1), auth or None)
            else:
                answer = v2_error(404, "no such resource")
        except _TooLarge:
            answer = v2_error(400, f"Bad format: the body is larger than {MAX_BODY_BYTES} bytes")
        except Exception:  # noqa: BLE001 - never a traceback to the client
            log.failure("recurring order {path} crashed", path=path)
            answer = v2_error(500, "internal error")
        if request.finished or getattr(request, "_disconnected", False):
            if answer.undelivered is not None:
                await answer.undelivered()
            return
        hung_up = peer_hung_up(request)  # closed before this write: never delivered
        written = request.notifyFinish()
        payload = answer.payload()
        request.setResponseCode(answer.status)
        request.setHeader(b"Content-Type", answer.content_type.encode("ascii"))
        request.setHeader(b"Content-Length", str(len(payload)).encode("ascii"))
        request.write(payload)
        request.finish()
        if answer.delivered is not None:
            delivered, undelivered = answer.delivered, answer.undelivered
            if hung_up:  # the reply went nowhere: the retry gets it at once
                written.addErrback(lambda _f: None)
                if undelivered is not None:
                    _record(undelivered)
                return
            written.addCallbacks(
                lambda _: _record(delivered),
                lambda _f: _record(undelivered) if undelivered else None)


def _record(callback: Any) -> None:
    defer.ensureDeferred(callback()).addErrback(
        lambda f: log.failure("recording delivery failed", f))


class _TooLarge(Exception):
    pass


def _body(request: server.Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    raw = content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise _TooLarge()
    return raw


class EdgeRoot(Resource):
    """The legacy listener: KCO v2 recurring paths to their resource, everything else is
    XML-RPC (POST on any path)."""

    isLeaf = True

    def __init__(self, xmlrpc: Resource, recurring: Resource) -> None:
        super().__init__()
        self.xmlrpc = xmlrpc
        self.recurring = recurring

    def render(self, request: server.Request) -> Any:
        target = self.recurring if request.path.lstrip(b"/").startswith(PREFIX.lstrip(b"/")) \
            else self.xmlrpc
        return target.render(request)
