"""The replay's outputs: a JSON summary and a self-contained HTML report. Pure.

Both are built from the same :class:`Summary`. The HTML has no script, no external resource
and escapes every value it shows (recorded replies come from another system and may hold
anything); digests are never shown: the parameters show the recording's placeholder.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from gateway.replay.compare import DIFFERENT, KNOWN, SAME, SKIPPED, VERDICTS, Outcome, Verdict

FORMAT: Final = 1


def jsonable(value: Any) -> Any:
    """A decoded XML-RPC value as JSON (exact decimals as strings, bytes as base64)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def outcome_json(o: Outcome | None) -> dict[str, Any] | None:
    if o is None:
        return None
    if o.error is not None:
        return {"outcome": "error", "error": o.error}
    if o.ok:
        return {"outcome": "ok", "value": jsonable(o.value)}
    return {"outcome": str(o.fault_code), "fault_code": o.fault_code,
            "fault_string": o.fault_string}


@dataclass
class CallResult:
    """One replayed call: what was recorded, what the target answered, the verdict."""

    n: int
    where: str
    method: str
    eid: int | None
    recorded_at: str
    verdict: Verdict
    recorded: Outcome | None = None
    new: Outcome | None = None
    params: list[Any] = field(default_factory=list)
    mapped: dict[str, str] = field(default_factory=dict)
    recorded_journal_id: Any = None
    journal_id: int | None = None
    rest_requests: list[dict[str, Any]] | None = None
    journal_note: str | None = None
    duration_ms: float | None = None
    recorded_duration_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n, "where": self.where, "method": self.method, "eid": self.eid,
            "recorded_at": self.recorded_at, **self.verdict.as_json(),
            "recorded": outcome_json(self.recorded), "new": outcome_json(self.new),
            "params": jsonable(self.params), "mapped": self.mapped,
            "recorded_journal_id": self.recorded_journal_id, "journal_id": self.journal_id,
            "rest_requests": self.rest_requests, "journal_note": self.journal_note,
            "duration_ms": self.duration_ms, "recorded_duration_ms": self.recorded_duration_ms,
            "notes": self.notes,
        }


@dataclass
class Summary:
    recording: str
    target: str
    admin: str | None
    started_at: str
    finished_at: str = ""
    calls: list[CallResult] = field(default_factory=list)
    numbers: dict[str, dict[str, str]] = field(default_factory=dict)
    seeded: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICTS, 0)
        for c in self.calls:
            counts[c.verdict.verdict] += 1
        return counts

    @property
    def failed(self) -> bool:
        return self.counts[DIFFERENT] > 0

    def as_json(self) -> dict[str, Any]:
        return {"tool": "klarna-gateway replay", "format": FORMAT, "recording": self.recording,
                "target": self.target, "admin": self.admin, "started_at": self.started_at,
                "finished_at": self.finished_at, "counts": self.counts,
                "result": "different" if self.failed else "ok", "numbers": self.numbers,
                "seeded": self.seeded, "problems": self.problems,
                "calls": [c.as_json() for c in self.calls]}


def summary_json(summary: Summary) -> str:
    return json.dumps(summary.as_json(), indent=2, ensure_ascii=False) + "\n"


# -- HTML --------------------------------------------------------------------------------

_CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1d1d1f}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:.35em .5em;vertical-align:top;text-align:left}
th{background:#f3f3f3}pre{margin:0;white-space:pre-wrap;word-break:break-all;font-size:12px}
.v{font-weight:600;white-space:nowrap}.same{background:#e7f6e7}.known{background:#fff6d6}
.different{background:#fde2e2}.skipped{background:#eee}
.counts span{display:inline-block;margin-right:1em;padding:.2em .6em;border-radius:4px}
dl{margin:0}dt{font-weight:600}dd{margin:0 0 .5em 0}small{color:#555}
"""
_CLASS: Final = {SAME: "same", KNOWN: "known", DIFFERENT: "different", SKIPPED: "skipped"}


def e(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(jsonable(value), indent=1,
                                                            ensure_ascii=False)
    return f"<pre>{e(text)}</pre>"


def _outcome_html(o: Outcome | None) -> str:
    if o is None:
        return "<small>not sent</small>"
    if o.error is not None:
        return f"<small>error</small>{_pre(o.error)}"
    if o.ok:
        return _pre(o.value)
    return f"<b>fault {e(o.fault_code)}</b>{_pre(o.fault_string)}"


def _rest_html(c: CallResult) -> str:
    if c.rest_requests is None:
        return f"<small>{e(c.journal_note or 'not read')}</small>"
    if not c.rest_requests:
        return f"<small>none (journal entry {e(c.journal_id)})</small>"
    items = "".join(
        f"<li><code>{e(s.get('method'))} {e(s.get('path'))}</code> "
        f"<small>{e(s.get('state'))}</small>"
        + (f"<details><summary>body</summary>{_pre(s.get('body'))}</details>"
           if s.get("body") is not None else "") + "</li>"
        for s in c.rest_requests)
    return f"<small>journal entry {e(c.journal_id)}</small><ol>{items}</ol>"


def _row(c: CallResult) -> str:
    cls = _CLASS.get(c.verdict.verdict, "different")
    rule = (f"<dl><dt>{e(c.verdict.rule)}</dt><dd>{e(c.verdict.readme or '')}</dd></dl>"
            if c.verdict.rule else "")
    mapped = "".join(f"<br><small>{e(k)} → {e(v)}</small>" for k, v in c.mapped.items())
    notes = "".join(f"<br><small>{e(n)}</small>" for n in c.notes)
    return (f'<tr class="{cls}"><td>{c.n}</td><td><code>{e(c.method)}</code>'
            f"<br><small>eid {e(c.eid)} · {e(c.recorded_at)}</small>{mapped}"
            f"<details><summary>params</summary>{_pre(c.params)}</details></td>"
            f'<td class="v">{e(c.verdict.verdict)}</td><td>{e(c.verdict.reason)}{rule}'
            f"{notes}</td><td>{_outcome_html(c.recorded)}</td><td>{_outcome_html(c.new)}</td>"
            f"<td>{_rest_html(c)}</td></tr>")


def render_html(summary: Summary) -> str:
    counts = summary.counts
    spans = "".join(f'<span class="{_CLASS[v]}">{e(v)}: {counts[v]}</span>' for v in VERDICTS)
    seeded = "".join(
        f"<li>eid {e(s.get('eid'))} rno {e(s.get('rno'))} → {e(s.get('registered_rno'))} "
        f"(order {e(s.get('order_id'))}, {e(s.get('amount'))} minor units)</li>"
        for s in summary.seeded)
    problems = "".join(f"<li>{e(p)}</li>" for p in summary.problems)
    numbers = "".join(f"<li>{e(kind)} {e(k)} → {e(v)}</li>"
                      for kind, table in summary.numbers.items() for k, v in table.items())
    rows = "".join(_row(c) for c in summary.calls)
    result = "different replies found" if summary.failed else "no unexplained difference"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Replay report: {e(summary.recording)}</title><style>{_CSS}</style></head>"
        f"<body><h1>Replay report</h1><p>Recording <code>{e(summary.recording)}</code> "
        f"replayed against <code>{e(summary.target)}</code>"
        + (f" (admin API <code>{e(summary.admin)}</code>)" if summary.admin else "")
        + f", {e(summary.started_at)} – {e(summary.finished_at)}: <b>{e(result)}</b>.</p>"
        f'<p class="counts">{spans}</p>'
        + (f"<h2>Seeded orders</h2><ul>{seeded}</ul>" if seeded else "")
        + (f"<h2>Number mapping</h2><ul>{numbers}</ul>" if numbers else "")
        + (f"<h2>Problems</h2><ul>{problems}</ul>" if problems else "")
        + "<h2>Calls</h2><table><thead><tr><th>#</th><th>call</th><th>verdict</th>"
        "<th>why</th><th>recorded reply</th><th>new reply</th><th>REST requests</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        "<p><small>same: equal after number mapping (faults: same code). known difference: "
        "a difference docs/translation.md documents, named by its rule. different: "
        "anything else (the replay exits non-zero).</small></p>"
        "</body></html>\n")
