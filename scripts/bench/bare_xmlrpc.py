"""The floor: a bare ``twisted.web.xmlrpc`` server answering the legacy calls at once.

No digest, no store, no REST: what any XML-RPC server on Twisted pays per request. Answers
``cancel_reservation`` ``"ok"`` and ``activate`` ``["ok", invno]``, as the legacy API would.

    python scripts/bench/bare_xmlrpc.py PORT
"""
from __future__ import annotations

import sys
from typing import Any

from twisted.internet import endpoints, reactor
from twisted.web import server, xmlrpc


class Bare(xmlrpc.XMLRPC):
    def xmlrpc_cancel_reservation(self, proto: str, version: str, rno: str, eid: int,
                                  digest: str) -> str:
        return "ok"

    def xmlrpc_activate(self, proto: str, version: str, eid: int, digest: str, rno: str,
                        info: dict[str, Any]) -> list[str]:
        return ["ok", "9000000000"]


if __name__ == "__main__":
    endpoints.serverFromString(reactor, f"tcp:{sys.argv[1]}:interface=127.0.0.1").listen(
        server.Site(Bare(allowNone=False)))
    reactor.run()  # type: ignore[misc]
