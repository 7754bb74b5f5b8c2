"""Admission before the body: a request is authorized and size-checked the moment its
headers are complete, and its body is cut off as soon as it passes the limit.

``twisted.web``'s ``Request`` buffers the whole body (to a temp file above 100 kB) before
any resource, and so any authentication, runs. :class:`GuardedRequest` runs ``authorize``
and the declared-length check in ``gotLength``, which Twisted calls right after the last
header line, before it opens the body buffer and before it sends ``100 Continue``; it also
keeps a running total of the body so a chunked body is cut off as soon as it passes
``max_body_bytes``. The refusal itself is written by the channel
(:meth:`gateway.web.channel.GuardedChannel.refuse`).
"""
from __future__ import annotations

from twisted.web import server

from gateway.web.channel import GuardedChannel
from gateway.web.refusal import RefusalReason

__all__ = ["GuardedRequest"]


class GuardedRequest(server.Request):
    """A ``Request`` that is admitted (authorized, size-checked) before its body is read.

    On a :class:`GuardedChannel` it asks the channel to admit it in ``gotLength`` and counts
    its body in ``handleContentChunk``; a refused request never reaches ``requestReceived``,
    so no resource sees it. On any other channel it behaves like ``server.Request``.
    """

    _guard_refused: bool = False
    _guard_body_bytes: int = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted API
        channel = self.channel
        if isinstance(channel, GuardedChannel):
            reason = channel.admit(self, length)
            if reason is not None:
                self._guard_refused = True
                channel.refuse(reason, self)
                return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self._guard_refused:
            return
        channel = self.channel
        if isinstance(channel, GuardedChannel):
            self._guard_body_bytes += len(data)
            if self._guard_body_bytes > channel.limits.max_body_bytes:
                self._guard_refused = True
                channel.refuse(RefusalReason.TOO_LARGE, self)
                return
            channel.stats.body_bytes_buffered += len(data)
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if self._guard_refused:
            return  # already answered; the connection is closing
        super().requestReceived(command, path, version)
