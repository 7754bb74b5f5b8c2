"""Every identifier the sandbox invents, from one place, optionally reproducible.

Regression suites compare transcripts of whole runs. That only works if a fresh sandbox
started with the same ``seed`` hands out the same order ids, capture ids, correlation ids...
in the same order. Each *kind* of id has its own stream (a ``random.Random`` seeded with
``"<seed>:<kind>"``) so that, for example, an extra error response (one more correlation id)
or a refused capture does not shift the order ids that follow.

String seeds go through SHA-512 inside :class:`random.Random`, so the streams are the same
in every process and on every platform, whatever ``PYTHONHASHSEED`` says.

Without a seed the sandbox behaves as it always did: ``uuid4()`` and ``secrets``.
"""
from __future__ import annotations

import random
import secrets
import uuid
from enum import StrEnum

from gateway.config import SandboxSettings

#: Alphabet of Klarna's short customer-facing order references, e.g. ``K4MADNY``.
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
REFERENCE_LENGTH = 7


class IdKind(StrEnum):
    """One independent stream of identifiers per kind."""

    ORDER = "order"
    CAPTURE = "capture"
    REFUND = "refund"
    CORRELATION = "correlation"
    CUSTOMER_TOKEN = "customer_token"
    PAYMENT_METHOD_REFERENCE = "payment_method_reference"
    KLARNA_REFERENCE = "klarna_reference"


def check_seed(seed: int | None) -> int | None:
    """Validate a seed: ``None`` (not seeded) or a non-negative integer.

    Raises:
        ValueError: the seed is negative or not an integer.
    """
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    return seed


def configured_seed(settings: SandboxSettings) -> int | None:
    """The seed of ``[sandbox] seed`` or ``None`` when it is not set (stored as -1)."""
    return settings.seed if settings.seed >= 0 else None


class IdSource:
    """Hands out UUID-shaped ids (version 4, Klarna's format) and Klarna references.

    Args:
        seed: ``None`` for fresh random ids on every run; an integer for reproducible
            streams (see the module docstring).
    """

    def __init__(self, seed: int | None = None) -> None:
        self._seed = check_seed(seed)
        self._streams: dict[IdKind, random.Random] = {}

    @property
    def seed(self) -> int | None:
        return self._seed

    def restart(self) -> None:
        """Start every seeded stream again from its first id (``POST /sandbox/v1/reset``)."""
        self._streams.clear()

    def _stream(self, kind: IdKind) -> random.Random:
        stream = self._streams.get(kind)
        if stream is None:
            stream = self._streams[kind] = random.Random(f"{self._seed}:{kind.value}")
        return stream

    def new(self, kind: IdKind) -> str:
        """The next id of ``kind``, e.g. ``"3eaeb557-5e30-47f8-b840-b8d987f5945d"``."""
        if self._seed is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self._stream(kind).getrandbits(128), version=4))

    def reference(self) -> str:
        """A 7-character Klarna reference (uniqueness is the order book's business)."""
        if self._seed is None:
            return "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))
        stream = self._stream(IdKind.KLARNA_REFERENCE)
        return "".join(stream.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))

    # Named shorthands keep call sites readable.

    def order_id(self) -> str:
        return self.new(IdKind.ORDER)

    def capture_id(self) -> str:
        return self.new(IdKind.CAPTURE)

    def refund_id(self) -> str:
        return self.new(IdKind.REFUND)

    def correlation_id(self) -> str:
        return self.new(IdKind.CORRELATION)

    def customer_token_id(self) -> str:
        return self.new(IdKind.CUSTOMER_TOKEN)

    def payment_method_reference(self) -> str:
        return self.new(IdKind.PAYMENT_METHOD_REFERENCE)
