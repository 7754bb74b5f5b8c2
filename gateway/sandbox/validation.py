"""Request-body validation with Klarna's field limits, naming the offending field.

The vendor OpenAPI file is test data (it lives outside the package), so the limits are
restated here as small declarative specs. Two classes of refusal, as Klarna's APIs use them:

* **400 BAD_VALUE** -- wrong JSON type, missing required field, value outside an allowed set
  or pattern, or arithmetic that does not hold: ``"Bad value: order_lines[0].total_amount"``.
* **422 UNPROCESSABLE_ENTITY** -- a well-typed value outside its size or range limits, worded
  like Klarna's documented message: ``"The size of the shipping_info[0].shipping_company value
  must be between 0 and 100"``.

Unknown fields are ignored (Klarna ignores them); :func:`validate` returns a copy that holds
only the known fields, so stored data can never break the response schema.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from gateway.sandbox.errors import OmError

MAX_AMOUNT = 200_000_000


@dataclass(frozen=True)
class Str:
    max_len: int = 255
    min_len: int = 0
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    #: ``"date"``: must also be a real calendar date (YYYY-MM-DD), as the order schema says.
    format: str | None = None


@dataclass(frozen=True)
class Int:
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Arr:
    item: Spec
    max_items: int = 1000
    min_items: int = 0


@dataclass(frozen=True)
class Obj:
    fields: dict[str, Spec]
    required: frozenset[str] = field(default_factory=frozenset)


Spec = Str | Int | Bool | Arr | Obj


def bad_value(path: str, prefix: str = "Bad value") -> OmError:
    """400 BAD_VALUE naming ``path``."""
    return OmError(400, "BAD_VALUE", f"{prefix}: {path}")


def _size_error(path: str, low: int, high: int) -> OmError:
    return OmError(422, "UNPROCESSABLE_ENTITY",
                   f"The size of the {path} value must be between {low} and {high}")


def _range_error(path: str, low: int | None, high: int | None) -> OmError:
    if low is not None and high is not None:
        text = f"The value of {path} must be between {low} and {high}"
    elif low is not None:
        text = f"The value of {path} must be greater than or equal to {low}"
    else:
        text = f"The value of {path} must be less than or equal to {high}"
    return OmError(422, "UNPROCESSABLE_ENTITY", text)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validate(spec: Spec, value: Any, path: str = "") -> Any:
    """Check ``value`` against ``spec`` and return a cleaned copy.

    Raises:
        OmError: 400 BAD_VALUE or 422 UNPROCESSABLE_ENTITY naming the first bad field.
    """
    where = path or "body"
    if isinstance(spec, Str):
        if not isinstance(value, str):
            raise bad_value(where)
        if not spec.min_len <= len(value) <= spec.max_len:
            raise _size_error(where, spec.min_len, spec.max_len)
        if spec.choices is not None and value not in spec.choices:
            raise bad_value(where)
        if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
            raise bad_value(where)
        if spec.format == "date":
            try:
                date.fromisoformat(value)
            except ValueError:
                raise bad_value(where) from None
        return value
    if isinstance(spec, Int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad_value(where)
        if (spec.minimum is not None and value < spec.minimum) or (
            spec.maximum is not None and value > spec.maximum
        ):
            raise _range_error(where, spec.minimum, spec.maximum)
        return value
    if isinstance(spec, Bool):
        if not isinstance(value, bool):
            raise bad_value(where)
        return value
    if isinstance(spec, Arr):
        if not isinstance(value, list):
            raise bad_value(where)
        if not spec.min_items <= len(value) <= spec.max_items:
            raise _size_error(where, spec.min_items, spec.max_items)
        return [validate(spec.item, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        raise bad_value(where)
    for name in sorted(spec.required):
        if name not in value or value[name] is None:
            raise bad_value(_join(path, name), "Missing value")
    cleaned: dict[str, Any] = {}
    for name, sub in spec.fields.items():
        if name in value and value[name] is not None:
            cleaned[name] = validate(sub, value[name], _join(path, name))
    return cleaned


# --- shared component specs (docs/order-management.md#field-limits; klarna-payments.openapi.yml)

ORDER_LINE_TYPES = ("physical", "discount", "shipping_fee", "sales_tax", "store_credit",
                    "gift_card", "digital", "surcharge", "return_fee")

SHIPPING_METHODS = ("PickUpStore", "Home", "BoxReg", "BoxUnreg", "PickUpPoint", "Own", "Postal",
                    "DHLPackstation", "Digital", "Undefined", "PickUpWarehouse", "ClickCollect",
                    "PalletDelivery")

PRODUCT_IDENTIFIERS = Obj({
    "brand": Str(70),
    "category_path": Str(750),
    "color": Str(64),
    "global_trade_item_number": Str(50),
    "manufacturer_part_number": Str(70),
    "size": Str(64),
})

SUBSCRIPTION = Obj(
    {"name": Str(255), "interval": Str(choices=("DAY", "WEEK", "MONTH", "YEAR")),
     "interval_count": Int(minimum=1)},
    frozenset({"name", "interval", "interval_count"}),
)

ORDER_LINE = Obj(
    {
        "type": Str(choices=ORDER_LINE_TYPES),
        "reference": Str(255),
        "name": Str(255),
        "quantity": Int(minimum=0),
        "quantity_unit": Str(10),
        "unit_price": Int(minimum=-MAX_AMOUNT, maximum=MAX_AMOUNT),
        "tax_rate": Int(minimum=0, maximum=10000),
        "total_amount": Int(minimum=-MAX_AMOUNT, maximum=MAX_AMOUNT),
        "total_discount_amount": Int(minimum=0, maximum=MAX_AMOUNT),
        "total_tax_amount": Int(minimum=-MAX_AMOUNT, maximum=MAX_AMOUNT),
        "merchant_data": Str(1024),
        "product_url": Str(1024),
        "image_url": Str(1024),
        "product_identifiers": PRODUCT_IDENTIFIERS,
        "subscription": SUBSCRIPTION,
    },
    frozenset({"name", "quantity", "total_amount", "unit_price"}),
)

ORDER_LINES = Arr(ORDER_LINE, max_items=1000)

ADDRESS = Obj({
    "attention": Str(255),
    "city": Str(200),
    "country": Str(2, pattern=r"[A-Za-z]{2}|"),
    "email": Str(100),
    "family_name": Str(100),
    "given_name": Str(100),
    "organization_name": Str(255),
    "phone": Str(100),
    "postal_code": Str(10),
    "region": Str(200),
    "street_address": Str(100),
    "street_address2": Str(100),
    "title": Str(20),
})

SHIPPING_INFO = Obj({
    "shipping_company": Str(100),
    "shipping_method": Str(pattern="|".join(SHIPPING_METHODS)),
    "tracking_number": Str(100),
    "tracking_uri": Str(1024),
    "return_shipping_company": Str(100),
    "return_tracking_number": Str(100),
    "return_tracking_uri": Str(1024),
})

AMOUNT = Int(minimum=0, maximum=MAX_AMOUNT)

# --- request bodies ---

CAPTURE_REQUEST = Obj(
    {
        "captured_amount": AMOUNT,
        "description": Str(255),
        "reference": Str(255),
        "order_lines": ORDER_LINES,
        "shipping_info": Arr(SHIPPING_INFO, max_items=500),
        "shipping_delay": Int(minimum=0),
    },
    frozenset({"captured_amount"}),
)

REFUND_REQUEST = Obj(
    {"refunded_amount": AMOUNT, "description": Str(255), "reference": Str(255),
     "order_lines": ORDER_LINES},
    frozenset({"refunded_amount"}),
)

UPDATE_AUTHORIZATION_REQUEST = Obj(
    {"order_amount": AMOUNT, "description": Str(255), "order_lines": ORDER_LINES},
    frozenset({"order_amount"}),
)

MERCHANT_REFERENCES_REQUEST = Obj({"merchant_reference1": Str(255),
                                   "merchant_reference2": Str(255)})

CUSTOMER_DETAILS_REQUEST = Obj({"shipping_address": ADDRESS, "billing_address": ADDRESS})

SHIPPING_INFO_REQUEST = Obj({"shipping_info": Arr(SHIPPING_INFO, max_items=500, min_items=1)},
                            frozenset({"shipping_info"}))

EXTEND_DUE_DATE_REQUEST = Obj({"number_of_days": Int(minimum=1, maximum=365)},
                              frozenset({"number_of_days"}))

CUSTOMER = Obj({"date_of_birth": Str(10, pattern=r"\d{4}-\d{2}-\d{2}", format="date"),
                "national_identification_number": Str(255)})

#: Klarna Payments ``create_order_request`` (klarna-payments.openapi.yml).
CREATE_ORDER_REQUEST = Obj(
    {
        "purchase_country": Str(2, pattern=r"[A-Za-z]{2}"),
        "purchase_currency": Str(3, pattern=r"[A-Za-z]{3}"),
        "locale": Str(35, pattern=r"[A-Za-z]{2}(?:-[A-Za-z]{2})*"),
        "order_amount": AMOUNT,
        "order_tax_amount": AMOUNT,
        "order_lines": Arr(ORDER_LINE, max_items=1000, min_items=1),
        "billing_address": ADDRESS,
        "shipping_address": ADDRESS,
        "customer": CUSTOMER,
        "merchant_reference1": Str(255),
        "merchant_reference2": Str(255),
        "merchant_data": Str(6000),
        "auto_capture": Bool(),
    },
    frozenset({"purchase_country", "purchase_currency", "order_amount", "order_lines"}),
)

# --- Customer Token API (klarna-customer-token.openapi.yml) ---

#: The customer-token file's ``order_line``: tighter than Order Management's (amounts up to
#: 100 000 000, ``merchant_data`` 255, ``reference`` 256, ``quantity_unit`` 8, no
#: ``return_fee`` type).
CUSTOMER_TOKEN_ORDER_LINE = Obj(
    {
        **ORDER_LINE.fields,
        "type": Str(choices=tuple(t for t in ORDER_LINE_TYPES if t != "return_fee")),
        "reference": Str(256),
        "quantity_unit": Str(8),
        "unit_price": Int(minimum=-100_000_000, maximum=100_000_000),
        "total_amount": Int(minimum=-100_000_000, maximum=100_000_000),
        "merchant_data": Str(255),
    },
    ORDER_LINE.required,
)

ATTACHMENT = Obj({"body": Str(MAX_AMOUNT), "content_type": Str(255)},
                 frozenset({"body", "content_type"}))

TOKEN_MERCHANT_URLS = Obj({"confirmation": Str(2000), "push": Str(2000)},
                          frozenset({"confirmation"}))

#: ``customer_token_order``: no country, billing address or customer (they belong to the
#: token); ``order_tax_amount`` is required and ``order_amount`` is at least 1. ``locale`` is
#: not in the schema but is in Klarna's own example request, so it is accepted.
CUSTOMER_TOKEN_ORDER_REQUEST = Obj(
    {
        "purchase_currency": Str(3, pattern=r"[A-Za-z]{3}"),
        "locale": Str(35, pattern=r"[A-Za-z]{2}(?:-[A-Za-z]{2})*"),
        "order_amount": Int(minimum=1, maximum=MAX_AMOUNT),
        "order_tax_amount": AMOUNT,
        "order_lines": Arr(CUSTOMER_TOKEN_ORDER_LINE, max_items=1000, min_items=1),
        "shipping_address": ADDRESS,
        "merchant_reference1": Str(255),
        "merchant_reference2": Str(255),
        "merchant_data": Str(6000),
        "merchant_urls": TOKEN_MERCHANT_URLS,
        "attachment": ATTACHMENT,
        "auto_capture": Bool(),
    },
    frozenset({"purchase_currency", "order_amount", "order_tax_amount", "order_lines"}),
)

#: Klarna Payments ``customer_token_creation_request``.
CUSTOMER_TOKEN_CREATION_REQUEST = Obj(
    {
        "purchase_country": Str(2, pattern=r"[A-Za-z]{2}"),
        "purchase_currency": Str(3, pattern=r"[A-Za-z]{3}"),
        "locale": Str(35, pattern=r"[A-Za-z]{2}(?:-[A-Za-z]{2})*"),
        "description": Str(255, min_len=1),
        "intended_use": Str(choices=("SUBSCRIPTION",)),
        "billing_address": ADDRESS,
        "customer": CUSTOMER,
    },
    frozenset({"description", "intended_use", "locale", "purchase_country",
               "purchase_currency"}),
)

#: ``customer_token_status_update_request``: a merchant can only cancel.
TOKEN_STATUS_UPDATE_REQUEST = Obj({"status": Str(choices=("CANCELLED",))},
                                  frozenset({"status"}))


def check_line_arithmetic(lines: list[dict[str, Any]], path: str = "order_lines") -> None:
    """``total_amount`` must equal ``quantity * unit_price - total_discount_amount``.

    Raises:
        OmError: 400 BAD_VALUE naming ``order_lines[i].total_amount``.
    """
    for i, line in enumerate(lines):
        expected = line["quantity"] * line["unit_price"] - line.get("total_discount_amount", 0)
        if line["total_amount"] != expected:
            raise bad_value(f"{path}[{i}].total_amount")


def check_line_tax(lines: list[dict[str, Any]], path: str = "order_lines") -> None:
    """Klarna Payments: ``total_tax_amount`` within ±1 of the tax included in ``total_amount``.

    Only checked when both ``tax_rate`` and ``total_tax_amount`` are given.

    Raises:
        OmError: 400 BAD_VALUE naming ``order_lines[i].total_tax_amount``.
    """
    for i, line in enumerate(lines):
        if "tax_rate" not in line or "total_tax_amount" not in line:
            continue
        total, rate = line["total_amount"], line["tax_rate"]
        expected = total - total * 10000 / (10000 + rate)
        if abs(line["total_tax_amount"] - expected) > 1:
            raise bad_value(f"{path}[{i}].total_tax_amount")


def check_lines_sum(lines: list[dict[str, Any]] | None, amount: int, amount_field: str) -> None:
    """When lines are given, their ``total_amount`` must add up to the operation amount.

    Raises:
        OmError: 400 BAD_VALUE naming ``order_lines`` (the sum) or the line's total.
    """
    if lines is None:
        return
    check_line_arithmetic(lines)
    if lines and sum(line["total_amount"] for line in lines) != amount:
        raise OmError(400, "BAD_VALUE",
                      f"Bad value: order_lines (the sum of total_amount must equal {amount_field})")
