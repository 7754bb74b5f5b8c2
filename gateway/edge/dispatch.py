"""One legacy XML-RPC call, from its parsed method and parameters to its :class:`Reply`.

The resource (:mod:`gateway.edge.resource`) parses the body and writes the answer; between
the two, :class:`LegacyDispatch` authenticates and decodes the call once
(:mod:`gateway.edge.auth`), runs it on the engine, and hands back the reply with the hooks
that record whether it reached the client's connection (which ends the call's binding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.edge.auth import Authenticator, InvoiceCallNotOffered
from gateway.edge.resource import Reply
from gateway.errors import FaultCode, GatewayError, UnknownInvoiceError
from gateway.metrics import Metrics
from gateway.store.database import caused_by_database

if TYPE_CHECKING:
    from gateway.engine import CallEngine
    from gateway.store.store import Store


@dataclass(frozen=True)
class LegacyDispatch:
    """``(method, params, client) -> Reply``, the resource's dispatch.

    ``store`` is read only to answer a passive-invoice call the way v2 did;
    ``metrics`` counts the database errors a call met.
    """

    authenticator: Authenticator
    engine: CallEngine
    store: Store
    metrics: Metrics

    async def __call__(self, method: str, params: list[Any], client: str | None = None,
                       ) -> Reply:
        """Authenticate and decode once, run, and record the reply's delivery when the edge
        has written it to the client's connection."""
        engine = self.engine
        try:
            authed = self.authenticator.authenticate(method, params, client)
        except InvoiceCallNotOffered as e:
            raise await self._passive_invoice_fault(e) from None
        try:
            answer = await engine.run(authed.merchant, authed.spec, authed.call)
        except GatewayError as e:
            handed = e.handed_over  # a recorded fault given to a retry: report it too
            if handed is not None:
                e.delivered = lambda: engine.delivered(handed)  # type: ignore[arg-type]
                e.undelivered = lambda: engine.undelivered(handed)  # type: ignore[arg-type]
            raise
        except Exception as e:
            if caused_by_database(e):
                self.metrics.database_error("call")
            raise
        return Reply(answer.reply, delivered=lambda: engine.delivered(answer),
                     undelivered=lambda: engine.undelivered(answer),
                     context=answer.context())

    async def _passive_invoice_fault(self, e: InvoiceCallNotOffered) -> GatewayError:
        """v2's answer to a passive-invoice call: an unknown invoice is 8101; a known one is
        active (REST has no passive invoices), so its fault (8111/8113) says so."""
        if await self.store.get_invoice(e.eid, e.invno) is None:
            return UnknownInvoiceError(f"invoice {e.invno} is unknown for eid {e.eid}")
        return GatewayError(f"invoice {e.invno} is active: {e.public_message}",
                            code=FaultCode(e.known_fault))
