"""Recurring purchases as KCO v2 served them, on the Customer Token API.

``create`` answers what the official clients (``klarnacheckout`` 3.0.1, ``kco_php``) parse:
200 with a JSON object holding ``reservation`` (and ``invoice`` when ``activate`` was
true) as strings. Authentication is KCO v2's: ``Authorization: Klarna
base64(sha256(body + shared_secret))`` over the exact bytes received (the clients serialise
JSON differently, so the body is never re-encoded), the merchant named by
``merchant.id``. The purchase is a journaled call (``gateway.calls.recurring_order``): the order is
created with an idempotency key committed first, a client's identical retry after a lost
answer is bound to it, and ``activate`` is an ordinary full activation of the new
reservation.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from gateway.boundary import BoundaryError, Refused, admit
from gateway.calls import REGISTRY
from gateway.calls import recurring_order as recurring_call
from gateway.calls.activate import Activate
from gateway.config import Config, Merchant
from gateway.errors import FaultCode, GatewayError
from gateway.model import Origin
from gateway.om.client import OmError, RestResponseError
from gateway.recurring.cart import CartError, customer_token_order
from gateway.web import json_body

if TYPE_CHECKING:
    from gateway.engine import CallEngine
    from gateway.om.client import OmClient
    from gateway.store.store import Store

log = Logger()

ORDER_ACCEPTED = "application/vnd.klarna.checkout.recurring-order-accepted-v1+json"
ORDER_REJECTED = "application/vnd.klarna.checkout.recurring-order-rejected-v1+json"
STATUS = "application/vnd.klarna.checkout.recurring-status-v1+json"
ERROR = "application/vnd.klarna.error-v1+json"
_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
#: Klarna's refusals that mean "this purchase was declined" (v2's 402 with a reason).
_DECLINED = {"PAYMENT_METHOD_FAILED", "TOKEN_CANCELLED", "TOKEN_SUSPENDED",
             "UNAVAILABLE_PAYMENT_METHOD", "TOKEN_FORBIDDEN"}
_REASONS = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
            403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            413: "Content Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
#: This edge's name in the boundary's log events.
EDGE = "kco-recurring"


@dataclass(frozen=True)
class V2Answer:
    """An HTTP answer in KCO v2's shape; ``delivered`` records its delivery (journal)."""

    status: int
    content_type: str
    body: dict[str, Any]
    delivered: Callable[[], Awaitable[None]] | None = None
    undelivered: Callable[[], Awaitable[None]] | None = None

    def payload(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def v2_error(status: int, message: str, *, reason: str | None = None) -> V2Answer:
    body: dict[str, Any] = {"http_status_code": status,
                            "http_status_message": _REASONS.get(status, "Error"),
                            "internal_message": message}
    if reason is not None:
        body["reason"] = reason
    return V2Answer(status, ORDER_REJECTED if status == 402 else ERROR, body)


def kco_digest(payload: bytes, secret: str) -> str:
    return base64.b64encode(hashlib.sha256(payload + secret.encode("utf-8")).digest()).decode()


def digest_matches(header: str | None, payload: bytes, secret: str) -> bool:
    if not header or not header.startswith("Klarna "):
        return False
    given = header[len("Klarna "):].strip().encode("ascii", "replace")
    return hmac.compare_digest(given, kco_digest(payload, secret).encode("ascii"))


class RecurringService:
    """Create recurring orders and report tokens: the purchase runs on the ``engine``
    (journaled like a legacy call), tokens are read from Klarna (``om``) and remembered in
    the ``store``, merchants come from ``config``."""

    def __init__(self, config: Config, store: Store, om: OmClient, engine: CallEngine) -> None:
        self.config, self.store, self.om, self.engine = config, store, om, engine

    async def create(self, token: str, raw: bytes, authorization: str | None,
                     client: str | None = None) -> V2Answer:
        """``client``: the peer's IP address (``None``: a UNIX socket), checked against the
        merchant's ``allowed_networks`` by the boundary before the digest."""
        try:
            merchant, body = self._authenticate(raw, authorization, client)
            if not _TOKEN.match(token):
                return v2_error(404, "no such recurring token")
            order = customer_token_order(body)
        except _Refused as e:
            return e.answer
        except CartError as e:
            return v2_error(400, f"Bad format: {e}")
        activate = body.get("activate") is True
        customer_token = await self._customer_token(merchant, token)
        if customer_token is None:
            return v2_error(404, f"recurring token {token} is unknown for this merchant")
        call = recurring_call.RecurringOrder(
            eid=merchant.eid, client_version=recurring_call.CLIENT, token=token,
            customer_token=customer_token, activate=activate,
            body_sha256=hashlib.sha256(raw).hexdigest(), order=order)
        return await self._purchase(merchant, call)

    async def _purchase(self, merchant: Merchant, call: recurring_call.RecurringOrder
                        ) -> V2Answer:
        engine = self.engine
        try:
            created = await engine.run(merchant, REGISTRY.spec("recurring_order"), call)
        except GatewayError as e:
            refused, handed = _refusal(e), e.handed_over
            if handed is None:
                return refused
            # A recorded fault given to a retry: its delivery, like a reply's, is reported.
            return replace(refused, delivered=lambda: engine.delivered(handed),  # type: ignore[arg-type]
                           undelivered=lambda: engine.undelivered(handed))  # type: ignore[arg-type]
        answers = [created]

        async def delivered() -> None:
            for answer in answers:
                await engine.delivered(answer)

        async def undelivered() -> None:
            for answer in answers:
                await engine.undelivered(answer)
        try:
            body = await self._activate(merchant, call, created, answers)
        except _Refused as e:  # the order exists but its number never reaches the client:
            await undelivered()  # its retry is given it at once (and continues activating)
            return e.answer
        except BaseException:  # the edge answers 500: the number never reached the client
            await undelivered()
            raise
        return V2Answer(200, ORDER_ACCEPTED, body, delivered, undelivered)

    async def _activate(self, merchant: Merchant, call: recurring_call.RecurringOrder,
                        created: Any, answers: list[Any]) -> dict[str, Any]:
        """The answer's body, with the invoice when ``activate`` was asked for (v2's flag:
        captured at once, whatever the merchant's profile)."""
        body = dict(created.reply)
        if not call.activate:
            return body
        activation = Activate(eid=merchant.eid, client_version=recurring_call.CLIENT,
                              rno=body["reservation"])
        try:
            activated = await self.engine.run(replace(merchant, profile="default"),
                                                    REGISTRY.spec("activate"), activation)
        except GatewayError as e:
            if e.fault_code == FaultCode.TIMEOUT:
                raise _Refused(v2_error(503, "the order was created but its activation did "
                                             "not finish: send the same request again to "
                                             "learn the invoice number")) from None
            log.info("recurring order {rno} not activated: {fault}",
                     rno=body["reservation"], fault=e.fault_string)
            return body
        answers.append(activated)
        body["invoice"] = str(activated.reply[1])
        return body

    async def status(self, token: str, authorization: str | None,
                     client: str | None = None) -> V2Answer:
        """The payment method behind a recurring token (GET, digest of the empty body: the
        merchant is the one whose digest it is)."""
        found = self._merchant_by_empty_digest(authorization)
        try:
            merchant = admit(EDGE, found.eid if found is not None else None, client,
                             self.config.merchant,
                             lambda m: digest_matches(authorization, b"", m.shared_secret))
        except BoundaryError as e:
            return _boundary_refusal(e, "the Authorization digest matches no merchant")
        if not _TOKEN.match(token):
            return v2_error(404, "no such recurring token")
        customer_token = await self._customer_token(merchant, token)
        if customer_token is None:
            return v2_error(404, f"recurring token {token} is unknown for this merchant")
        try:
            resp = await self.om.request(
                merchant, "GET", f"/customer-token/v1/tokens/{customer_token}",
                deadline=self.engine.clock.seconds() + self.engine.budget)
        except RestResponseError as e:
            return v2_error(404 if e.status in (403, 404) else 503,
                            f"Klarna answered {e.status} {e.error_code or ''}".strip())
        except OmError:
            return v2_error(503, "Klarna did not answer; try again")
        info = resp.body if isinstance(resp.body, dict) else {}
        return V2Answer(200, STATUS, {"payment_method": _payment_method(info),
                                      "status": str(info.get("status", "ACTIVE")).lower()})

    # -- helpers -------------------------------------------------------------------------

    def _authenticate(self, raw: bytes, authorization: str | None, client: str | None
                      ) -> tuple[Merchant, dict[str, Any]]:
        """The boundary: the body parsed (nesting bounded) only to read ``merchant.id``,
        then :func:`gateway.boundary.admit` (merchant, network, body digest)."""
        try:
            body = json_body.loads(raw)
        except json_body.JsonBodyError as e:
            raise _Refused(v2_error(400, f"Bad format: the body is {e}")) from None
        if not isinstance(body, dict):
            raise _Refused(v2_error(400, "Bad format: the body must be a JSON object"))
        merchant_id = (body.get("merchant") or {}).get("id") \
            if isinstance(body.get("merchant"), dict) else None
        text = str(merchant_id) if isinstance(merchant_id, (str, int)) else ""
        eid = int(text) if text.isascii() and text.isdigit() and len(text) < 16 else None
        try:
            merchant = admit(EDGE, eid, client, self.config.merchant,
                             lambda m: digest_matches(authorization, raw, m.shared_secret))
        except BoundaryError as e:
            raise _Refused(_boundary_refusal(
                e, "merchant.id names no merchant of this gateway",
                unknown=404 if eid is not None else 400)) from None
        return merchant, body

    def _merchant_by_empty_digest(self, authorization: str | None) -> Merchant | None:
        found = None
        for merchant in self.config.merchants:
            if digest_matches(authorization, b"", merchant.shared_secret):
                found = merchant  # no early return: every merchant is compared
        return found

    async def _customer_token(self, merchant: Merchant, token: str) -> str | None:
        """The mapped customer token, or the v2 token itself when Klarna knows it as this
        merchant's customer token (pass-through, recorded)."""
        store = self.store
        mapped = await store.customer_token(merchant.eid, token)
        if mapped is not None or not merchant.pass_through:
            return mapped
        try:
            await self.om.request(
                merchant, "GET", f"/customer-token/v1/tokens/{token}",
                deadline=self.engine.clock.seconds() + self.engine.budget)
        except OmError:
            return None
        await store.map_recurring_token(merchant.eid, token, token, Origin.PASS_THROUGH.value)
        return token


def _boundary_refusal(e: BoundaryError, unknown_message: str, *, unknown: int = 401
                      ) -> V2Answer:
    """The boundary's refusal in KCO v2's dialect."""
    if e.reason is Refused.NETWORK:
        return v2_error(403, str(e))
    if e.reason is Refused.CREDENTIAL:
        return v2_error(401, "the Authorization digest does not match")
    return v2_error(unknown, unknown_message)


class _Refused(Exception):
    def __init__(self, answer: V2Answer) -> None:
        super().__init__(answer.body.get("internal_message"))
        self.answer = answer


def _refusal(e: GatewayError) -> V2Answer:
    """A purchase the engine refused, in v2's statuses."""
    code = getattr(e, "rest_error_code", None)
    if code in _DECLINED:
        return v2_error(402, e.fault_string, reason=str(code))
    if e.fault_code == FaultCode.TIMEOUT:
        return v2_error(503, "the outcome is unknown: send the same request again to learn it")
    if e.fault_code in (FaultCode.RNO, FaultCode.UNKNOWN_INVOICE):
        return v2_error(404, e.fault_string)
    if e.fault_code == FaultCode.MISC_ESTORE_ERROR:
        return v2_error(500, "the gateway is misconfigured for this merchant")
    return v2_error(400, e.fault_string)


def _payment_method(info: dict[str, Any]) -> dict[str, Any]:
    kind = str(info.get("payment_method_type", "INVOICE")).upper()
    if kind == "CARD":
        card = info.get("card") or {}
        return {"type": "credit_card", "credit_card_data": {
            k: card[k] for k in ("brand", "masked_number", "expiry_date") if k in card}}
    return {"type": kind.lower()}
