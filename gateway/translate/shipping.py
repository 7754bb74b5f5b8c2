"""Legacy ``activateInfo.shipment_info`` → the capture's REST ``shipping_info`` list.

Why: merchants' ERPs pass carrier and tracking numbers with ``activate``; Klarna shows them to
the customer only when they arrive in the capture's ``shipping_info``. Klarna answers over-long
values with a 422 ("The size of the shipping_info/shipping_company value must be between 0 and
100"), so the limits are checked here, naming the legacy field. Pure function.
"""
from __future__ import annotations

from typing import Any

from gateway.errors import InvalidParamsError
from gateway.wire.values import ShipmentInfo

#: REST ``shipping_method`` values (docs/order-management.md#field-limits), canonical spelling.
SHIPPING_METHODS: tuple[str, ...] = (
    "PickUpStore", "Home", "BoxReg", "BoxUnreg", "PickUpPoint", "Own", "Postal",
    "DHLPackstation", "Digital", "Undefined", "PickUpWarehouse", "ClickCollect",
    "PalletDelivery",
)
#: REST limit on shipping_company, tracking_number and return_tracking_number.
MAX_SHIPPING_TEXT = 100

_FIELD_PREFIX = "activateInfo.shipment_info"


def _method_key(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch not in " _-")


_METHODS_BY_KEY = {_method_key(name): name for name in SHIPPING_METHODS}


def shipping_method(product: str) -> str | None:
    """The REST ``shipping_method`` a legacy ``shipping_product`` names, else ``None``.

    Why lenient: legacy ``shipping_product`` is free text; when it names an enum value
    (ignoring case, spaces, ``_`` and ``-``: ``"pick up store"`` → ``"PickUpStore"``) it is
    sent in the canonical spelling; anything else (e.g. a carrier's product name) is not a
    method, and sending it would be refused, so it is dropped.
    """
    return _METHODS_BY_KEY.get(_method_key(product.strip())) if product else None


def shipment_info_to_rest(info: ShipmentInfo, *, field: str = _FIELD_PREFIX
                          ) -> list[dict[str, Any]]:
    """Capture ``shipping_info``: ``[]`` when nothing to send, else one object.

    Why this mapping (docs/order-management.md#field-limits): ``shipping_company`` as is,
    ``tracking_no`` → ``tracking_number``, ``return_tracking_no`` → ``return_tracking_number``,
    ``shipping_product`` → ``shipping_method`` only when it names one (:func:`shipping_method`).
    ``delay_adjust`` (normal/express) has no REST counterpart and is not sent. Values are
    stripped; empty ones are omitted. Over 100 characters → ``InvalidParamsError`` naming e.g.
    ``activateInfo.shipment_info.shipping_company`` (``field`` is the legacy parameter:
    ``shipinfo`` for ``activate_reservation``).
    """
    entry: dict[str, Any] = {}
    for legacy_key, rest_key in (
        ("shipping_company", "shipping_company"),
        ("tracking_no", "tracking_number"),
        ("return_tracking_no", "return_tracking_number"),
    ):
        raw = getattr(info, legacy_key)
        value = "" if raw is None else str(raw).strip()
        if not value:
            continue
        if len(value) > MAX_SHIPPING_TEXT:
            raise InvalidParamsError(
                f"{field}.{legacy_key}: {len(value)} characters, "
                f"at most {MAX_SHIPPING_TEXT} allowed"
            )
        entry[rest_key] = value
    method = shipping_method(str(info.shipping_product or ""))
    if method is not None:
        entry["shipping_method"] = method
    return [entry] if entry else []
