"""The sandbox control API under ``/sandbox/v1/``: faults, clock, reset and test probes.

Guarded by ``Authorization: Bearer <[sandbox] admin_token>`` so a sandbox reachable from a
shared CI network cannot be reconfigured by accident. Control requests are never subject to
injected faults and never reported to the ``on_response`` conformance hook (they are not part
of Klarna's API). See ``gateway/sandbox/README.md`` for the endpoint list.
"""
from __future__ import annotations

import hmac
import json
import re
from typing import Any

from gateway.sandbox.clock import SandboxClock, format_timestamp, parse_timestamp
from gateway.sandbox.errors import OmError
from gateway.sandbox.faults import FaultRegistry, FaultSpecError
from gateway.sandbox.idempotency import IdempotencyStore
from gateway.sandbox.orders import FRAUD_STATUSES, OrderBook
from gateway.sandbox.response import (
    SandboxResponse,
    empty_response,
    error_response,
    json_response,
)

_ORDER = re.compile(r"/sandbox/v1/orders/(?P<order_id>[^/]+)/(?P<what>operations|fraud_status)$")
_FAULT = re.compile(r"/sandbox/v1/faults/(?P<fault_id>[^/]+)$")


class ControlApi:
    """Handles one control request; all state belongs to the owning ``SandboxResource``."""

    def __init__(
        self,
        *,
        admin_token: str,
        clock: SandboxClock,
        faults: FaultRegistry,
        book: OrderBook,
        idempotency: IdempotencyStore,
    ) -> None:
        self._admin_token = admin_token
        self._clock = clock
        self._faults = faults
        self._book = book
        self._idempotency = idempotency

    def handle(self, method: str, path: str, authorization: str | None,
               body: bytes) -> SandboxResponse:
        expected = f"Bearer {self._admin_token}".encode()
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
            return error_response(OmError(401, "UNAUTHORIZED", "Missing or wrong admin token"),
                                  (("WWW-Authenticate", 'Bearer realm="sandbox"'),))
        try:
            return self._dispatch(method, path.rstrip("/"), body)
        except OmError as e:
            return error_response(e)

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
            self._book.clear()
            self._idempotency.clear()
            self._faults.clear()
            return empty_response()
        if found := _ORDER.match(path):
            order = self._book.get_any(found["order_id"], self._clock.now())
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
            return json_response({"order_id": order.order_id, "fraud_status": status})
        raise OmError(404, "NOT_FOUND", "No such control endpoint")

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
        document = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise OmError(400, "BAD_VALUE", "Bad value: body (not valid JSON)") from None
    if not isinstance(document, dict):
        raise OmError(400, "BAD_VALUE", "Bad value: body (must be a JSON object)")
    return document


def _method_not_allowed() -> OmError:
    return OmError(405, "METHOD_NOT_ALLOWED", "Method not allowed")
