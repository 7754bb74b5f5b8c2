"""Tests of gateway.translate.expiry: REST expires_at → legacy YYYYMMDDTHHMMSS Stockholm time."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.translate.expiry import legacy_expiry, parse_rest_timestamp


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        ("2026-01-15T12:00:00Z", "20260115T130000"),          # winter, CET +01:00
        ("2026-07-01T12:00:00Z", "20260701T140000"),          # summer, CEST +02:00
        ("2026-03-29T00:59:59Z", "20260329T015959"),          # last second before spring-forward
        ("2026-03-29T01:00:00Z", "20260329T030000"),          # 02:00 local skipped
        ("2026-03-29T01:30:00Z", "20260329T033000"),
        ("2026-10-25T00:30:00Z", "20261025T023000"),          # first 02:30 (CEST)
        ("2026-10-25T01:30:00Z", "20261025T023000"),          # second 02:30 (CET)
        ("2026-10-25T02:00:00Z", "20261025T030000"),
        ("2026-12-31T23:30:00Z", "20270101T003000"),          # crosses the year
        ("2026-05-10T10:00:00.123Z", "20260510T120000"),      # fractional seconds
        ("2026-05-10T10:00:59.999999999Z", "20260510T120059"),  # truncated, never rounded up
        ("2026-05-10T12:00:00+02:00", "20260510T120000"),     # offset given
        ("2026-05-10T05:00:00-05:00", "20260510T120000"),
        ("2026-05-10T10:00:00", "20260510T120000"),           # no zone: UTC
        ("2026-05-10t10:00:00z", "20260510T120000"),          # lower-case separators
        (" 2026-05-10T10:00:00Z\n", "20260510T120000"),
    ],
)
def test_legacy_expiry_examples(expires_at: str, expected: str) -> None:
    """Winter/summer offsets, both DST edges, fractions, offsets: Stockholm wall time."""
    assert legacy_expiry(expires_at) == expected


@pytest.mark.parametrize("bad", ["", "tomorrow", "2026-13-01T00:00:00Z", "2026-05-10T25:00:00Z"])
def test_unparseable_timestamps_raise(bad: str) -> None:
    """Garbage from upstream is a ValueError, not a wrong date."""
    with pytest.raises(ValueError):
        legacy_expiry(bad)


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(timezone.utc)))
def test_round_trip_through_stockholm(instant: datetime) -> None:
    """The reply, read as Stockholm time the way PHP clients do, is the instant (to the second)."""
    text = instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    reply = legacy_expiry(text)
    assert re.fullmatch(r"\d{8}T\d{6}", reply)
    local = datetime.strptime(reply, "%Y%m%dT%H%M%S")
    # In the repeated October hour the wall time is ambiguous; one of the two folds matches.
    candidates = {local.replace(tzinfo=ZoneInfo("Europe/Stockholm"), fold=f).astimezone(timezone.utc)
                  for f in (0, 1)}
    assert instant.replace(microsecond=0) in candidates
    assert parse_rest_timestamp(text) - instant < timedelta(microseconds=1)
