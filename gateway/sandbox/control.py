"""The sandbox control API under ``/sandbox/v1/``: faults, clock, reset, tokens and probes.

Guarded by ``Authorization: Bearer <[sandbox] admin_token>`` so a sandbox reachable from a
shared CI network cannot be reconfigured by accident. Control requests are never subject to
injected faults and never reported to the ``on_response`` conformance hook (they are not part
of Klarna's API). See ``gateway/sandbox/README.md`` for the endpoint list.
"""
from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import unquote

from gateway.web import json_body as bounded_json
from gateway.sandbox.clock import SandboxClock, format_timestamp, parse_timestamp
from gateway.sandbox.errors import OmError
from gateway.sandbox.faults import FaultRegistry, FaultSpecError
from gateway.sandbox.orders import FRAUD_STATUSES
from gateway.sandbox.purchases import auto_capture
from gateway.sandbox.response import (
    SandboxResponse,
    empty_response,
    error_response,
    json_response,
)
from gateway.sandbox.state import SandboxState
from gateway.sandbox.tokens import CustomerToken, TokenStatus
from gateway.sandbox.traffic import RequestLog
from gateway.sandbox.validation import ADDRESS, CUSTOMER, Int, Obj, Str, validate

_ORDER = re.compile(r"/sandbox/v1/orders/(?P<order_id>[^/]+)/(?P<what>operations|fraud_status)$")
_FAULT = re.compile(r"/sandbox/v1/faults/(?P<fault_id>[^/]+)$")
_TOKEN = re.compile(r"/sandbox/v1/tokens/(?P<token_id>[^/]+)(?P<status>/status)?$")

TOKEN_STATUSES = tuple(status.value for status in TokenStatus)

#: ``POST /sandbox/v1/tokens``: a customer token made directly, with a chosen owner and
#: status. Ids are restricted to URL-safe characters so they can be pasted into paths.
CONTROL_TOKEN_REQUEST = Obj(
    {
        "eid": Int(minimum=1),
        "token_id": Str(255, min_len=1, pattern=r"[A-Za-z0-9._~-]+"),
        "status": Str(choices=TOKEN_STATUSES),
        "purchase_country": Str(2, pattern=r"[A-Za-z]{2}"),
        "purchase_currency": Str(3, pattern=r"[A-Za-z]{3}"),
        "locale": Str(35, pattern=r"[A-Za-z]{2}(?:-[A-Za-z]{2})*"),
        "payment_method_type": Str(64, min_len=1),
        "billing_address": ADDRESS,
        "customer": CUSTOMER,
    },
    frozenset({"eid"}),
)

CONTROL_TOKEN_STATUS_REQUEST = Obj({"status": Str(choices=TOKEN_STATUSES)},
                                   frozenset({"status"}))


