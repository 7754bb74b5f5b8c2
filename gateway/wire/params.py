"""Typed decoding of legacy parameters: the looseness the official SDKs produce, nothing more.

``parse_method_call`` gives loosely typed Python values; the call modules in ``gateway.calls``
turn them into their frozen dataclasses with these helpers, tolerating exactly what the SDKs
send (docs/legacy-protocol.md#decoding) and refusing everything else with a fault that names
the offending parameter:

* wrong arity, or a value of an XML-RPC type no SDK sends there → ``InvalidParamsError``
  (-32602), e.g. ``activateInfo.artnos[1].qty must be an integer``;
* an artnos entry that has the right types but unusable content (missing/empty ``artno``,
  negative ``qty``) → ``BadArtnoListError`` (9107);
* a goods row with unusable content (no ``goods``/``price``/``vat``/``qty``, neither
  ``artno`` nor ``title``, negative ``qty``) → ``GoodsListError`` (3210).

Looseness accepted: identifiers (rno, invno, credno, ocr, cust_no, orderids, artno, title)
as ``<string>`` or ``<int>``; ``eid`` as ``<int>`` or a numeric ``<string>``; integers as
numeric strings too; ``price`` as an integral ``<double>``; ``vat``/``discount`` as
``<int>``, ``<double>`` or numeric string (kept exact as ``Decimal``); an empty ``<array>``
or ``''`` wherever a struct or list is expected; address ``country`` as int, numeric string
or ``''`` (→ ``None``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from gateway.errors import BadArtnoListError, GoodsListError, InvalidParamsError
from gateway.wire.values import Address, ArtNo, Goods, ShipmentInfo

PROTOCOL_VERSION: Final = "4.1"

# Length caps protect the store and the REST requests; no SDK value comes near them.
MAX_ID_LENGTH: Final = 255
MAX_TEXT_LENGTH: Final = 1024
_NUMERIC_RE: Final = re.compile(r"[+-]?[0-9]{1,30}")
_UNSIGNED_RE: Final = re.compile(r"[0-9]{1,18}")
_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")


# ---------------------------------------------------------------------------------------------
# Envelope
# ---------------------------------------------------------------------------------------------


def check_envelope(params: Sequence[Any]) -> None:
    """p0 must be ``"4.1"`` and p1 the client version string (every legacy call)."""
    if len(params) < 1 or params[0] != PROTOCOL_VERSION:
        raise InvalidParamsError(f"proto (parameter 0) must be the string {PROTOCOL_VERSION!r}")
    if len(params) < 2 or not isinstance(params[1], str):
        raise InvalidParamsError("client_version (parameter 1) must be a string")


def eid_at(params: Sequence[Any], position: int) -> int:
    """The envelope checked, then the ``eid`` at ``position`` (``<int>`` or numeric string)."""
    check_envelope(params)
    if len(params) <= position:
        raise InvalidParamsError(f"eid (parameter {position}) is missing")
    return eid(params[position])


def eid(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidParamsError("eid must be an integer")
    if isinstance(value, int):
        if value < 0:
            raise InvalidParamsError("eid must not be negative")
        return value
    if isinstance(value, str) and _UNSIGNED_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise InvalidParamsError("eid must be an integer")


def arity(method: str, params: Sequence[Any], allowed: Sequence[int]) -> None:
    if len(params) not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise InvalidParamsError(f"{method} takes {expected} parameters, got {len(params)}")


def digest(value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidParamsError("digest must be a string")


# ---------------------------------------------------------------------------------------------
# Nested structures
# ---------------------------------------------------------------------------------------------


def artnos(value: Any, name: str) -> tuple[ArtNo, ...]:
    """An artnos list; ``''`` (PHP null) and ``[]`` both mean "none"."""
    rows = array(value, name)
    result: list[ArtNo] = []
    for index, entry in enumerate(rows):
        where = f"{name}[{index}]"
        row = struct(entry, where, allow_empty_array=False)
        if "artno" not in row:
            raise BadArtnoListError(f"{where}.artno is missing")
        if "qty" not in row:
            raise BadArtnoListError(f"{where}.qty is missing")
        artno = text(row["artno"], f"{where}.artno")
        if not artno:
            raise BadArtnoListError(f"{where}.artno must not be empty")
        qty = integer(row["qty"], f"{where}.qty")
        if qty < 0:
            raise BadArtnoListError(f"{where}.qty must not be negative")
        result.append(ArtNo(artno=artno, qty=qty))
    return tuple(result)


def goods_list(value: Any, name: str) -> tuple[Goods, ...]:
    """A goods list; ``''`` (PHP null) and ``[]`` both mean "none"."""
    rows = array(value, name)
    return tuple(goods(entry, f"{name}[{index}]") for index, entry in enumerate(rows))


def goods(entry: Any, where: str) -> Goods:
    row = struct(entry, where, allow_empty_array=False)
    if "goods" not in row:
        raise GoodsListError(f"{where}.goods is missing")
    if "qty" not in row:
        raise GoodsListError(f"{where}.qty is missing")
    item = struct(row["goods"], f"{where}.goods", allow_empty_array=False)
    for key in ("price", "vat"):
        if key not in item:
            raise GoodsListError(f"{where}.goods.{key} is missing")
    artno = text(item.get("artno", ""), f"{where}.goods.artno")
    title = text(item.get("title", ""), f"{where}.goods.title")
    if not artno and not title:
        raise GoodsListError(f"{where}.goods needs an artno or a title")
    qty = integer(row["qty"], f"{where}.qty")
    if qty < 0:
        raise GoodsListError(f"{where}.qty must not be negative")
    return Goods(
        artno=artno,
        title=title,
        price=integer(item["price"], f"{where}.goods.price", allow_integral_decimal=True),
        vat=decimal(item["vat"], f"{where}.goods.vat"),
        discount=decimal(item.get("discount", 0), f"{where}.goods.discount"),
        flags=flags(item.get("flags", 0), f"{where}.goods.flags"),
        qty=qty,
    )


_ADDRESS_TEXT_FIELDS: Final = (
    "email", "telno", "cellno", "fname", "lname", "company", "careof", "street",
    "house_number", "house_extension", "zip", "city",
)


def address(value: Any, name: str) -> Address | None:
    """An address struct; ``[]``/``''`` (not set) → ``None``."""
    if is_unset(value):
        return None
    data = struct(value, name, allow_empty_array=False)
    fields = {key: text(data.get(key, ""), f"{name}.{key}") for key in _ADDRESS_TEXT_FIELDS}
    country = data.get("country", "")
    return Address(
        **fields,
        country=None if country in ("", None) else integer(country, f"{name}.country"),
    )


def shipment_info(data: dict[str, Any], name: str) -> ShipmentInfo:
    delay = data.get("delay_adjust")
    return ShipmentInfo(
        delay_adjust=None if delay in (None, "") else integer(delay, f"{name}.delay_adjust"),
        shipping_company=text(data.get("shipping_company", ""), f"{name}.shipping_company"),
        shipping_product=text(data.get("shipping_product", ""), f"{name}.shipping_product"),
        tracking_no=text(data.get("tracking_no", ""), f"{name}.tracking_no"),
        return_tracking_no=text(
            data.get("return_tracking_no", ""), f"{name}.return_tracking_no"),
    )


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------


def is_unset(value: Any) -> bool:
    """PHP's null (``''``), an empty PHP array (``<array>``) or a missing value."""
    return value is None or value == "" or (isinstance(value, list) and not value)


