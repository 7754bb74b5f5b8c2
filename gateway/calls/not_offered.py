"""Legacy calls that exist in some official SDK but that the gateway does not offer.

Each is data: where its eid and digest are (so an unknown eid is 9113 and a wrong digest
9114 whatever the method: docs/legacy-protocol.md#order-of-checks), the digest rule where
the SDKs' is known, and why Order Management cannot serve it (the 9103 message integrators
see).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.calls.spec import NotOffered
from gateway.errors import FaultCode
from gateway.wire.digest import DigestParts, artno_pairs, param, simple


def _concat(*positions: int, artnos_at: int | None = None) -> Any:
    """A plain concatenation (never filtered), optionally followed by artno:qty pairs."""
    def parts(params: Sequence[Any]) -> DigestParts:
        values = [param(params, i) for i in positions]
        if artnos_at is not None:
            values += artno_pairs(param(params, artnos_at))
        return DigestParts(values, filtered=False)
    return parts


def _colon(*positions: int) -> Any:
    def parts(params: Sequence[Any]) -> DigestParts:
        return simple(params, *positions)
    return parts


def _titles(goods_at: int) -> Any:
    """add_invoice: every goods title joined with ':' (no eid)."""
    def parts(params: Sequence[Any]) -> DigestParts:
        goods = param(params, goods_at)
        titles = [((row.get("goods") or {}).get("title") if isinstance(row, dict)
                   and isinstance(row.get("goods"), dict) else None)
                  for row in (goods if isinstance(goods, list) else [])]
        return DigestParts(titles, filtered=False)
    return parts


_NO_ORDER = "Order Management has no counterpart"
_CUSTOMER = "it needs the customer present (orders are created through Klarna Payments)"

NOT_OFFERED: tuple[NotOffered, ...] = (
    NotOffered("activate_part", 2, f"passive invoices do not exist in REST: {_NO_ORDER}",
               5, _concat(2, 3, artnos_at=4), invno_at=3,
               known_invoice_fault=FaultCode.INVOICE_NOT_PASSIVE_OR_FROZEN),
    NotOffered("activate_invoice", 2, f"passive invoices do not exist in REST: {_NO_ORDER}",
               4, _colon(2, 3), invno_at=3,
               known_invoice_fault=FaultCode.INVOICE_NOT_PASSIVE_OR_FROZEN),
    NotOffered("update_goods_qty", 2,
               f"an activated invoice cannot be changed in REST: {_NO_ORDER}", 3,
               _colon(4, 5, 6), invno_at=4, known_invoice_fault=FaultCode.INVOICE_NOT_PASSIVE),
    NotOffered("update_charge_amount", 2,
               f"an activated invoice cannot be changed in REST: {_NO_ORDER}", 3,
               _colon(4, 5, 6), invno_at=4, known_invoice_fault=FaultCode.INVOICE_NOT_PASSIVE),
    NotOffered("delete_invoice", 2, f"passive invoices do not exist in REST: {_NO_ORDER}",
               4, _colon(2, 3), invno_at=3, known_invoice_fault=FaultCode.INVOICE_NOT_PASSIVE),
    NotOffered("extend_invoice_due_date", 2, "not offered by this gateway", 4, _colon(2, 3)),
    NotOffered("has_account", 2, f"a credit check: {_CUSTOMER}", 4, _colon(2, 3)),
    NotOffered("get_pclasses", 2, f"part-payment classes: {_NO_ORDER}", 4,
               _concat(2, 3)),
    NotOffered("update_notes", 2, f"invoice notes: {_NO_ORDER}", 3, _colon(4, 5)),
    NotOffered("get_addresses", 3, f"an address lookup: {_CUSTOMER}", 4, _colon(3, 2)),
    NotOffered("reserve_ocr_nums", 3, f"OCR numbers: {_NO_ORDER}", 4, _colon(3, 2)),
    NotOffered("get_customer_no", 3, f"customer numbers: {_NO_ORDER}", 4, _colon(3, 2)),
    NotOffered("remove_customer_no", 3, f"customer numbers: {_NO_ORDER}", 4, _colon(3, 2)),
    NotOffered("set_customer_no", 4, f"customer numbers: {_NO_ORDER}", 5, _colon(4, 2, 3)),
    NotOffered("reserve_ocr_nums_email", 4, f"OCR numbers: {_NO_ORDER}", 5, _colon(4, 2)),
    NotOffered("split_reservation", 7, f"REST orders cannot be split: {_NO_ORDER}", 8,
               _colon(7, 2, 3)),
    NotOffered("check_ilt", 8, f"a credit check: {_CUSTOMER}"),
    NotOffered("add_invoice", 15, f"it creates an invoice: {_CUSTOMER}", 16, _titles(19)),
    NotOffered("reserve_amount", 16, f"it creates a reservation: {_CUSTOMER}", 17,
               _concat(16, 2, 4)),
)


def doc_rows() -> list[str]:
    """The rows of the table "Calls the gateway does not offer" in ``docs/translation.md``
    (generated from them)."""
    rows = []
    for entry in NOT_OFFERED:
        answer = "9103" if entry.known_invoice_fault is None else \
            f"{int(entry.known_invoice_fault)} on a known invoice, 8101 otherwise"
        rows.append(f"| `{entry.name}` | {answer} | {entry.reason} |")
    return rows
