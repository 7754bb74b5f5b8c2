"""Typed values shared by the legacy calls: goods rows, artnos, addresses, flags.

Each call's own decoded dataclass lives in its module under ``gateway.calls``; the nested
structures several calls share live here. Plain frozen dataclasses: no XML, no Twisted, no
database. Money: ``price`` is integer minor units; ``vat`` and ``discount`` are
percentages as exact :class:`~decimal.Decimal` (PHP sends ``<double>`` expansions such as
``0.1000000000000000055511…``; they must never pass through a binary float).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from enum import IntFlag
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints


class GoodsFlag(IntFlag):
    """Goods ``flags`` bits (docs/legacy-protocol.md#constants)."""

    NO_FLAG = 0
    PRINT_1000 = 1
    PRINT_100 = 2
    PRINT_10 = 4
    IS_SHIPMENT = 8
    IS_HANDLING = 16
    INC_VAT = 32


class ReservationFlag(IntFlag):
    """``activateInfo.flags`` bits."""

    NONE = 0
    TEST_MODE = 2
    SEND_BY_MAIL = 4
    SEND_BY_EMAIL = 8
    PRESERVE_RESERVATION = 16
    SENSITIVE_ORDER = 32


@dataclass(frozen=True)
class Goods:
    """One goods-list row: ``{goods: {artno, title, price, vat, discount, flags}, qty}``."""

    artno: str
    title: str
    price: int
    vat: Decimal
    discount: Decimal
    flags: int
    qty: int


@dataclass(frozen=True)
class ArtNo:
    """One ``{artno, qty}`` row of an artnos list."""

    artno: str
    qty: int


@dataclass(frozen=True)
class Address:
    """The 13-key legacy address. ``country`` is Klarna's integer code, ``None`` when unset."""

    email: str = ""
    telno: str = ""
    cellno: str = ""
    fname: str = ""
    lname: str = ""
    company: str = ""
    careof: str = ""
    street: str = ""
    house_number: str = ""
    house_extension: str = ""
    zip: str = ""
    city: str = ""
    country: int | None = None

    def is_empty(self) -> bool:
        return not any(
            (self.email, self.telno, self.cellno, self.fname, self.lname, self.company,
             self.careof, self.street, self.house_number, self.house_extension, self.zip,
             self.city)
        ) and self.country is None


@dataclass(frozen=True)
class ShipmentInfo:
    delay_adjust: int | None = None
    shipping_company: str = ""
    shipping_product: str = ""
    tracking_no: str = ""
    return_tracking_no: str = ""


@dataclass(frozen=True)
class LegacyCall:
    """Fields every decoded call has. ``client_version`` is p1 as received; ``method`` is
    the legacy method name (a class attribute of each call type)."""

    eid: int
    client_version: str

    method: ClassVar[str] = ""


def from_json(cls: type[Any], data: Any) -> Any:
    """Rebuild a decoded call (or a nested value) from its journal JSON.

    Why generic: every call module declares its own dataclass; recovery rebuilds whichever
    call a journal entry holds from the field types alone (tuples of nested dataclasses,
    optional values, exact ``Decimal`` percentages stored as strings).
    """
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            kwargs[f.name] = _value(hints[f.name], data[f.name])
    return cls(**kwargs)


def _value(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (UnionType, Union):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _value(inner[0], value)
    if origin is tuple:
        item = get_args(tp)[0]
        return tuple(_value(item, v) for v in value)
    if is_dataclass(tp):
        return from_json(tp, value)
    if tp is Decimal:
        return Decimal(str(value))
    return value