def struct(value: Any, name: str, *, allow_empty_array: bool = True) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if allow_empty_array and is_unset(value):
        return {}
    raise InvalidParamsError(f"{name} must be a struct")


def array(value: Any, name: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if is_unset(value):
        return []
    raise InvalidParamsError(f"{name} must be an array")


def identifier(value: Any, name: str) -> str:
    """A required id (rno, invno): ``<string>`` or ``<int>``, non-empty."""
    value = text(value, name)
    if not value:
        raise InvalidParamsError(f"{name} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidParamsError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return str(value)


def text(value: Any, name: str) -> str:
    """A string-ish value: ``<string>`` as is, ``<int>`` in decimal (PHP does not cast)."""
    if isinstance(value, bool):
        raise InvalidParamsError(f"{name} must be a string")
    if isinstance(value, int):
        result = str(value)
    elif isinstance(value, str):
        result = value
    else:
        raise InvalidParamsError(f"{name} must be a string")
    if len(result) > MAX_TEXT_LENGTH:
        raise InvalidParamsError(f"{name} is longer than {MAX_TEXT_LENGTH} characters")
    return result


def integer(value: Any, name: str, *, allow_integral_decimal: bool = False) -> int:
    """``<int>`` or a numeric ``<string>``; an integral ``<double>`` only where allowed."""
    if isinstance(value, bool):
        raise InvalidParamsError(f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _NUMERIC_RE.fullmatch(value.strip()):
        return int(value.strip())
    if (allow_integral_decimal and isinstance(value, Decimal) and value.is_finite()
            and value == value.to_integral_value()):
        return int(value)
    raise InvalidParamsError(f"{name} must be an integer")


def flags(value: Any, name: str) -> int:
    result = integer(value, name)
    if result < 0:
        raise InvalidParamsError(f"{name} must not be negative")
    return result


def decimal(value: Any, name: str) -> Decimal:
    """A percentage, exact: ``<int>``, ``<double>`` (already Decimal) or numeric string."""
    if isinstance(value, bool):
        raise InvalidParamsError(f"{name} must be a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidParamsError(f"{name} must be a finite number")
        return value
    if isinstance(value, str) and _DECIMAL_RE.fullmatch(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the regex rules this out
            pass
    raise InvalidParamsError(f"{name} must be a number")
