"""Bounds for every HTTP listener: request deadline, idle timeout, connection cap, and
refusal (401/413, or the listener's own shape) before a body byte is read.

Depends on Twisted and the standard library only, so the legacy XML-RPC edge, the admin API
and the sandbox can all use it. Typical use::

    site = guarded_site(resource, ListenerLimits(max_connections=256),
                        authorize=check_bearer, refusal=my_refusals)
    port = await serverFromString(reactor, "tcp:8081").listen(site)

See :func:`guarded_site` and :class:`ListenerLimits` for the semantics. The modules:
``site`` (the bounded ``Site``, its connection cap, :func:`guarded_site`), ``channel`` (the
request deadline beside the idle timeout, and the refusal path: write, drain, abort),
``admission`` (authorization and the body limit before a body byte is buffered), ``stats``
(what a listener counted), ``limits`` (the bounds), ``refusal`` (the answers), ``json_body``
(JSON request bodies, depth-bounded).
"""
from __future__ import annotations

from gateway.web.admission import GuardedRequest
from gateway.web.channel import GuardedChannel
from gateway.web.limits import ListenerLimits
from gateway.web.refusal import (
    Authorize,
    Refusal,
    RefusalFactory,
    RefusalReason,
    default_refusal,
)
from gateway.web.site import GuardedSite, guarded_site
from gateway.web.stats import ListenerStats

__all__ = [
    "Authorize",
    "GuardedChannel",
    "GuardedRequest",
    "GuardedSite",
    "ListenerLimits",
    "ListenerStats",
    "Refusal",
    "RefusalFactory",
    "RefusalReason",
    "default_refusal",
    "guarded_site",
]
