"""Method table and typed decoding of the legacy calls the gateway serves.

``parse_method_call`` gives loosely typed Python values; this module turns them into the
frozen dataclasses of :mod:`gateway.legacy.calls`, tolerating exactly the looseness the
official SDKs produce (``legacy-xmlrpc.md`` §2.5, §3, §8) and refusing everything else with
a fault that names the offending parameter:

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
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from gateway.errors import (
    BadArtnoListError,
    GoodsListError,
    InvalidParamsError,
    MethodNotFoundError,
    NotAllowedError,
)
from gateway.legacy.calls import (
    Activate,
    Address,
    ArtNo,
    CancelReservation,
    CreditInvoice,
    CreditPart,
    DecodedCall,
    EmailInvoice,
    ExtendExpiryDate,
    Goods,
    SendInvoice,
    ShipmentInfo,
    Update,
)

__all__ = [
    "EID_POSITIONS",
    "KNOWN_UNSERVED_METHODS",
    "PROTOCOL_VERSION",
    "SERVED_METHODS",
    "check_method",
    "decode_call",
    "extract_eid",
]

PROTOCOL_VERSION: Final = "4.1"

#: The legacy calls this gateway answers.
SERVED_METHODS: Final = frozenset({
    "activate", "cancel_reservation", "update", "credit_part", "credit_invoice",
    "extend_expiry_date", "email_invoice", "send_invoice",
})

#: Position (from p0) of ``eid`` for every legacy call we know, served or not
#: (``legacy-xmlrpc.md`` §4), so that even a refused call is logged with its merchant.
EID_POSITIONS: Final[dict[str, int]] = {
    # served
    "activate": 2, "update": 2, "credit_part": 2, "credit_invoice": 2,
    "email_invoice": 2, "send_invoice": 2, "cancel_reservation": 3, "extend_expiry_date": 3,
    # known, not served
    "activate_part": 2, "activate_invoice": 2, "return_amount": 2, "check_order_status": 2,
    "update_orderno": 2, "update_goods_qty": 2, "update_charge_amount": 2,
    "invoice_amount": 2, "invoice_part_amount": 2, "invoice_address": 2,
    "delete_invoice": 2, "extend_invoice_due_date": 2, "has_account": 2, "get_pclasses": 2,
    "update_notes": 2, "get_addresses": 3, "reserve_ocr_nums": 3, "get_customer_no": 3,
    "remove_customer_no": 3, "change_reservation": 4, "set_customer_no": 4,
    "reserve_ocr_nums_email": 4, "split_reservation": 7, "check_ilt": 8,
    "add_invoice": 15, "reserve_amount": 16, "activate_reservation": 17,
}

#: Legacy v2 calls that exist in some SDK but that the gateway does not offer (→ 9103).
KNOWN_UNSERVED_METHODS: Final = frozenset(EID_POSITIONS) - SERVED_METHODS

# Length caps protect the store and the REST requests; no SDK value comes near them.
_MAX_ID_LENGTH: Final = 255
_MAX_TEXT_LENGTH: Final = 1024
_NUMERIC_RE: Final = re.compile(r"[+-]?[0-9]{1,30}")
_UNSIGNED_RE: Final = re.compile(r"[0-9]{1,18}")
_DECIMAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")

# ---------------------------------------------------------------------------------------------
# Method table and envelope
# ---------------------------------------------------------------------------------------------


def check_method(method: str) -> None:
    """Refuse a method the gateway does not serve.

    Raises:
        MethodNotFoundError: unknown to the legacy API (-32601).
        NotAllowedError: a real legacy call the gateway does not offer (9103).
    """
    if method in SERVED_METHODS:
        return
    if method in KNOWN_UNSERVED_METHODS:
        raise NotAllowedError(f"{method} is not offered by this gateway")
    raise MethodNotFoundError(f"unknown method {method[:64]}")


def extract_eid(method: str, params: Sequence[Any]) -> int:
    """Check the protocol envelope (p0 ``"4.1"``, p1 a string) and return the ``eid``.

    Works for every method in :data:`EID_POSITIONS`; call :func:`check_method` first for
    the served/unserved decision.

    Raises:
        MethodNotFoundError: no eid position is known for ``method``.
        InvalidParamsError: bad protocol/client version, or ``eid`` missing or not numeric.
    """
    position = EID_POSITIONS.get(method)
    if position is None:
        raise MethodNotFoundError(f"unknown method {method[:64]}")
    _check_envelope(params)
    if len(params) <= position:
        raise InvalidParamsError(f"eid (parameter {position}) is missing")
    return _eid(params[position])


def _check_envelope(params: Sequence[Any]) -> None:
    if len(params) < 1 or params[0] != PROTOCOL_VERSION:
        raise InvalidParamsError(f"proto (parameter 0) must be the string {PROTOCOL_VERSION!r}")
    if len(params) < 2 or not isinstance(params[1], str):
        raise InvalidParamsError("client_version (parameter 1) must be a string")


def _eid(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidParamsError("eid must be an integer")
    if isinstance(value, int):
        if value < 0:
            raise InvalidParamsError("eid must not be negative")
        return value
    if isinstance(value, str) and _UNSIGNED_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise InvalidParamsError("eid must be an integer")


# ---------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------


def decode_call(method: str, params: Sequence[Any]) -> DecodedCall:
    """Decode a served call's positional parameters into its dataclass.

    Args:
        method: a name from :data:`SERVED_METHODS`.
        params: the full positional list from p0, as returned by ``parse_method_call``.

    Raises:
        MethodNotFoundError / NotAllowedError: see :func:`check_method`.
        InvalidParamsError: wrong arity or a type no SDK produces (message names it).
        BadArtnoListError: malformed artnos content.
        GoodsListError: malformed goods list content.
    """
    check_method(method)
    eid = extract_eid(method, params)
    client_version: str = params[1]
    decoder = _DECODERS[method]
    return decoder(eid, client_version, params)


def _arity(method: str, params: Sequence[Any], *allowed: int) -> None:
    if len(params) not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise InvalidParamsError(
            f"{method} takes {expected} parameters, got {len(params)}"
        )


def _decode_activate(eid: int, version: str, params: Sequence[Any]) -> Activate:
    _arity("activate", params, 6)
    _digest(params[3])
    rno = _identifier(params[4], "rno")
    info = _struct(params[5], "activateInfo")
    name = "activateInfo"
    shipment = _struct(info.get("shipment_info", {}), f"{name}.shipment_info")
    bclass = info.get("bclass")
    return Activate(
        eid=eid,
        client_version=version,
        rno=rno,
        artnos=_artnos(info.get("artnos", []), f"{name}.artnos"),
        ocr=_text(info.get("ocr", ""), f"{name}.ocr"),
        flags=_flags(info.get("flags", 0), f"{name}.flags"),
        orderid1=_text(info.get("orderid1", ""), f"{name}.orderid1"),
        orderid2=_text(info.get("orderid2", ""), f"{name}.orderid2"),
        reference=_text(info.get("reference", ""), f"{name}.reference"),
        reference_code=_text(info.get("reference_code", ""), f"{name}.reference_code"),
        cust_no=_text(info.get("cust_no", ""), f"{name}.cust_no"),
        bclass=None if bclass in (None, "") else _integer(bclass, f"{name}.bclass"),
        shipment_info=_shipment_info(shipment, f"{name}.shipment_info"),
    )


def _decode_cancel_reservation(eid: int, version: str, params: Sequence[Any]
                               ) -> CancelReservation:
    _arity("cancel_reservation", params, 5)
    _digest(params[4])
    return CancelReservation(eid=eid, client_version=version,
                             rno=_identifier(params[2], "rno"))


def _decode_update(eid: int, version: str, params: Sequence[Any]) -> Update:
    _arity("update", params, 6)
    _digest(params[3])
    rno = _identifier(params[4], "rno")
    name = "updateInfo"
    info = _struct(params[5], name)
    return Update(
        eid=eid,
        client_version=version,
        rno=rno,
        goods=_goods_list(info.get("goods_list", []), f"{name}.goods_list"),
        dlv_addr=_address(info.get("dlv_addr", []), f"{name}.dlv_addr"),
        bill_addr=_address(info.get("bill_addr", []), f"{name}.bill_addr"),
        orderid1=_text(info.get("orderid1", ""), f"{name}.orderid1"),
        orderid2=_text(info.get("orderid2", ""), f"{name}.orderid2"),
    )


def _decode_credit_part(eid: int, version: str, params: Sequence[Any]) -> CreditPart:
    _arity("credit_part", params, 7, 9)
    _digest(params[6])
    goods: tuple[Goods, ...] = ()
    if len(params) == 9:
        marker = params[7]
        if isinstance(marker, bool) or marker not in (0, "0"):
            raise InvalidParamsError("parameter 7 of credit_part must be 0")
        goods = _goods_list(params[8], "goods_list")
    return CreditPart(
        eid=eid,
        client_version=version,
        invno=_identifier(params[3], "invno"),
        artnos=_artnos(params[4], "artnos"),
        credno=_text(params[5], "credno"),
        goods=goods,
    )


def _decode_credit_invoice(eid: int, version: str, params: Sequence[Any]) -> CreditInvoice:
    _arity("credit_invoice", params, 6)
    _digest(params[5])
    return CreditInvoice(eid=eid, client_version=version,
                         invno=_identifier(params[3], "invno"),
                         credno=_text(params[4], "credno"))


def _decode_extend_expiry_date(eid: int, version: str, params: Sequence[Any]
                               ) -> ExtendExpiryDate:
    _arity("extend_expiry_date", params, 5)
    _digest(params[4])
    return ExtendExpiryDate(eid=eid, client_version=version,
                            rno=_identifier(params[2], "rno"))


def _decode_email_invoice(eid: int, version: str, params: Sequence[Any]) -> EmailInvoice:
    _arity("email_invoice", params, 5)
    _digest(params[4])
    return EmailInvoice(eid=eid, client_version=version,
                        invno=_identifier(params[3], "invno"))


def _decode_send_invoice(eid: int, version: str, params: Sequence[Any]) -> SendInvoice:
    _arity("send_invoice", params, 5)
    _digest(params[4])
    return SendInvoice(eid=eid, client_version=version,
                       invno=_identifier(params[3], "invno"))


_DECODERS: Final[dict[str, Callable[[int, str, Sequence[Any]], DecodedCall]]] = {
    "activate": _decode_activate,
    "cancel_reservation": _decode_cancel_reservation,
    "update": _decode_update,
    "credit_part": _decode_credit_part,
    "credit_invoice": _decode_credit_invoice,
    "extend_expiry_date": _decode_extend_expiry_date,
    "email_invoice": _decode_email_invoice,
    "send_invoice": _decode_send_invoice,
}


# ---------------------------------------------------------------------------------------------
# Nested structures
# ---------------------------------------------------------------------------------------------


def _artnos(value: Any, name: str) -> tuple[ArtNo, ...]:
    """An artnos list; ``''`` (PHP null) and ``[]`` both mean "none"."""
    rows = _list(value, name)
    result: list[ArtNo] = []
    for index, entry in enumerate(rows):
        where = f"{name}[{index}]"
        row = _struct(entry, where, allow_empty_array=False)
        if "artno" not in row:
            raise BadArtnoListError(f"{where}.artno is missing")
        if "qty" not in row:
            raise BadArtnoListError(f"{where}.qty is missing")
        artno = _text(row["artno"], f"{where}.artno")
        if not artno:
            raise BadArtnoListError(f"{where}.artno must not be empty")
        qty = _integer(row["qty"], f"{where}.qty")
        if qty < 0:
            raise BadArtnoListError(f"{where}.qty must not be negative")
        result.append(ArtNo(artno=artno, qty=qty))
    return tuple(result)


def _goods_list(value: Any, name: str) -> tuple[Goods, ...]:
    """A goods list; ``''`` (PHP null) and ``[]`` both mean "none"."""
    rows = _list(value, name)
    return tuple(_goods(entry, f"{name}[{index}]") for index, entry in enumerate(rows))


def _goods(entry: Any, where: str) -> Goods:
    row = _struct(entry, where, allow_empty_array=False)
    if "goods" not in row:
        raise GoodsListError(f"{where}.goods is missing")
    if "qty" not in row:
        raise GoodsListError(f"{where}.qty is missing")
    goods = _struct(row["goods"], f"{where}.goods", allow_empty_array=False)
    for key in ("price", "vat"):
        if key not in goods:
            raise GoodsListError(f"{where}.goods.{key} is missing")
    artno = _text(goods.get("artno", ""), f"{where}.goods.artno")
    title = _text(goods.get("title", ""), f"{where}.goods.title")
    if not artno and not title:
        raise GoodsListError(f"{where}.goods needs an artno or a title")
    qty = _integer(row["qty"], f"{where}.qty")
    if qty < 0:
        raise GoodsListError(f"{where}.qty must not be negative")
    flags = _flags(goods.get("flags", 0), f"{where}.goods.flags")
    return Goods(
        artno=artno,
        title=title,
        price=_integer(goods["price"], f"{where}.goods.price", allow_integral_decimal=True),
        vat=_decimal(goods["vat"], f"{where}.goods.vat"),
        discount=_decimal(goods.get("discount", 0), f"{where}.goods.discount"),
        flags=flags,
        qty=qty,
    )


_ADDRESS_TEXT_FIELDS: Final = (
    "email", "telno", "cellno", "fname", "lname", "company", "careof", "street",
    "house_number", "house_extension", "zip", "city",
)


def _address(value: Any, name: str) -> Address | None:
    """An address struct; ``[]``/``''`` (not set) → ``None``."""
    if _is_unset(value):
        return None
    data = _struct(value, name, allow_empty_array=False)
    fields = {key: _text(data.get(key, ""), f"{name}.{key}") for key in _ADDRESS_TEXT_FIELDS}
    country = data.get("country", "")
    return Address(
        **fields,
        country=None if country in ("", None) else _integer(country, f"{name}.country"),
    )


def _shipment_info(data: dict[str, Any], name: str) -> ShipmentInfo:
    delay = data.get("delay_adjust")
    return ShipmentInfo(
        delay_adjust=None if delay in (None, "") else _integer(delay, f"{name}.delay_adjust"),
        shipping_company=_text(data.get("shipping_company", ""), f"{name}.shipping_company"),
        shipping_product=_text(data.get("shipping_product", ""), f"{name}.shipping_product"),
        tracking_no=_text(data.get("tracking_no", ""), f"{name}.tracking_no"),
        return_tracking_no=_text(
            data.get("return_tracking_no", ""), f"{name}.return_tracking_no"),
    )


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------


def _is_unset(value: Any) -> bool:
    """PHP's null (``''``), an empty PHP array (``<array>``) or a missing value."""
    return value is None or value == "" or (isinstance(value, list) and not value)


