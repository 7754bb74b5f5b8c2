"""A small stand-in for the legacy v2 platform: a Twisted XML-RPC server answering the
legacy calls as v2 did, and on purpose differently from the gateway in a few places.

- ``activate`` → ``["no_risk", invno]`` (v2's risk answer; the gateway always says "ok") and
  issues its own invoice numbers (``555000001``…);
- ``update`` after an activation → 9103 (what ``v2-strict`` restores; REST allows it);
- ``credit_part`` of an artno not on the invoice → 9107 bad_artnolist (REST: 9108);
- ``extend_expiry_date`` → a fixed date (the gateway extends from the day of the call);
- ``invoice_amount`` → 12345, a truly different answer;
- an unknown reservation → 9109, as everywhere.

It checks every digest with the gateway's own rules (``gateway.calls.verify_digest``): a
recording proxy in front of it must forward the SDK's bytes unchanged.
"""
from __future__ import annotations

import xmlrpc.client
from typing import Any

from twisted.web import xmlrpc

from gateway.calls import verify_digest

SECRET = b"sandbox-secret"
KNOWN_RNO_PREFIX = "77"


class FakeV2(xmlrpc.XMLRPC):
    def __init__(self) -> None:
        super().__init__(allowNone=False)
        self.next_invno = 555000001
        self.activated: set[str] = set()
        self.invoices: dict[str, str] = {}
        self.calls: list[str] = []
        self.bad_digests: list[str] = []

    def _check(self, method: str, params: tuple[Any, ...]) -> None:
        self.calls.append(method)
        if not verify_digest(method, list(params), SECRET):
            self.bad_digests.append(method)
            raise xmlrpc.Fault(9114, "invalid_digest")

    def xmlrpc_activate(self, *params: Any) -> Any:
        self._check("activate", params)
        rno = str(params[4])
        if not rno.startswith(KNOWN_RNO_PREFIX):
            raise xmlrpc.Fault(9109, "unknown_reservation")
        invno = str(self.next_invno)
        self.next_invno += 1
        self.activated.add(rno)
        self.invoices[invno] = rno
        return ["no_risk", invno]

    def xmlrpc_update(self, *params: Any) -> Any:
        self._check("update", params)
        if str(params[4]) in self.activated:
            raise xmlrpc.Fault(9103, "not_allowed: the reservation is already activated")
        return "ok"

    def xmlrpc_email_invoice(self, *params: Any) -> Any:
        self._check("email_invoice", params)
        return self._invoice(params[3])

    def xmlrpc_credit_part(self, *params: Any) -> Any:
        self._check("credit_part", params)
        invno = self._invoice(params[3])
        if any(a.get("artno") != "ART-1" for a in params[4]):
            raise xmlrpc.Fault(9107, "bad_artnolist")
        return invno

    def xmlrpc_extend_expiry_date(self, *params: Any) -> Any:
        self._check("extend_expiry_date", params)
        return "20270301T235959"

    def xmlrpc_invoice_amount(self, *params: Any) -> Any:
        self._check("invoice_amount", params)
        self._invoice(params[3])
        return 12345

    def _invoice(self, invno: Any) -> str:
        if str(invno) not in self.invoices:
            raise xmlrpc.Fault(8101, "unknown_invoice")
        return str(invno)


def is_fault(e: BaseException, code: int) -> bool:
    return isinstance(e, xmlrpc.client.Fault) and e.faultCode == code
