"""What the commands run, over the store and Klarna: ``explain`` (the dry run),
``reconcile``, ``imports`` (``reservations import``), ``journal`` (search), ``expiring``
(authorizations about to lapse), ``inputs`` (the input contract and exit statuses) and
``docs`` (the generated documentation)."""

#: Orders read from Klarna at the same time by ``reconcile`` and ``reservations import``
#: (``--concurrency``); Klarna's rate limits are per merchant.
DEFAULT_CONCURRENCY = 8
