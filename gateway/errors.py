"""The one error model of the gateway, and the legacy fault table.

Every failure a legacy client can see is a :class:`GatewayError` subclass carrying a
:class:`FaultCode` (Klarna Online numbering, docs/legacy-protocol.md#fault-codes) and a
message that is safe to show: no Python text, no secrets. The XML-RPC edge turns these into
``<fault>`` replies in exactly one place (``gateway.edge.resource``); anything that is not a
``GatewayError`` is logged with its traceback and answered with a generic fault.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from enum import IntEnum
from typing import ClassVar


class FaultCode(IntEnum):
    """Legacy fault numbers, with the symbol Klarna Online used for each."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    MISC_ESTORE_ERROR = 1999
    AMOUNT = 2102
    GOODS_LIST = 3210
    UNKNOWN_INVOICE = 8101
    INVOICE_NOT_ACTIVE = 8103
    INVOICE_NOT_PASSIVE_OR_FROZEN = 8111
    INVOICE_NOT_PASSIVE = 8113
    MISC_INVOICE_ERROR = 8999
    NOT_ALLOWED_OPERATION = 9103
    UNKNOWN_TYPE = 9106
    BAD_ARTNOLIST = 9107
    UNKNOWN_ARTNO = 9108
    RNO = 9109
    BAD_ORDER_NO = 9111
    UNKNOWN_ESTORE = 9113
    INVALID_ESTORE_SECRET = 9114
    TIMEOUT = 9119

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS: dict[FaultCode, str] = {
    FaultCode.PARSE_ERROR: "parse_error",
    FaultCode.INVALID_REQUEST: "invalid_request",
    FaultCode.METHOD_NOT_FOUND: "method_not_found",
    FaultCode.INVALID_PARAMS: "invalid_params",
    FaultCode.INTERNAL_ERROR: "internal_error",
    FaultCode.MISC_ESTORE_ERROR: "misc_estore_error",
    FaultCode.AMOUNT: "amount",
    FaultCode.GOODS_LIST: "goods_list",
    FaultCode.UNKNOWN_INVOICE: "unknown_invoice",
    FaultCode.INVOICE_NOT_ACTIVE: "invoice_not_active",
    FaultCode.INVOICE_NOT_PASSIVE_OR_FROZEN: "invoice_not_passive_or_frozen",
    FaultCode.INVOICE_NOT_PASSIVE: "invoice_not_passive",
    FaultCode.MISC_INVOICE_ERROR: "misc_invoice_error",
    FaultCode.NOT_ALLOWED_OPERATION: "not_allowed_operation",
    FaultCode.UNKNOWN_TYPE: "unknown_type",
    FaultCode.BAD_ARTNOLIST: "bad_artnolist",
    FaultCode.UNKNOWN_ARTNO: "unknown_artno",
    FaultCode.RNO: "rno",
    FaultCode.BAD_ORDER_NO: "bad_order_no",
    FaultCode.UNKNOWN_ESTORE: "unknown_estore",
    FaultCode.INVALID_ESTORE_SECRET: "invalid_estore_secret",
    FaultCode.TIMEOUT: "timeout",
}

#: The integrator-facing fault table: (code, condition), listed in
#: docs/legacy-protocol.md#fault-codes (a test compares them).
FAULT_TABLE: tuple[tuple[FaultCode, str], ...] = (
    (FaultCode.PARSE_ERROR, "malformed XML, DTD/entities, body too large, nesting too deep"),
    (FaultCode.INVALID_REQUEST, "well-formed XML that is not a methodCall"),
    (FaultCode.METHOD_NOT_FOUND, "method name unknown to the legacy API"),
    (FaultCode.INVALID_PARAMS, "wrong parameter count or type (the message names the parameter)"),
    (FaultCode.UNKNOWN_ESTORE, "eid not configured on this gateway"),
    (FaultCode.INVALID_ESTORE_SECRET, "digest does not match (any SDK dialect, any hash length)"),
    (FaultCode.RNO, "reservation number unknown for this eid"),
    (FaultCode.UNKNOWN_INVOICE, "invoice number unknown for this eid"),
    (FaultCode.INVOICE_NOT_ACTIVE, "v2-strict: the invoice is fully credited (not active)"),
    (FaultCode.INVOICE_NOT_PASSIVE_OR_FROZEN,
     "activate_part / activate_invoice on a known invoice: it is already active "
     "(REST has no passive invoices)"),
    (FaultCode.INVOICE_NOT_PASSIVE,
     "delete_invoice / update_goods_qty / update_charge_amount on a known invoice: it is "
     "activated and cannot be changed (credit it instead)"),
    (FaultCode.BAD_ORDER_NO, "check_order_status by order id: no reservation carries it"),
    (FaultCode.UNKNOWN_TYPE, "check_order_status: type is neither 0 nor 1"),
    (FaultCode.MISC_INVOICE_ERROR,
     "the invoice lacks what the call reports (invoice_address: no billing address, or a "
     "country with no Klarna code)"),
    (FaultCode.UNKNOWN_ARTNO, "artno not on the order / invoice"),
    (FaultCode.BAD_ARTNOLIST, "artnos malformed, or a quantity above what remains"),
    (FaultCode.AMOUNT, "amount out of range, nothing left to capture or refund"),
    (FaultCode.GOODS_LIST, "goods list malformed or its arithmetic does not hold"),
    (FaultCode.NOT_ALLOWED_OPERATION,
     "state forbids it (cancelled, expired, fully activated, fraud PENDING/REJECTED), "
     "or the call is not offered by the gateway"),
    (FaultCode.TIMEOUT, "Klarna unavailable after retries (5xx, timeout, 429), or the gateway's "
     "database unavailable; retry the same call"),
    (FaultCode.MISC_ESTORE_ERROR, "gateway misconfigured for this eid (REST credentials refused)"),
)