class ControlApi:
    """Handles one control request; all state belongs to the owning ``SandboxResource``.

    Args:
        admin_token: the bearer token every control request must carry.
        clock, faults, state: the sandbox's clock, fault registry and Klarna-side state.
        requests: the log of Klarna-API requests (``/sandbox/v1/requests``).
        merchant_eids: the configured merchants (a token's owner must be one of them).
        reset: forgets everything (and, when seeded, restarts ids and clock).
        correlation_id: draws the correlation id of an error answer.
    """

    def __init__(
        self,
        *,
        admin_token: str,
        clock: SandboxClock,
        faults: FaultRegistry,
        state: SandboxState,
        merchant_eids: Collection[int],
        reset: Callable[[], None],
        correlation_id: Callable[[], str],
        requests: RequestLog | None = None,
    ) -> None:
        self._admin_token = admin_token
        self._clock = clock
        self._faults = faults
        self._state = state
        self._merchant_eids = frozenset(merchant_eids)
        self._reset = reset
        self._correlation_id = correlation_id
        self._requests = requests if requests is not None else RequestLog()

    def handle(self, method: str, path: str, authorization: str | None,
               body: bytes) -> SandboxResponse:
        expected = f"Bearer {self._admin_token}".encode()
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
            return error_response(OmError(401, "UNAUTHORIZED", "Missing or wrong admin token"),
                                  self._correlation_id(),
                                  (("WWW-Authenticate", 'Bearer realm="sandbox"'),))
        try:
            return self._dispatch(method, path.rstrip("/"), body)
        except OmError as e:
            return error_response(e, self._correlation_id())

    def _dispatch(self, method: str, path: str, body: bytes) -> SandboxResponse:
        if path == "/sandbox/v1/faults":
            if method == "POST":
                try:
                    fault = self._faults.add(_json(body))
                except FaultSpecError as e:
                    raise OmError(400, "BAD_VALUE", f"Bad value: {e}") from None
                return json_response(fault.to_json(), 201)
            if method == "GET":
                return json_response([f.to_json() for f in self._faults.list()])
            if method == "DELETE":
                self._faults.clear()
                return empty_response()
            raise _method_not_allowed()
        if found := _FAULT.match(path):
            if method != "DELETE":
                raise _method_not_allowed()
            if not self._faults.remove(found["fault_id"]):
                raise OmError(404, "NOT_FOUND", f"No fault {found['fault_id']}")
            return empty_response()
        if path == "/sandbox/v1/requests":
            if method == "GET":
                return json_response(self._requests.to_json())
            if method == "DELETE":
                self._requests.clear()
                return empty_response()
            raise _method_not_allowed()
        if path == "/sandbox/v1/clock":
            if method == "POST":
                self._set_clock(_json(body))
            elif method != "GET":
                raise _method_not_allowed()
            return json_response({"now": format_timestamp(self._clock.now()),
                                  "frozen": self._clock.frozen})
        if path == "/sandbox/v1/reset":
            if method != "POST":
                raise _method_not_allowed()
            self._reset()
            return empty_response()
        if path == "/sandbox/v1/tokens":
            if method != "POST":
                raise _method_not_allowed()
            return json_response(self._create_token(_json(body)).control_json(), 201)
        if found := _TOKEN.match(path):
            return self._token_call(method, unquote(found["token_id"]), bool(found["status"]),
                                    body)
        if found := _ORDER.match(path):
            order = self._state.book.get_any(found["order_id"], self._clock.now())
            if order is None:
                raise OmError(404, "NO_SUCH_ORDER", f"Order {found['order_id']} cannot be found")
            if found["what"] == "operations":
                if method != "GET":
                    raise _method_not_allowed()
                return json_response([op.to_json() for op in order.operations])
            if method != "POST":
                raise _method_not_allowed()
            status = _json(body).get("fraud_status")
            if status not in FRAUD_STATUSES:
                raise OmError(400, "BAD_VALUE", "Bad value: fraud_status")
            order.fraud_status = status
            if status == "ACCEPTED" and order.auto_capture_pending:
                # Klarna captures an auto_capture order once its fraud check clears.
                try:
                    auto_capture(order, self._clock.now(), self._state.book.new_capture_id)
                except OmError:
                    pass  # expired or cancelled meanwhile: nothing left to capture
            return json_response({"order_id": order.order_id, "fraud_status": status})
        raise OmError(404, "NOT_FOUND", "No such control endpoint")

    def _create_token(self, document: dict[str, Any]) -> CustomerToken:
        spec = validate(CONTROL_TOKEN_REQUEST, document)
        if spec["eid"] not in self._merchant_eids:
            raise OmError(400, "BAD_VALUE", "Bad value: eid (no such merchant)")
        token = CustomerToken(
            token_id=spec.get("token_id") or self._state.ids.customer_token_id(),
            merchant_eid=spec["eid"],
            status=TokenStatus(spec.get("status", TokenStatus.ACTIVE.value)),
            purchase_country=spec.get("purchase_country", "SE"),
            purchase_currency=spec.get("purchase_currency", "SEK"),
            locale=spec.get("locale", "sv-SE"),
            payment_method_type=spec.get("payment_method_type", "INVOICE"),
            billing_address=spec.get("billing_address"),
            customer=spec.get("customer"),
            created_at=self._clock.now(),
        )
        if not self._state.tokens.add(token):
            raise OmError(409, "CONFLICT", f"Token {token.token_id} already exists")
        return token

    def _token_call(self, method: str, token_id: str, status_path: bool,
                    body: bytes) -> SandboxResponse:
        token = self._state.tokens.get_any(token_id)
        if token is None:
            raise OmError(404, "NOT_FOUND", f"No token {token_id}")
        if status_path:
            if method != "POST":
                raise _method_not_allowed()
            token.status = TokenStatus(
                validate(CONTROL_TOKEN_STATUS_REQUEST, _json(body))["status"])
        elif method != "GET":
            raise _method_not_allowed()
        return json_response(token.control_json())

    def _set_clock(self, document: dict[str, Any]) -> None:
        if "advance_seconds" in document:
            seconds = document["advance_seconds"]
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                raise OmError(400, "BAD_VALUE", "Bad value: advance_seconds")
            self._clock.advance(seconds)
        elif "now" in document:
            try:
                self._clock.set(parse_timestamp(str(document["now"])))
            except ValueError:
                raise OmError(400, "BAD_VALUE", "Bad value: now") from None
        elif "frozen" not in document:
            raise OmError(400, "BAD_VALUE", "Missing value: advance_seconds or now")
        if "frozen" in document:
            if not isinstance(document["frozen"], bool):
                raise OmError(400, "BAD_VALUE", "Bad value: frozen")
            self._clock.freeze(document["frozen"])


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = bounded_json.loads(body or b"{}")
    except bounded_json.JsonBodyError as e:
        raise OmError(400, "BAD_VALUE", f"Bad value: body ({e})") from None
    if not isinstance(document, dict):
        raise OmError(400, "BAD_VALUE", "Bad value: body (must be a JSON object)")
    return document


def _method_not_allowed() -> OmError:
    return OmError(405, "METHOD_NOT_ALLOWED", "Method not allowed")
