"""The console's pages as HTML (pure functions of the data the resource gathered).

Every value goes through :mod:`gateway.console.html`, which escapes it; forms are plain
GET forms (they change nothing) except sign-in, sign-out and the digest self-test. No
JavaScript anywhere: the pages work in any browser, and the Content-Security-Policy the
resource sends forbids scripts outright.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.console.auth import Principal
from gateway.console.digest_check import SDKS, Verdict
from gateway.console.html import (
    STYLE, Html, box, esc, h, join, link, pre_json, table,
)
from gateway.model import Invoice, JournalEntry, Reservation
from gateway.tools.journal import FILTERS, encode_cursor, iso, outcome_of
from gateway.tools.reconcile import Discrepancy
from gateway.tools.explain import Explanation
from gateway.tools.expiring import Expiring
from gateway.translate.text import NOTE_PREFIX

NAV = (("/console/", "Search"), ("/console/journal", "Journal"),
       ("/console/pending", "Pending calls"), ("/console/discrepancies", "Discrepancies"),
       ("/console/expiring", "Expiring"), ("/console/digest", "Digest self-test"))


def document(title: str, body: Html, principal: Principal | None) -> bytes:
    """A whole page: header with navigation and who is signed in, then ``body``."""
    if principal is not None:
        nav = join(h('<a href="{}">{}</a>', path, label) for path, label in NAV)
        who = h('<span class="who">signed in as {}</span>'
                '<form method="post" action="/console/signout">'
                '<button type="submit">Sign out</button></form>', principal.label)
    else:
        nav, who = Html(""), Html("")
    page = h('<!doctype html><html lang="en"><head><meta charset="utf-8">'
             '<meta name="viewport" content="width=device-width, initial-scale=1">'
             '<title>{title} · klarna-gateway console</title>{style}</head><body>'
             '<header><strong>klarna-gateway</strong>{nav}{who}</header>'
             '<main><h1>{title}</h1>{body}</main></body></html>',
             title=title, style=STYLE, nav=nav, who=who, body=body)
    return page.encode("utf-8")


def signin(error: str | None = None) -> Html:
    return join([
        box("error", "Sign-in failed:", error) if error else Html(""),
        Html('<form method="post" action="/console/signin">'
             '<p><label for="token">Admin token or your merchant console token</label><br>'
             '<input type="password" id="token" name="token" size="50" '
             'autocomplete="current-password" required autofocus></p>'
             '<p><button type="submit">Sign in</button></p></form>'
             '<p class="muted">Scripts may send <code>Authorization: Bearer …</code> '
             'instead.</p>'),
    ])


# -- search ------------------------------------------------------------------------------


def search(q: str, found: Sequence[Reservation] | None, recent: Sequence[JournalEntry],
           principal: Principal) -> Html:
    scope = "every merchant" if principal.admin else f"eid {principal.eid}"
    form = h('<form method="get" action="/console/"><p><label for="q">Reservation number, '
             'invoice number, Klarna order id or merchant order id ({})</label><br>'
             '<input type="search" id="q" name="q" size="50" value="{}"> '
             '<button type="submit">Search</button></p></form>', scope, q)
    parts = [form]
    if found is not None:
        parts.append(h("<h2>Reservations matching “{}”</h2>", q))
        parts.append(reservations_table(found, empty=f"no reservation matches {q!r}"))
    parts.append(Html("<h2>Latest calls</h2>"))
    parts.append(entries_table(recent))
    return join(parts)


def reservations_table(found: Sequence[Reservation], *, empty: str = "none") -> Html:
    return table(("eid", "rno", "Klarna order id", "status", "origin", "registered"),
                 ((r.eid, link("/console/reservation", r.rno, eid=r.eid, rno=r.rno),
                   r.order_id, r.status or "-", r.origin, iso(r.created_at))
                  for r in found), empty=empty)


def _badge(e: JournalEntry) -> Html:
    outcome = outcome_of(e)
    kind = {"ok": "b-ok", "pending": "b-pending"}.get(outcome, "b-fault")
    return h('<span class="badge {}">{}</span>', kind, outcome)


def entries_table(entries: Sequence[JournalEntry]) -> Html:
    """One line per call, linking to its reservation when it names one."""
    def number(e: JournalEntry) -> Any:
        if e.rno:
            return link("/console/reservation", e.rno, eid=e.eid, rno=e.rno)
        return e.invno or "-"
    return table(("#", "time", "eid", "method", "rno / invno", "order id", "outcome",
                  "REST steps", "delivered"),
                 ((e.id, iso(e.created_at), e.eid, e.method, number(e), e.order_id or "-",
                   _badge(e), len(e.steps), iso(e.delivered_at) or "-") for e in entries),
                 empty="no calls")


# -- the reservation ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReservationView:
    reservation: Reservation
    invoices: Sequence[Invoice]
    order: dict[str, Any] | None
    order_error: str | None
    entries: Sequence[JournalEntry]
    next_before: int | None


def reservation(v: ReservationView) -> Html:
    r = v.reservation
    head = table(("eid", "rno", "Klarna order id", "status (gateway)", "origin", "registered"),
                 [(r.eid, r.rno, r.order_id, r.status or "-", r.origin, iso(r.created_at))])
    parts = [head, Html("<h2>Invoices and credits (gateway store)</h2>"),
             invoices_table(v.invoices), Html("<h2>At Klarna</h2>")]
    if v.order_error is not None:
        parts.append(box("error", "Klarna could not be read:", v.order_error))
    elif v.order is not None:
        parts.append(order_summary(v.order))
    parts.append(Html("<h2>Journal</h2>"))
    parts.append(entries_detail(v.entries))
    if v.next_before is not None:
        parts.append(h("<p>{}</p>", link("/console/reservation", "Older calls →", eid=r.eid,
                                          rno=r.rno, cursor=encode_cursor(v.next_before))))
    return join(parts)


def invoices_table(invoices: Sequence[Invoice]) -> Html:
    rows = []
    for inv in invoices:
        credits = join(h("<div>credit {} · refund {} · {}</div>", c.credno or "-",
                         c.refund_id, c.refunded_amount) for c in inv.credits) or "-"
        rows.append((inv.invno, inv.capture_id, inv.captured_amount, inv.refunded_amount,
                     "yes" if inv.adopted else "no", credits))
    return table(("invno", "capture id", "captured (minor units)", "refunded", "adopted",
                  "credits"), rows, empty="no invoices yet")


def order_summary(order: dict[str, Any]) -> Html:
    keys = ("status", "fraud_status", "purchase_currency", "order_amount", "captured_amount",
            "refunded_amount", "remaining_authorized_amount", "expires_at",
            "merchant_reference1", "merchant_reference2")
    summary = table(keys, [[order.get(k, "-") if order.get(k) is not None else "-"
                            for k in keys]])
    captures = table(("capture id", "captured at", "amount", "reference", "refunded"),
                     ((c.get("capture_id"), c.get("captured_at"), c.get("captured_amount"),
                       c.get("reference") or "-", c.get("refunded_amount", 0))
                      for c in order.get("captures") or []), empty="no captures at Klarna")
    refunds = table(("refund id", "refunded at", "amount", "reference"),
                    ((r.get("refund_id"), r.get("refunded_at"), r.get("refunded_amount"),
                      r.get("reference") or "-") for r in order.get("refunds") or []),
                    empty="no refunds at Klarna")
    return join([summary, Html("<h3>Captures</h3>"), captures, Html("<h3>Refunds</h3>"),
                 refunds])


def entries_detail(entries: Sequence[JournalEntry]) -> Html:
    return join(entry_detail(e) for e in entries) or h('<p class="muted">{}</p>', "no calls")


def entry_detail(e: JournalEntry) -> Html:
    """One legacy call: what was asked, the REST requests it became, and the answer."""
    steps = table(("#", "request", "state", "idempotency key", "body", "result"),
                  ((s.step, h("<code>{} {}</code><br><span class=\"muted\">{}</span>",
                              s.http_method, s.path, s.purpose),
                    s.state.value, h("<code>{}</code>", s.idempotency_key),
                    h("<details><summary>body</summary>{}</details>", pre_json(s.body))
                    if s.body is not None else "-",
                    pre_json(s.result) if s.result is not None else "-")
                   for s in e.steps), empty="no REST request")
    if e.fault_code is not None:
        answer = h("fault <strong>{}</strong>: {}", e.fault_code, e.fault_string or "")
    elif e.state.value == "pending":
        answer = Html("<em>no answer yet</em>")
    else:
        answer = h("reply <code>{}</code>", _short_json(e.reply))
    return h('<section class="entry" id="call-{id}"><div>#{id} · {time} · eid {eid} · '
             '<strong>{method}</strong> {badge} · delivered: {delivered}</div>'
             '<details><summary>legacy call</summary>{call}</details>'
             '<div><strong>REST steps</strong>{steps}</div>{notes}<div>{answer}</div>'
             '</section>',
             id=e.id, time=iso(e.created_at), eid=e.eid, method=e.method, badge=_badge(e),
             delivered=iso(e.delivered_at) or "not recorded", call=pre_json(e.call),
             steps=steps, notes=notes_html(e.notes), answer=answer)


def notes_html(notes: Sequence[str]) -> Html:
    """A call's notes: text repairs (mis-encoded text found, with the text before and
    after) apart from the v2/REST notes."""
    repairs = [n for n in notes if n.startswith(NOTE_PREFIX)]
    others = [n for n in notes if not n.startswith(NOTE_PREFIX)]
    return join(h('<div class="{}"><strong>{}</strong><ul>{}</ul></div>', kind, title,
                  join(h("<li>{}</li>", n) for n in items))
                for kind, title, items in (("notes", "v2/REST notes", others),
                                           ("repairs", "Text repairs", repairs)) if items)


def _short_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- journal search, pending -------------------------------------------------------------


def journal_page(params: dict[str, str], entries: Sequence[JournalEntry],
                 next_before: int | None, error: str | None) -> Html:
    fields = join(h('<label>{name} <input name="{name}" value="{value}" size="14"></label>',
                    name=f, value=params.get(f, "")) for f in FILTERS)
    form = h('<form class="filters" method="get" action="/console/journal">{}'
             '<button type="submit">Search</button></form>'
             '<p class="muted">outcome: ok, pending, fault or a fault code; since/until: '
             'ISO-8601 (UTC when no offset).</p>', fields)
    parts = [form]
    if error:
        parts.append(box("error", "Invalid filter:", error))
    parts.append(entries_detail(entries))
    if next_before is not None:
        query = {k: v for k, v in params.items() if k in FILTERS}
        parts.append(h("<p>{}</p>", link("/console/journal", "Older calls →",
                                         cursor=encode_cursor(next_before), **query)))
    return join(parts)


def pending(running: Sequence[JournalEntry], unresolved: Sequence[JournalEntry]) -> Html:
    intro = Html('<p class="muted">Pending calls have no outcome yet. <em>Running</em>: a '
                 "gateway process holds the call's lease now. <em>Unresolved</em>: nobody "
                 "does (a process died, or the client was answered 9119); recovery resumes "
                 "it with the same idempotency keys within seconds, or the client's retry "
                 "continues it. A planned capture or refund here blocks new money on its "
                 "order until it is settled.</p>")
    return join([intro, h("<h2>Unresolved ({})</h2>", len(unresolved)),
                 entries_detail(unresolved), h("<h2>Running ({})</h2>", len(running)),
                 entries_detail(running)])


# -- discrepancies, expiring -------------------------------------------------------------


def discrepancies(problems: Sequence[Discrepancy], checked: int, capped: bool) -> Html:
    intro = h('<p class="muted">Read-only comparison of the gateway store with Klarna for '
              '{} reservation(s){}. Nothing is changed here: <code>klarna-gateway '
              'reconcile</code> resumes unfinished calls and adopts captures and refunds '
              'made outside the gateway.</p>', checked,
              " (the most recently changed ones)" if capped else "")
    if not problems:
        return join([intro, box("ok", "Store and Klarna agree.")])
    rows = ((p.eid, link("/console/reservation", p.rno, eid=p.eid, rno=p.rno) if p.rno
             else "-", p.order_id or "-", p.what, p.store, p.rest) for p in problems)
    return join([intro, box("error", f"{len(problems)} discrepancies."),
                 table(("eid", "rno", "order id", "what", "store", "Klarna"), rows)])


def expiring(days: int, items: Sequence[Expiring], errors: Sequence[tuple[Reservation, str]],
             checked: int, capped: bool) -> Html:
    form = h('<form method="get" action="/console/expiring"><label for="days">Expiring '
             'within (days)</label> <input type="number" id="days" name="days" min="1" '
             'max="365" value="{}"> <button type="submit">Show</button></form>', days)
    rows = ((e.reservation.eid, link("/console/reservation", e.reservation.rno,
                                     eid=e.reservation.eid, rno=e.reservation.rno),
             e.reservation.order_id, e.status, e.amount, e.expires_at,
             f"{e.days_left:.1f}") for e in items)
    parts = [form, h('<p class="muted">Authorizations with an uncaptured amount, from each '
                     "order's <code>expires_at</code> at Klarna ({} reservation(s) read{}). "
                     "<code>extend_expiry_date</code> extends one.</p>", checked,
                     ", the most recently changed ones" if capped else ""),
             table(("eid", "rno", "order id", "status", "remaining authorized",
                    "expires at", "days left"), rows,
                   empty=f"nothing expires within {days} day(s)")]
    if errors:
        parts.append(box("error", "Klarna could not be read for:",
                         join(h("<div>rno {} ({}): {}</div>", r.rno, r.order_id, why)
                              for r, why in errors)))
    return join(parts)


# -- digest self-test --------------------------------------------------------------------


def digest_form(text: str) -> Html:
    return h('<form method="post" action="/console/digest"><p><label for="request">Paste '
             'one XML-RPC request exactly as your ERP sent it (the HTTP body)</label><br>'
             '<textarea id="request" name="request" rows="14" cols="100" spellcheck="false">'
             '{}</textarea></p><p><button type="submit">Check</button></p></form>', text)


def digest_result(v: Verdict, explanation: Explanation | None, explain_error: str | None,
                  ) -> Html:
    parts: list[Html] = []
    facts = table(("method", "eid", "served by the gateway", "digest", "hash"),
                  [(v.method or "-", v.eid if v.eid is not None else "-",
                    "yes" if v.served else "no", v.digest if v.digest is not None else "-",
                    v.hash_name or "unknown length")])
    if v.problem:
        parts += [box("error", "Not checked:", v.problem)]
        if v.method:
            parts.append(facts)
        return join(parts)
    if v.matches:
        sdks = join(h("<li>{}</li>", SDKS[d]) for d in v.dialects)
        parts += [box("ok", "The digest matches.",
                      h("Hash {}; SDKs that hash this request this way: <ul>{}</ul>",
                        v.hash_name, sdks)), facts]
    else:
        rows = ((dialect, h("<code>{}</code>", text)) for dialect, text in v.expected)
        parts += [box("error", "The digest does not match",
                      "(fault 9114): a wrong shared secret, or different parts."), facts,
                  Html("<h2>What the SDKs would hash for this request</h2>"),
                  table(("dialect", "ISO-8859-1 text, then hashed and base64-encoded"), rows,
                        empty="no SDK could hash these parts (a character outside "
                              "ISO-8859-1)")]
    for note in v.notes:
        parts.append(box("note", "Note:", note))
    parts.append(Html("<h2>What the call would do</h2>"))
    if explain_error is not None:
        parts.append(box("error", "", explain_error))
    elif explanation is not None:
        parts.append(explained(explanation))
    return join(parts)


def explained(x: Explanation) -> Html:
    r, order, plan = x.reservation, x.order, x.plan
    head = h("<p>eid {} · rno {} = Klarna order <code>{}</code> ({}, {} uncaptured) · "
             "<em>{}</em></p>", r.eid, r.rno, r.order_id, order.get("status"),
             order.get("remaining_authorized_amount"), x.summary)
    steps = table(("#", "request", "purpose", "body"),
                  ((i, h("<code>{} {}</code>", s.http_method, s.path), s.purpose,
                    pre_json(s.body) if s.body is not None else "-")
                   for i, s in enumerate(plan.steps, start=1)), empty="no REST request")
    extra = Html("<p>An invoice number is issued when the plan is journaled.</p>") \
        if plan.allocate_invno else Html("")
    differences = h('<div class="notes"><strong>v2 and REST differ (every {})</strong>'
                    '<ul>{}</ul></div>', x.method,
                    join(h("<li>{}</li>", d) for d in x.differences)) \
        if x.differences else Html("")
    return join([head, steps, extra, notes_html(plan.notes), differences,
                 Html('<p class="muted">A dry run: nothing was sent to Klarna but a GET of '
                      'the order, nothing was written.</p>')])


def error_page(message: str) -> Html:
    return box("error", "", esc(message))
