"""Klarna's Order Management REST API, as the gateway speaks it: ``client`` (treq, with
idempotency keys, deadlines and retries) and ``ratelimit`` (per-merchant request slots and
``Retry-After``, in this process). The sandbox imports none of it."""
