"""A tiny escaping template helper: everything is escaped unless this module built it.

Why not a template engine: the console has a dozen small pages and must not grow a
dependency; what matters is that no value from the store, Klarna or a pasted request can
ever reach the page unescaped. :class:`Html` marks markup built here; :func:`h` formats a
trusted template (written in this package) with every argument escaped, so forgetting to
escape is not possible, only deliberately wrapping text in ``Html`` is.
"""
from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode


class Html(str):
    """Markup built by this package: never escaped again."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """``value`` as text safe inside an element or a double-quoted attribute."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def h(template: str, *args: Any, **kwargs: Any) -> Html:
    """Fill a trusted ``str.format`` template; every argument is escaped (``Html`` ones are
    already markup). Templates must quote attributes with double quotes."""
    return Html(template.format(*(esc(a) for a in args),
                                **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Html], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def link(path: str, text: Any, **params: Any) -> Html:
    """``<a>`` to a console path (a constant here) with an encoded query string."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return h('<a href="{}">{}</a>', path + ("?" + query if query else ""), text)


def pre_json(value: Any) -> Html:
    """Pretty JSON in a ``<pre>`` (escaped like everything else)."""
    return h("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def table(head: Iterable[str], rows: Iterable[Iterable[Any]], *, empty: str = "none") -> Html:
    """A table; cells are escaped unless they are ``Html``."""
    body = [h("<tr>{}</tr>", join(h("<td>{}</td>", c) for c in r)) for r in rows]
    if not body:
        return h('<p class="muted">{}</p>', empty)
    return h("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
             join(h("<th>{}</th>", c) for c in head), join(body))


def box(kind: str, title: Any, text: Any = "") -> Html:
    """A message box: ``kind`` is ``error``, ``ok`` or ``note`` (a constant, not input)."""
    assert kind in ("error", "ok", "note")
    return h('<div class="box {}" role="{}"><strong>{}</strong> {}</div>', kind,
             "alert" if kind == "error" else "status", title, text)


STYLE = Html("""<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;
background:#fafafa}
header{background:#17120f;color:#fff;padding:10px 20px;display:flex;gap:18px;
align-items:center;flex-wrap:wrap}
header a{color:#ffb3c7;text-decoration:none}header .who{margin-left:auto;color:#ddd}
header form{display:inline;margin:0}
main{padding:16px 24px;max-width:1300px}
h1{font-size:22px;margin:8px 0 14px}h2{font-size:17px;margin:22px 0 8px}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0eeee}pre{margin:4px 0;white-space:pre-wrap;word-break:break-all;
background:#f5f5f7;padding:6px;max-width:1100px}
.box{padding:8px 12px;margin:10px 0;border-radius:4px;border:1px solid}
.error{background:#fdecea;border-color:#e0a09a}.ok{background:#e9f7ee;border-color:#9ccfae}
.note{background:#eef3fb;border-color:#a9bfe3}.muted{color:#777}
.entry{background:#fff;border:1px solid #ddd;border-radius:4px;padding:8px 12px;margin:10px 0}
.badge{display:inline-block;padding:0 6px;border-radius:3px;font-weight:600}
.b-ok{background:#d3f0dc}.b-fault{background:#f8d4d0}.b-pending{background:#fbeec2}
label{margin-right:10px}input,select,textarea{font:inherit}textarea{width:100%;max-width:1000px}
form.filters label{display:inline-block;margin:2px 10px 2px 0}
</style>""")
