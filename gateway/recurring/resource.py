"""The HTTP face of KCO v2 recurring orders on the legacy listener.

``POST /checkout/recurring/{token}/orders`` and ``GET /checkout/recurring/{token}``; every
answer is a JSON object (the official clients read ``e.json`` on errors and crash on
anything else), never a redirect or a 201 (the clients then silently lose the numbers): the
listener's own refusals too (:meth:`RecurringResource.refusal`: a body over the limit is a
JSON 413, never the XML-RPC edge's fault). A path that does not percent-decode to UTF-8 is
a 400. The boundary (merchant, allowed networks, digest) is the service's first step.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from gateway.boundary import client_of
from gateway.edge.resource import peer_hung_up
from gateway.recurring.service import RecurringService, V2Answer, v2_error
from gateway.web import Refusal, RefusalReason

log = Logger()

PREFIX = b"/checkout/recurring/"
_ORDERS = re.compile(r"^/+checkout/recurring/([^/]+)/orders/?$")
_STATUS = re.compile(r"^/+checkout/recurring/([^/]+)/?$")
MAX_BODY_BYTES = 1 << 20


class RecurringResource(Resource):
    isLeaf = True

    def __init__(self, service: RecurringService, *, max_body_bytes: int = MAX_BODY_BYTES
                 ) -> None:
        super().__init__()
        self.service = service
        self.max_body_bytes = max_body_bytes

    def refusal(self, reason: RefusalReason, request: Any) -> Refusal | None:
        """The listener's refusals (before the body is read) in KCO v2's JSON."""
        if reason is RefusalReason.TOO_LARGE:
            answer = self._too_large()
        elif reason is RefusalReason.TIMEOUT:
            answer = v2_error(408, "the request was not received in time")
        else:
            return None
        return Refusal(answer.status, answer.payload(),
                       [(b"Content-Type", answer.content_type.encode("ascii"))])

    def _too_large(self) -> V2Answer:
        return v2_error(413, f"Bad format: the body is larger than {self.max_body_bytes} "
                             "bytes")

    def render(self, request: server.Request) -> Any:
        d = defer.ensureDeferred(self._answer(request))
        d.addErrback(lambda f: log.failure("recurring order request failed", f))
        return server.NOT_DONE_YET

    async def _answer(self, request: server.Request) -> None:
        path = request.path.decode("latin-1")
        auth = (request.getHeader(b"authorization") or b"").decode("latin-1")
        method, client = request.method, client_of(request)
        answer: V2Answer
        try:
            path = unquote_to_bytes(request.path).decode("utf-8")
            if method == b"POST" and (m := _ORDERS.match(path)):
                answer = await self.service.create(
                    m.group(1), _body(request, self.max_body_bytes), auth or None, client)
            elif method == b"GET" and (m := _STATUS.match(path)):
                answer = await self.service.status(m.group(1), auth or None, client)
            else:
                answer = v2_error(404, "no such resource")
        except UnicodeDecodeError:
            answer = v2_error(400, "Bad format: the path does not percent-decode to UTF-8")
        except _TooLarge:
            answer = self._too_large()
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


def _body(request: server.Request, limit: int) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    raw = content.read(limit + 1)
    if len(raw) > limit:
        raise _TooLarge()
    return raw


class EdgeRoot(Resource):
    """The legacy listener: KCO v2 recurring paths to their resource, everything else is
    XML-RPC (POST on any path). Every edge it routes to is an attribute, so a walk of the
    site's resource tree finds it (the boundary test does)."""

    isLeaf = True

    def __init__(self, xmlrpc: Resource, recurring: Resource) -> None:
        super().__init__()
        self.xmlrpc = xmlrpc
        self.recurring = recurring

    def _target(self, path: bytes) -> Resource:
        return self.recurring if path.lstrip(b"/").startswith(PREFIX.lstrip(b"/")) \
            else self.xmlrpc

    def render(self, request: server.Request) -> Any:
        return self._target(request.path).render(request)

    def refusal(self, reason: RefusalReason, request: Any) -> Refusal | None:
        """The listener's refusal in the dialect of the edge the path names (``None``: the
        listener's default)."""
        if request is None or getattr(request, "path", None) is None:
            return None
        own = getattr(self._target(request.path), "refusal", None)
        return own(reason, request) if own is not None else None
