"""The legacy XML-RPC listener's HTTP edge: where a merchant's POST becomes a call.

``resource`` (the ``twisted.web`` resource: body bounds, the hardened parse, the one place
failures become ``<fault>`` replies, the access log, delivery of the reply), ``auth``
(method, eid, network and digest checked and the parameters decoded, once, in one order
for every method) and ``dispatch`` (an authenticated call run on the engine, its reply and
delivery hooks). Named the edge because it is the outermost layer of the one-way flow
(edge -> decode -> engine -> encode, docs/architecture.md#the-layers): it holds HTTP and
the merchant's credentials, not the wire format, which is :mod:`gateway.wire`.
"""
