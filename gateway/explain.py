"""``klarna-gateway explain REQUEST.xml``: the dry run migration teams read.

Takes a legacy XML-RPC request exactly as an ERP sent it (a captured body), checks it the
way the gateway would (method, eid, digest, parameters), reads the order over REST (GET
only), and prints the REST requests the call would become, with the v2/REST differences,
without sending any mutation or writing anything.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.legacy.decode import check_method, decode_call, extract_eid
from gateway.legacy.digest import verify_digest
from gateway.legacy.xmlrpc import parse_method_call
from gateway.om.client import OmClient, OmError
from gateway.store.store import Store
from gateway.translate import plan_call
from gateway.translate.plan import OrderContext, Plan


def format_plan(method: str, plan: Plan) -> str:
    lines = [f"{method} becomes:"]
    if not plan.steps:
        lines.append(f"  no REST request; legacy reply {plan.immediate_reply!r}")
    for i, step in enumerate(plan.steps, start=1):
        lines.append(f"  {i}. {step.http_method} {step.path}   ({step.purpose})")
        if step.body is not None:
            body = json.dumps(step.body, indent=2, ensure_ascii=False)
            lines += ["     " + ln for ln in body.splitlines()]
    if plan.allocate_invno:
        lines.append("  an invoice number is issued when the plan is journaled")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def run_explain(args: argparse.Namespace) -> int:
    """CLI body: exit 0 with the plan, 1 with the fault the call would get."""
    from gateway.cli import _with_store

    body = Path(args.file).read_bytes()

    async def run(store: Store, config: Config, reactor: Any) -> int:
        om = OmClient(reactor, timeout=config.gateway.rest_timeout_seconds)
        try:
            method, params = parse_method_call(body, max_depth=config.gateway.max_xml_depth)
            check_method(method)
            eid = extract_eid(method, params)
            merchant = config.merchant(eid)
            if merchant is None:
                print(f"fault 9113: eid {eid} is not configured")
                return 1
            if not verify_digest(method, params, merchant.secret_bytes):
                print("fault 9114: digest does not match")
                return 1
            call = decode_call(method, params)
            invno = getattr(call, "invno", None)
            invoice = None
            if invno is not None:
                invoice = await store.get_invoice(eid, invno)
                if invoice is None:
                    print(f"fault 8101: invoice {invno} is unknown for eid {eid}")
                    return 1
                reservation = await store.get_reservation_by_id(invoice.reservation_id)
            else:
                rno = call.rno  # type: ignore[union-attr]
                found = await store.get_reservation(eid, rno) or \
                    await store.get_reservation_by_order(eid, rno)
                if found is None:
                    print(f"fault 9109: reservation {rno} is unknown for eid {eid}")
                    return 1
                reservation = found
            order = await om.get_order(merchant, reservation.order_id,
                                       deadline=reactor.seconds() + 10)
            invoices = tuple(await store.invoices_for(reservation.id))
            plan = plan_call(call, OrderContext(reservation=reservation, order=order,
                                                invoices=invoices, invoice=invoice))
        except GatewayError as e:
            print(f"fault {int(e.fault_code)}: {e.fault_string}")
            return 1
        except OmError as e:
            print(f"cannot read the order from Klarna: {e}", file=sys.stderr)
            return 2
        finally:
            await om.close()
        print(f"eid {eid}, rno {reservation.rno} = order {reservation.order_id} "
              f"({order.get('status')}, {order.get('remaining_authorized_amount')} "
              f"uncaptured)")
        print(format_plan(method, plan))
        return 0
    return _with_store(args, run)
