"""The boundary: the one check every merchant-facing edge runs before it acts on a request.

In this order, whatever the edge:

1. **merchant lookup**: the eid the request names (an XML-RPC call's eid parameter, a KCO
   order's ``merchant.id``, or the merchant whose credential a bodiless KCO request
   carries) must be configured; else :attr:`Refused.UNKNOWN_MERCHANT`;
2. **allowed networks**: the client's address must be in that merchant's
   ``allowed_networks`` (a UNIX-socket client, with no address, is local and passes); else
   :attr:`Refused.NETWORK`, before the credential is even looked at;
3. **authentication**: the edge's credential check (the legacy digest, KCO's body digest)
   must pass; else :attr:`Refused.CREDENTIAL`.

An edge parses its body only as far as the lookup and the credential need (the XML-RPC
call, the KCO order's JSON, bounded), calls :func:`admit`, and turns a
:class:`BoundaryError` into a refusal in its own dialect (XML-RPC faults 9113/1999/9114;
KCO's JSON 404/403/401). Nothing else about the request (its cart, its call arguments, a
lookup at Klarna) is looked at before :func:`admit` returns.

Every refusal is logged once here (namespace ``gateway.boundary``: ``edge``, ``reason``,
``eid``, ``client``), never with the credential. ``tests/test_edges_boundary.py`` walks the
legacy listener's resource tree and checks, through that event, that every edge found
refuses all three; an edge added without calling :func:`admit` fails it.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from gateway.config import Merchant

__all__ = ["BoundaryError", "Refused", "admit", "client_of"]

log = Logger(namespace="gateway.boundary")


class Refused(str, enum.Enum):
    """Why the boundary refused a request (the log event's ``reason``)."""

    UNKNOWN_MERCHANT = "unknown_merchant"
    NETWORK = "network"
    CREDENTIAL = "credential"


class BoundaryError(Exception):
    """A refusal; ``str()`` is a message safe to show the client (no credential in it)."""

    def __init__(self, reason: Refused, message: str, eid: int | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.eid = eid


def admit(edge: str, eid: int | None, client: str | None,
          merchant_of: Callable[[int], Merchant | None],
          authentic: Callable[[Merchant], bool]) -> Merchant:
    """The merchant a request may act for, or :class:`BoundaryError`.

    Args:
        edge: the edge's name, for the log (``xmlrpc``, ``kco-recurring``…).
        eid: the eid the request names; ``None`` when it names none.
        client: the peer's IP address; ``None`` on a UNIX socket (a local client).
        merchant_of: the configuration's ``eid -> Merchant | None``.
        authentic: the edge's credential check for that merchant; it may raise the edge's
            own error for a credential that is missing altogether.
    """
    merchant = merchant_of(eid) if eid is not None else None
    if merchant is None:
        named = "no merchant" if eid is None else f"eid {eid}"
        _refuse(edge, Refused.UNKNOWN_MERCHANT, eid, client,
                f"{named} is not configured on this gateway")
    assert merchant is not None
    if client is not None and not merchant.accepts(client):
        _refuse(edge, Refused.NETWORK, eid, client,
                f"calls for eid {eid} are not accepted from {client}")
    if not authentic(merchant):
        _refuse(edge, Refused.CREDENTIAL, eid, client, "digest does not match")
    return merchant


def _refuse(edge: str, reason: Refused, eid: int | None, client: str | None,
            message: str) -> None:
    log.info("{edge} request refused at the boundary: {reason} (eid {eid}, client {client})",
             edge=edge, reason=reason.value, eid=eid, client=client)
    raise BoundaryError(reason, message, eid)


def client_of(request: Any) -> str | None:
    """A ``twisted.web`` request's peer IP address; ``None`` on a UNIX socket."""
    peer = request.getClientAddress()
    return getattr(peer, "host", None)
