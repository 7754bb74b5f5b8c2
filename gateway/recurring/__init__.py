"""Klarna Checkout v2 recurring orders (``POST /checkout/recurring/{token}/orders``) on the
Customer Token API: ``cart`` (pure translation of the v2 body), ``call`` (the journaled
purchase the engine runs), ``tokens`` (v2 recurring token → customer token), ``resource``
(the HTTP edge on the legacy listener, with KCO v2's digest and replies).
"""
