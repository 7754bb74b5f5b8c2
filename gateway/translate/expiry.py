"""REST ``expires_at`` → the legacy ``extend_expiry_date`` reply ``YYYYMMDDTHHMMSS``.

Why: legacy clients parse the reply with ``%Y%m%dT%H%M%S`` (PY, naive) or ``Ymd\\THis`` in the
Europe/Stockholm zone (PHP 4/5), so it must be Stockholm wall time with no separators and no
zone (docs/legacy-protocol.md#extend_expiry_date). Klarna's REST timestamps are ISO-8601
instants (``Z`` or an offset, with or without fractional seconds). Pure: the instant is
passed in, no clock is read.
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
LEGACY_FORMAT = "%Y%m%dT%H%M%S"  # what the clients parse with


def parse_rest_timestamp(value: str) -> datetime:
    """Parse a REST ISO-8601 timestamp into an aware datetime.

    Accepts ``Z``/``z`` or ``±HH:MM`` offsets and any number of fractional digits (beyond
    microseconds they are truncated). A timestamp without a zone is taken as UTC, the zone
    Klarna's API uses. Anything else raises ``ValueError``.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}")
    text = value.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def legacy_expiry(expires_at: str) -> str:
    """``expires_at`` as Europe/Stockholm wall time, ``YYYYMMDDTHHMMSS``.

    Why truncate fractional seconds: the legacy format has whole seconds and ``expires_at`` is
    the last moment a capture is possible, so rounding up could promise a second that is
    already past. Across DST the zone database decides (CET +01:00 / CEST +02:00); the
    repeated hour in October is unambiguous because the input is an instant.
    """
    local = parse_rest_timestamp(expires_at).astimezone(STOCKHOLM)
    # Explicit formatting: strftime("%Y") does not zero-pad years below 1000 on glibc.
    return (f"{local.year:04d}{local.month:02d}{local.day:02d}"
            f"T{local.hour:02d}{local.minute:02d}{local.second:02d}")
