"""Operator tools over the store and Klarna: explain, reconcile, imports, journal search."""

#: Orders read from Klarna at the same time by ``reconcile`` and ``reservations import``
#: (``--concurrency``); Klarna's rate limits are per merchant.
DEFAULT_CONCURRENCY = 8