class GatewayError(Exception):
    """Base of every error a legacy client may see.

    Args:
        message: English text safe to show to the client.
        debug_context: logged only, never sent.
        correlation_id: Klarna's id for the REST error that caused this, appended to the
            fault string so support can trace it.
    """

    fault_code: ClassVar[FaultCode] = FaultCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        debug_context: str | None = None,
        correlation_id: str | None = None,
        code: FaultCode | None = None,
    ) -> None:
        super().__init__(message)
        self.public_message = message
        self.debug_context = debug_context
        self.correlation_id = correlation_id
        #: Klarna's ``error_code`` when a REST refusal caused this fault.
        self.rest_error_code: str | None = None
        #: What the call was about (journal_id, rno, invno), for logs and metrics.
        self.context: dict[str, object] = {}
        #: A recorded fault handed over again to a retry: its delivery, like a reply's,
        #: ends the binding (``delivered()``) or keeps it (``undelivered()``). Set by the
        #: composition root; the edge calls one of them once the fault is written.
        self.delivered: Callable[[], Awaitable[None]] | None = None
        self.undelivered: Callable[[], Awaitable[None]] | None = None
        #: The journal's record of that hand-over (an engine ``Answer``), for the root.
        self.handed_over: object | None = None
        if code is not None:
            self.fault_code = code  # type: ignore[misc]

    @property
    def fault_string(self) -> str:
        text = f"{self.fault_code.symbol}: {self.public_message}"
        if self.correlation_id:
            text += f" (correlation_id {self.correlation_id})"
        return text


class ParseError(GatewayError):
    fault_code = FaultCode.PARSE_ERROR


class InvalidRequestError(GatewayError):
    fault_code = FaultCode.INVALID_REQUEST


class MethodNotFoundError(GatewayError):
    fault_code = FaultCode.METHOD_NOT_FOUND


class InvalidParamsError(GatewayError):
    fault_code = FaultCode.INVALID_PARAMS


class UnknownEstoreError(GatewayError):
    fault_code = FaultCode.UNKNOWN_ESTORE


class InvalidDigestError(GatewayError):
    fault_code = FaultCode.INVALID_ESTORE_SECRET


class UnknownReservationError(GatewayError):
    fault_code = FaultCode.RNO


class UnknownInvoiceError(GatewayError):
    fault_code = FaultCode.UNKNOWN_INVOICE


class InvoiceDataError(GatewayError):
    """The invoice exists but Klarna's data cannot answer the call (8999), e.g. an
    invoice_address with no billing address on the capture or the order."""

    fault_code = FaultCode.MISC_INVOICE_ERROR


class UnknownArtnoError(GatewayError):
    fault_code = FaultCode.UNKNOWN_ARTNO


class BadArtnoListError(GatewayError):
    fault_code = FaultCode.BAD_ARTNOLIST


class AmountError(GatewayError):
    fault_code = FaultCode.AMOUNT


class GoodsListError(GatewayError):
    fault_code = FaultCode.GOODS_LIST


class InvoiceNotActiveError(GatewayError):
    fault_code = FaultCode.INVOICE_NOT_ACTIVE


class BadOrderNoError(GatewayError):
    fault_code = FaultCode.BAD_ORDER_NO


class UnknownTypeError(GatewayError):
    fault_code = FaultCode.UNKNOWN_TYPE


class NotAllowedError(GatewayError):
    """The order's state forbids the operation, or the gateway does not offer the call."""

    fault_code = FaultCode.NOT_ALLOWED_OPERATION


class UpstreamUnavailableError(GatewayError):
    """Klarna did not answer usefully within the retry budget; the call stays recoverable."""

    fault_code = FaultCode.TIMEOUT


class DatabaseUnavailableError(UpstreamUnavailableError):
    """The gateway's own database could not be used (connection lost or refused, server
    restarting, disk full): the call's outcome is recorded as far as it got, and its retry
    continues it."""

    def __init__(self, *, debug_context: str | None = None) -> None:
        super().__init__("the gateway's database is unavailable; retry the same call",
                         debug_context=debug_context)


class MerchantMisconfiguredError(GatewayError):
    fault_code = FaultCode.MISC_ESTORE_ERROR


class ConfigError(Exception):
    """A configuration problem, printed as ``Error in configuration at 'path': message``."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"Error in configuration at {path!r}: {message}")
        self.path = path
        self.message = message
