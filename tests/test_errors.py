"""The fault table: codes, symbols, REST refusal mapping, and the documents' copies of it."""
from __future__ import annotations

import re
import xmlrpc.client
from pathlib import Path

import pytest

from gateway.calls.spec import Target
from gateway.engine.faults import rest_error_to_fault
from gateway.errors import FAULT_TABLE, FaultCode, GatewayError, NotAllowedError
from gateway.om.client import RestResponseError
from gateway.wire.encode import encode_fault

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_fault_strings_have_symbol_and_correlation_id() -> None:
    """`symbol: message`, plus Klarna's correlation id when REST caused it; int code."""
    e = NotAllowedError("cannot activate: the reservation is cancelled", correlation_id="c-1")
    assert e.fault_string == ("not_allowed_operation: cannot activate: the reservation is "
                              "cancelled (correlation_id c-1)")
    with pytest.raises(xmlrpc.client.Fault) as f:
        xmlrpc.client.loads(encode_fault(int(e.fault_code), e.fault_string))
    assert f.value.faultCode == 9103


def test_documented_fault_table_matches_the_code() -> None:
    """Every code of docs/legacy-protocol.md's fault table exists with that symbol, and every
    fault code is there (the integrator-facing FAULT_TABLE and -32603 internal_error)."""
    text = (DOCS / "legacy-protocol.md").read_text(encoding="utf-8")
    text = text.split("### Fault codes", 1)[1].split("\n### ", 1)[0]
    rows = dict(re.findall(r"^\| (-?\d+) \| `?(\w+)`? \|", text, re.M))
    documented = {int(c): s for c, s in rows.items()}
    assert documented == {int(code): code.symbol for code in FaultCode}
    assert {int(code) for code, _ in FAULT_TABLE} <= set(documented)


@pytest.mark.parametrize("status, code, message, what, fault", [
    (401, None, [], "order", FaultCode.MISC_ESTORE_ERROR),
    (404, "NO_SUCH_ORDER", ["Order x cannot be found"], "order", FaultCode.RNO),
    (404, "NO_SUCH_CAPTURE", ["Capture could not be found"], "invoice", FaultCode.UNKNOWN_INVOICE),
    (403, "CAPTURE_NOT_ALLOWED", ["Captured amount is higher than the remaining authorized "
                                  "amount. Capture not possible."], "order", FaultCode.AMOUNT),
    (403, "CANCEL_NOT_ALLOWED", ["Order has previous captures. Cancel not possible."],
     "order", FaultCode.NOT_ALLOWED_OPERATION),
    (403, "NOT_ALLOWED", ["Billing address cannot be updated"], "order",
     FaultCode.NOT_ALLOWED_OPERATION),
    (422, "UNPROCESSABLE_ENTITY", ["Bad value: order_lines[0].total_amount"], "order",
     FaultCode.GOODS_LIST),
    (503, "TEMPORARILY_UNAVAILABLE", [], "order", FaultCode.TIMEOUT),
    (429, "TOO_MANY_REQUESTS", [], "order", FaultCode.TIMEOUT),
])
def test_rest_refusals_map_to_legacy_faults(status: int, code: str | None, message: list[str],
                                            what: str, fault: FaultCode) -> None:
    """Each documented REST refusal becomes its legacy fault, carrying the correlation id."""
    err = rest_error_to_fault(RestResponseError(status, code, message, "corr-9"),
                              Target.INVOICE if what == "invoice" else Target.RESERVATION)
    assert isinstance(err, GatewayError)
    assert err.fault_code == fault
    assert err.fault_string.endswith("(correlation_id corr-9)")


def test_docs_list_every_call_not_offered() -> None:
    """docs/translation.md's "Calls the gateway does not offer" table is the registry's data,
    and docs/legacy-protocol.md names each of those calls too."""
    from gateway.calls import not_offered

    text = (DOCS / "translation.md").read_text(encoding="utf-8")
    for row in not_offered.doc_rows():
        assert row in text, row
    protocol = (DOCS / "legacy-protocol.md").read_text(encoding="utf-8")
    for entry in not_offered.NOT_OFFERED:
        assert f"| `{entry.name}` |" in protocol, entry.name
