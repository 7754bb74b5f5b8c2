"""The baseline: a bare ``twisted.web.xmlrpc`` server answering ``cancel_reservation`` "ok".

No digest, no store, no REST: the floor any XML-RPC server on Twisted pays per request.
"""
from __future__ import annotations

import sys

from twisted.internet import endpoints, reactor
from twisted.web import server, xmlrpc


class Bare(xmlrpc.XMLRPC):
    def xmlrpc_cancel_reservation(self, proto: str, version: str, rno: str, eid: int,
                                  digest: str) -> str:
        return "ok"


if __name__ == "__main__":
    endpoints.serverFromString(reactor, f"tcp:{sys.argv[1]}:interface=127.0.0.1").listen(
        server.Site(Bare(allowNone=False)))
    reactor.run()
