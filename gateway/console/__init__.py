"""The read-only web console on the admin listener (``/console/``).

Server-rendered HTML that works without JavaScript, for migration teams and merchants:
find a reservation by any number they hold, see what Klarna holds for it and every legacy
call with the REST requests it became, list pending calls, discrepancies and expiring
authorizations, and check a captured request's digest before switching an ERP over.
:mod:`.resource` routes, :mod:`.auth` signs in, :mod:`.views` renders (escaping through
:mod:`.html`), :mod:`.digest_check` is the self-test.
"""
from __future__ import annotations

from gateway.console.resource import AdminListener, ConsoleResource

__all__ = ["AdminListener", "ConsoleResource"]
