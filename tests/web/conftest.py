"""``serve``: start a guarded listener on loopback inside the test's reactor."""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web import server
from twisted.web.resource import IResource, Resource

from gateway.web import GuardedSite, ListenerLimits, guarded_site
from tests.waiting import eventually


class EchoResource(Resource):
    """Answers ``ok <body length>``; records every request it was handed.

    ``delay`` postpones the answer (a slow handler), to show the deadline does not cover
    the time the resource takes.
    """

    isLeaf = True

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.seen: list[server.Request] = []

    def render(self, request: server.Request) -> Any:
        self.seen.append(request)
        content = request.content
        size = 0
        if content is not None:
            content.seek(0, 2)
            size = content.tell()
        body = b"ok %d" % size
        request.setHeader(b"Content-Length", b"%d" % len(body))
        if not self.delay:
            return body

        def answer() -> None:
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(body)
                request.finish()
        reactor.callLater(self.delay, answer)  # type: ignore[attr-defined]
        return server.NOT_DONE_YET


@dataclass
class Listener:
    site: GuardedSite
    port: int
    resource: Any
    _port: Any = field(repr=False, default=None)


Serve = Callable[..., Awaitable[Listener]]


@pytest_twisted.async_yield_fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(limits, resource=None, **guarded_site_kwargs)`` → a running listener.

    At teardown each listener stops listening and the fixture waits (briefly) for the
    connections the test left to go away, so no timer of one test fires in the next.
    """
    started: list[Listener] = []

    async def start(limits: ListenerLimits, resource: IResource | None = None,
                    **kwargs: Any) -> Listener:
        root = resource if resource is not None else EchoResource()
        site = guarded_site(root, limits, **kwargs)
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        listener = Listener(site=site, port=port.getHost().port, resource=root, _port=port)
        started.append(listener)
        return listener

    try:
        yield start
    finally:
        for listener in started:
            await listener._port.stopListening()
        for listener in started:
            await eventually(lambda: listener.site.stats.open_connections == 0,
                             "the listener's connections closed", timeout=5)
