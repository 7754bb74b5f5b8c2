"""What the two activation calls share: ``activate`` and the older ``activate_reservation``
(the only one PHP SDKs 2.0–2.2 have).

Why one home: both capture a reservation with the same optional fields (``ocr``, ``flags``,
``orderid1``/``orderid2``, ``reference``/``reference_code``, the shipment info), the same
preconditions, the same capture extras (``orderid1`` → ``reference``, ``ocr`` →
``description``, shipment info → ``shipping_info``), the same flag notes and the same
``["ok", invno]`` reply; a fix to one must not miss the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import AmountError
from gateway.translate.plan import Result
from gateway.translate.shipping import shipment_info_to_rest
from gateway.translate.states import require_fraud_accepted, require_status
from gateway.wire.values import LegacyCall, ReservationFlag, ShipmentInfo


@dataclass(frozen=True)
class Activation(LegacyCall):
    """The fields both activation calls take (each call's dataclass adds its own)."""

    rno: str
    ocr: str = ""
    flags: int = 0
    orderid1: str = ""
    orderid2: str = ""
    reference: str = ""
    reference_code: str = ""
    shipment_info: ShipmentInfo = field(default_factory=ShipmentInfo)


def remaining_to_activate(order: Any, action: str) -> int:
    """The reservation's ``remaining_authorized_amount``, once the order may be captured
    (status, fraud review) and something is left (else 2102)."""
    require_status(order, {"AUTHORIZED", "PART_CAPTURED"}, action)
    require_fraud_accepted(order, action)
    remaining = int(order.get("remaining_authorized_amount", 0))
    if remaining <= 0:
        raise AmountError("nothing left to activate on this reservation")
    return remaining


def add_capture_extras(body: dict[str, Any], call: Activation, *,
                       shipment_field: str | None = None) -> None:
    """``orderid1`` → the capture's ``reference``, ``ocr`` → ``description``, the shipment
    info → ``shipping_info`` (``shipment_field`` names it in faults, when not the default)."""
    if call.orderid1:
        body["reference"] = call.orderid1
    if call.ocr:
        body["description"] = call.ocr
    shipping = (shipment_info_to_rest(call.shipment_info) if shipment_field is None
                else shipment_info_to_rest(call.shipment_info, field=shipment_field))
    if shipping:
        body["shipping_info"] = shipping


def flag_notes(flags: int) -> list[str]:
    """What the reservation flags mean in REST."""
    notes = []
    if flags & ReservationFlag.TEST_MODE:
        notes.append("TEST_MODE flag recorded; REST has no per-capture test mode")
    if flags & (ReservationFlag.SEND_BY_EMAIL | ReservationFlag.SEND_BY_MAIL):
        notes.append("SEND_BY_EMAIL/MAIL: no extra call, a capture notifies the customer")
    if flags & ReservationFlag.PRESERVE_RESERVATION:
        notes.append("PRESERVE_RESERVATION is the REST default: the rest stays authorized")
    return notes


def reply(call: Activation, result: Result) -> Any:
    """Exactly two elements: PY unpacks ``risk, invno``. ``"no_risk"`` is never produced."""
    assert result.invno is not None
    return ["ok", str(result.invno)]
