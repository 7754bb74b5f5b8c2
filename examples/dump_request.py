"""Write the signed XML-RPC request the official Python SDK would send, without sending it.

The README's SDK snippet with ``--dump-request``: the unmodified ``Klarna_API`` 3.1.0 client
builds and signs the call, and a capturing transport writes the body to stdout instead of
putting it on the wire. The result is what ``klarna-gateway explain`` and the console's
digest self-test take (recordings mask the digest, so they cannot serve as one)::

    .venv/bin/pip install -q Klarna_API==3.1.0
    python examples/dump_request.py --dump-request activate 8000000000 ART-1:1 > request.xml
    klarna-gateway explain request.xml --config config/sandbox.toml

Methods: ``activate RNO [ARTNO:QTY ...]``, ``cancel_reservation RNO``,
``extend_expiry_date RNO``, ``email_invoice INVNO``, ``credit_invoice INVNO``,
``credit_part INVNO CREDNO ARTNO:QTY ...``. The defaults are the demo merchant of
``serve --sandbox`` (eid 1234, secret ``sandbox-secret``): use only test merchants' secrets
on the command line. ``examples/activate-request.xml`` was made with
``python examples/dump_request.py --dump-request activate 8000000000 ART-1:1``.
"""
from __future__ import annotations

import argparse
import functools
import sys
import xmlrpc.client
from typing import Any

METHODS = ("activate", "cancel_reservation", "extend_expiry_date", "email_invoice",
           "credit_invoice", "credit_part")


class DumpTransport(xmlrpc.client.Transport):
    """Keeps the body the SDK would send and answers with a harmless reply."""

    def __init__(self, reply: Any) -> None:
        super().__init__()
        self.reply = reply
        self.body = b""

    def request(self, host: Any, handler: str, request_body: bytes,
                verbose: bool = False) -> tuple[Any, ...]:
        self.body = request_body
        return (self.reply,)


def articles(client: Any, specs: list[str]) -> None:
    for spec in specs:
        artno, _, qty = spec.partition(":")
        client.add_art_no(qty=int(qty or 1), artno=artno)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print the signed request the official Python "
                                            "SDK would send (it is not sent).")
    p.add_argument("--dump-request", action="store_true", required=True,
                   help="write the request body to stdout instead of sending it")
    p.add_argument("--eid", type=int, default=1234, help="merchant (default: 1234)")
    p.add_argument("--secret", default="sandbox-secret",
                   help="the merchant's shared secret (default: the demo merchant's)")
    p.add_argument("method", choices=METHODS)
    p.add_argument("number", help="the rno, or the invno for invoice calls")
    p.add_argument("rest", nargs="*", help="CREDNO for credit_part, then ARTNO:QTY ...")
    args = p.parse_args(argv)
    try:
        import klarna
    except ImportError:
        print("dump_request: the legacy SDK is missing: pip install Klarna_API==3.1.0",
              file=sys.stderr)
        return 2
    reply: Any = {"activate": ["ok", "9000000000"], "extend_expiry_date": "20270101T000000",
                  "cancel_reservation": "ok"}.get(args.method, "9000000000")
    transport = DumpTransport(reply)
    client = klarna.Klarna(klarna.Config(
        eid=args.eid, secret=args.secret, country="SE", language="SV", currency="SEK",
        pcstorage="json", pcuri="/dev/null", uri="http://127.0.0.1:8080/", mode="beta"))
    client.ServerProxy = functools.partial(xmlrpc.client.ServerProxy, transport=transport)
    client.init()
    if args.method == "credit_part":
        if not args.rest:
            p.error("credit_part needs CREDNO and at least one ARTNO:QTY")
        articles(client, args.rest[1:])
        client.credit_part(args.number, args.rest[0])
    else:
        articles(client, args.rest)
        getattr(client, args.method)(args.number)
    sys.stdout.buffer.write(transport.body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
