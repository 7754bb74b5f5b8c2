"""Klarna customer tokens (recurring purchases): the token book and its lifecycle rules.

A customer token stands for a customer and a payment method, tied to one merchant (eid).
Lifecycle, after Klarna's "Customer token lifecycle" and "Cancel a customer token" pages:

* a token is born ACTIVE, from an authorization (``POST /payments/v1/authorizations/{t}/
  customer-token``) or, for tests, from the control API with any status;
* the merchant may cancel it (``PATCH /customer-token/v1/tokens/{t}/status``,
  ``{"status": "CANCELLED"}``); a cancelled token is never usable again;
* Klarna may suspend it, and lift the suspension; in the sandbox the control API plays
  Klarna (``POST /sandbox/v1/tokens/{t}/status``).

Orders placed with a token that is not ACTIVE are refused with Klarna's documented codes:
403 TOKEN_SUSPENDED / TOKEN_CANCELLED. A token of another merchant is 404 like an unknown
one, so tokens cannot be probed across merchants (the same rule as for orders).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.sandbox.clock import format_timestamp
from gateway.sandbox.errors import OmError


class TokenStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CANCELLED = "CANCELLED"


@dataclass
class CustomerToken:
    token_id: str
    merchant_eid: int
    purchase_country: str
    purchase_currency: str
    created_at: datetime
    status: TokenStatus = TokenStatus.ACTIVE
    locale: str | None = None
    payment_method_type: str = "INVOICE"
    description: str | None = None
    intended_use: str | None = None
    billing_address: dict[str, Any] | None = None
    customer: dict[str, Any] | None = None
    payment_method_reference: str | None = None
    #: The authorization it was created from (None when made by the control API).
    authorization_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The vendor ``customer_token`` schema: what ``GET .../tokens/{t}`` answers."""
        return {"payment_method_type": self.payment_method_type, "status": self.status.value}

    def control_json(self) -> dict[str, Any]:
        """Everything the sandbox knows, for the control API."""
        document: dict[str, Any] = {
            "token_id": self.token_id,
            "eid": self.merchant_eid,
            "status": self.status.value,
            "payment_method_type": self.payment_method_type,
            "purchase_country": self.purchase_country,
            "purchase_currency": self.purchase_currency,
            "locale": self.locale,
            "created_at": format_timestamp(self.created_at),
            "authorization_token": self.authorization_token,
            "billing_address": self.billing_address,
        }
        return {key: value for key, value in document.items() if value is not None}


def check_active(token: CustomerToken) -> None:
    """Refuse an order with a token that is not ACTIVE.

    Raises:
        OmError: 403 TOKEN_CANCELLED or TOKEN_SUSPENDED (Klarna's documented codes).
    """
    if token.status is TokenStatus.CANCELLED:
        raise OmError(403, "TOKEN_CANCELLED", "The customer token has been cancelled.")
    if token.status is TokenStatus.SUSPENDED:
        raise OmError(403, "TOKEN_SUSPENDED", "The customer token has been suspended by Klarna.")


def check_currency(token: CustomerToken, currency: str) -> None:
    """Refuse an order in another currency than the token's payment method.

    Raises:
        OmError: 403 PAYMENT_METHOD_CURRENCY_MISMATCH.
    """
    if currency.upper() != token.purchase_currency.upper():
        raise OmError(403, "PAYMENT_METHOD_CURRENCY_MISMATCH",
                      f"The payment method of the token is not available for currency "
                      f"{currency.upper()}.")


class TokenBook:
    """All customer tokens of one sandbox, keyed by token id."""

    def __init__(self) -> None:
        self.tokens: dict[str, CustomerToken] = {}
        #: (eid, authorization token) -> token id: asking twice for a token from the same
        #: authorization gives the same token, as placing an order twice gives the same order.
        self.by_authorization: dict[tuple[int, str], str] = {}

    def clear(self) -> None:
        self.tokens.clear()
        self.by_authorization.clear()

    def add(self, token: CustomerToken) -> bool:
        """Store a new token; False (and nothing stored) when the id is already taken."""
        if token.token_id in self.tokens:
            return False
        self.tokens[token.token_id] = token
        return True

    def get(self, eid: int, token_id: str) -> CustomerToken | None:
        """The merchant's token; another merchant's token is None, like an unknown one."""
        token = self.tokens.get(token_id)
        if token is None or token.merchant_eid != eid:
            return None
        return token

    def get_any(self, token_id: str) -> CustomerToken | None:
        """A token regardless of merchant (control API only)."""
        return self.tokens.get(token_id)
