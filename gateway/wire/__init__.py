"""The legacy XML-RPC wire format: bytes to values and back, and what the values mean.

``parse`` (the hardened ``methodCall``/``methodResponse`` parser: no DTD or entities,
depth-limited, exact decimals), ``encode`` (replies and faults exactly as v2 wrote them,
ISO-8859-1), ``digest`` (the legacy ``digest`` in every SDK dialect), ``params`` (typed
decoding with exactly the SDKs' looseness) and ``values`` (the value types the calls
share: goods rows, artnos, addresses, flags). Named the wire because it is what travels
between an ERP and the gateway, independent of HTTP: the edge (:mod:`gateway.edge`), the
call declarations (:mod:`gateway.calls`), ``explain``, the console's digest self-test and
record/replay all use it. ``digest``, ``params`` and ``values`` are pure (no Twisted, no
store): ``tests/test_architecture.py`` checks it.
"""
