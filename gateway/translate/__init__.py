"""Pure translation helpers shared by the call modules (``gateway.calls``).

Money arithmetic (``money``), exact line splitting (``split``), addresses (``address``),
shipping info (``shipping``), expiry dates (``expiry``), order state rules (``states``),
mis-encoded text (``text``) and the plan types (``plan``). No I/O, no Twisted, no clock,
no store: a test enforces it.
"""
