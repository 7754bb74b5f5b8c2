"""Klarna Checkout v2 recurring orders (``POST /checkout/recurring/{token}/orders``) on the
Customer Token API: ``cart`` (pure translation of the v2 body), ``service`` (KCO v2's
authentication, v2 recurring token → customer token, the purchase and its activation),
``resource`` (the HTTP edge on the legacy listener, with KCO v2's replies). The journaled
purchase the engine runs is declared with the other calls, in
:mod:`gateway.calls.recurring_order`.
"""
