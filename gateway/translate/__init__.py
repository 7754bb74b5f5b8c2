"""Pure translation helpers shared by the call modules (``gateway.calls``).

Money arithmetic, exact line splitting, addresses, shipping info, expiry dates, state rules
and the plan types. No I/O, no Twisted, no clock, no store: a test enforces it.
"""
