"""Typed values of the legacy calls the gateway serves.

These are what the XML-RPC edge decodes a ``methodCall`` into (``gateway.legacy.decode``) and
what the translators (``gateway.translate``) take. Plain frozen dataclasses: no XML, no
Twisted, no database. Money: ``price`` is integer minor units; ``vat`` and ``discount`` are
percentages as exact :class:`~decimal.Decimal` (PHP sends ``<double>`` expansions such as
``0.1000000000000000055511…``; they must never pass through a binary float).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntFlag


class GoodsFlag(IntFlag):
    """Goods ``flags`` bits (legacy-xmlrpc.md §5)."""

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
    """Fields every decoded call has. ``client_version`` is p1 as received."""

    eid: int
    client_version: str


@dataclass(frozen=True)
class Activate(LegacyCall):
    rno: str
    artnos: tuple[ArtNo, ...] = ()
    ocr: str = ""
    flags: int = 0
    orderid1: str = ""
    orderid2: str = ""
    reference: str = ""
    reference_code: str = ""
    cust_no: str = ""
    bclass: int | None = None
    shipment_info: ShipmentInfo = field(default_factory=ShipmentInfo)

    method = "activate"


@dataclass(frozen=True)
class CancelReservation(LegacyCall):
    rno: str

    method = "cancel_reservation"


@dataclass(frozen=True)
class Update(LegacyCall):
    rno: str
    goods: tuple[Goods, ...] = ()
    dlv_addr: Address | None = None
    bill_addr: Address | None = None
    orderid1: str = ""
    orderid2: str = ""

    method = "update"


@dataclass(frozen=True)
class CreditPart(LegacyCall):
    invno: str
    artnos: tuple[ArtNo, ...] = ()
    credno: str = ""
    goods: tuple[Goods, ...] = ()

    method = "credit_part"


@dataclass(frozen=True)
class CreditInvoice(LegacyCall):
    invno: str
    credno: str = ""

    method = "credit_invoice"


@dataclass(frozen=True)
class ExtendExpiryDate(LegacyCall):
    rno: str

    method = "extend_expiry_date"


@dataclass(frozen=True)
class EmailInvoice(LegacyCall):
    invno: str

    method = "email_invoice"


@dataclass(frozen=True)
class SendInvoice(LegacyCall):
    invno: str

    method = "send_invoice"


DecodedCall = (
    Activate | CancelReservation | Update | CreditPart | CreditInvoice | ExtendExpiryDate
    | EmailInvoice | SendInvoice
)
