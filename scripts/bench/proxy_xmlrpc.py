"""The same-work reference: a minimal Twisted XML-RPC server doing only the gateway's REST work.

What a gateway call can at best cost is the XML-RPC edge plus its REST round trips; this
server is exactly that and nothing more (no digest check, no store, no journal, no
idempotency bookkeeping of its own), so ``gateway / this`` is the share of the machine the
gateway's own logic leaves for serving:

* ``cancel_reservation``: ``GET order`` + ``POST cancel`` → ``"ok"``;
* ``activate`` with artnos: ``GET order`` + ``POST captures`` of the listed articles' lines
  (quantity × unit price, tax from the rate) → ``["ok", invno]``.

The rno is the sandbox order id (like the gateway's pass-through). The REST client is set up
like the gateway's (``gateway/om/client.py``): treq over one persistent pool, 16 cached
connections per host kept 60 s, TCP_NODELAY on every connection, the same request headers
(Basic auth, User-Agent, Accept, JSON body, ``Klarna-Idempotency-Key`` on mutations, which
the sandbox then does its idempotency work for, as it does for the gateway). It is copied
rather than imported so that the reference stays put while the gateway changes.

    python scripts/bench/proxy_xmlrpc.py PORT --sandbox http://127.0.0.1:8089
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import uuid
from typing import Any
from urllib.parse import quote

import treq
from treq.client import HTTPClient
from twisted.internet import defer, endpoints, reactor
from twisted.web import server, xmlrpc
from twisted.web.client import (
    Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, _StandardEndpointFactory,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

USER_AGENT = b"Library/klarna-gateway_0.1.0 Language/Python_3.11"


@implementer(IAgentEndpointFactory)
class NoDelayEndpointFactory:
    """Agent endpoints with TCP_NODELAY, as the gateway's client has (treq writes headers
    and body separately; Nagle + delayed ACK would add milliseconds to every POST)."""

    def __init__(self, reactor: Any) -> None:
        self._inner = _StandardEndpointFactory(reactor, BrowserLikePolicyForHTTPS(), None, None)

    def endpointForURI(self, uri: Any) -> Any:  # noqa: N802 - Twisted's interface
        return _NoDelayEndpoint(self._inner.endpointForURI(uri))


class _NoDelayEndpoint:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def nodelay(proto: Any) -> Any:
            proto.transport.setTcpNoDelay(True)
            return proto
        return self._inner.connect(factory).addCallback(nodelay)


class Rest:
    """The smallest REST client that sends what the gateway sends."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float) -> None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 16
        pool.cachedConnectionTimeout = 60
        self.http = HTTPClient(Agent.usingEndpointFactory(
            reactor, NoDelayEndpointFactory(reactor), pool=pool))
        self.base_url = base_url.rstrip("/")
        self.auth = b"Basic " + base64.b64encode(f"{username}:{password}".encode())
        self.timeout = timeout

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, Headers]:
        headers = {b"Authorization": [self.auth], b"User-Agent": [USER_AGENT],
                   b"Accept": [b"application/json"]}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers[b"Content-Type"] = [b"application/json"]
        if method != "GET":
            headers[b"Klarna-Idempotency-Key"] = [str(uuid.uuid4()).encode()]
        resp = await self.http.request(method, self.base_url + path, data=data,
                                       headers=Headers(headers), unbuffered=True,
                                       timeout=self.timeout)
        raw = await treq.content(resp)
        return resp.code, json.loads(raw) if raw else None, resp.headers


def capture_lines(order: dict[str, Any], artnos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listed quantities of the order's lines with that reference, priced simply."""
    by_ref = {ln.get("reference"): ln for ln in order.get("order_lines") or []}
    lines = []
    for entry in artnos:
        line = by_ref.get(entry["artno"])
        if line is None:
            raise xmlrpc.Fault(9108, f"unknown_artno: {entry['artno']}")
        qty = int(entry["qty"])
        total = qty * int(line["unit_price"])
        rate = int(line.get("tax_rate", 0))
        lines.append({"type": line.get("type", "physical"), "reference": line["reference"],
                      "name": line["name"], "quantity": qty, "unit_price": line["unit_price"],
                      "tax_rate": rate, "total_amount": total, "total_discount_amount": 0,
                      "total_tax_amount": total - round(total * 10000 / (10000 + rate))})
    return lines


class SameWorkProxy(xmlrpc.XMLRPC):
    def __init__(self, rest: Rest) -> None:
        super().__init__(allowNone=False)
        self.rest = rest
        self.invnos = itertools.count(9000000000)

    @staticmethod
    def _path(order_id: str) -> str:
        return f"/ordermanagement/v1/orders/{quote(order_id, safe='')}"

    async def _order(self, rno: str) -> dict[str, Any]:
        status, order, _ = await self.rest.call("GET", self._path(rno))
        if status != 200:
            raise xmlrpc.Fault(9109, f"rno: GET order answered {status}")
        return dict(order)

    async def _cancel(self, rno: str) -> str:
        order = await self._order(rno)
        if order.get("status") != "AUTHORIZED":
            raise xmlrpc.Fault(9103, f"not_allowed_operation: order is {order.get('status')}")
        status, body, _ = await self.rest.call("POST", self._path(rno) + "/cancel")
        if status != 204:
            raise xmlrpc.Fault(9103, f"not_allowed_operation: cancel answered {status} {body}")
        return "ok"

    async def _activate(self, rno: str, info: dict[str, Any]) -> list[str]:
        order = await self._order(rno)
        lines = capture_lines(order, list(info.get("artnos") or []))
        body = {"captured_amount": sum(ln["total_amount"] for ln in lines),
                "order_lines": lines}
        status, answer, _ = await self.rest.call("POST", self._path(rno) + "/captures", body)
        if status != 201:
            raise xmlrpc.Fault(9103, f"not_allowed_operation: capture answered {status} {answer}")
        return ["ok", str(next(self.invnos))]

    def xmlrpc_cancel_reservation(self, proto: str, version: str, rno: str, eid: int,
                                  digest: str) -> defer.Deferred[str]:
        return defer.ensureDeferred(self._cancel(rno))

    def xmlrpc_activate(self, proto: str, version: str, eid: int, digest: str, rno: str,
                        info: dict[str, Any]) -> defer.Deferred[list[str]]:
        return defer.ensureDeferred(self._activate(rno, info))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("port", type=int, help="port to listen on (127.0.0.1)")
    p.add_argument("--sandbox", default="http://127.0.0.1:8089", help="OM base URL")
    p.add_argument("--username", default="PK1234_bench", help="REST username")
    p.add_argument("--password", default="bench-password", help="REST password")
    p.add_argument("--timeout", type=float, default=3.0, help="per-request timeout, seconds")
    args = p.parse_args()
    rest = Rest(args.sandbox, args.username, args.password, args.timeout)
    endpoints.serverFromString(reactor, f"tcp:{args.port}:interface=127.0.0.1").listen(
        server.Site(SameWorkProxy(rest)))
    reactor.run()  # type: ignore[misc]


if __name__ == "__main__":
    main()
