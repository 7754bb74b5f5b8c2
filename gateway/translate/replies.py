"""Legacy replies, in exactly the shapes the SDKs parse (legacy-xmlrpc.md §8 point 10)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.translate.expiry import legacy_expiry


def reply_for(method: str, *, invno: str | None, order: Mapping[str, Any] | None) -> Any:
    """``activate`` → ``["ok", invno]``; ``cancel_reservation``/``update`` → ``"ok"``;
    credits and send-outs → the invno string; ``extend_expiry_date`` → ``YYYYMMDDTHHMMSS``
    (Europe/Stockholm) from the order's ``expires_at``."""
    if method == "activate":
        assert invno is not None
        return ["ok", str(invno)]
    if method in ("cancel_reservation", "update"):
        return "ok"
    if method in ("credit_part", "credit_invoice", "email_invoice", "send_invoice"):
        assert invno is not None
        return str(invno)
    if method == "extend_expiry_date":
        assert order is not None
        return legacy_expiry(str(order["expires_at"]))
    raise ValueError(f"no reply shape for {method}")