def _struct(value: Any, name: str, *, allow_empty_array: bool = True) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if allow_empty_array and _is_unset(value):
        return {}
    raise InvalidParamsError(f"{name} must be a struct")


def _list(value: Any, name: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if _is_unset(value):
        return []
    raise InvalidParamsError(f"{name} must be an array")


def _digest(value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidParamsError("digest must be a string")


def _identifier(value: Any, name: str) -> str:
    """A required id (rno, invno): ``<string>`` or ``<int>``, non-empty."""
    text = _text(value, name)
    if not text:
        raise InvalidParamsError(f"{name} must not be empty")
    if len(text) > _MAX_ID_LENGTH:
        raise InvalidParamsError(f"{name} is longer than {_MAX_ID_LENGTH} characters")
    return text


def _text(value: Any, name: str) -> str:
    """A string-ish value: ``<string>`` as is, ``<int>`` in decimal (PHP does not cast)."""
    if isinstance(value, bool):
        raise InvalidParamsError(f"{name} must be a string")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidParamsError(f"{name} must be a string")
    if len(text) > _MAX_TEXT_LENGTH:
        raise InvalidParamsError(f"{name} is longer than {_MAX_TEXT_LENGTH} characters")
    return text


def _integer(value: Any, name: str, *, allow_integral_decimal: bool = False) -> int:
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


def _flags(value: Any, name: str) -> int:
    flags = _integer(value, name)
    if flags < 0:
        raise InvalidParamsError(f"{name} must not be negative")
    return flags


def _decimal(value: Any, name: str) -> Decimal:
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
