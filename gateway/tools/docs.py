"""``python -m gateway.tools.docs [--check]``: the parts of ``docs/`` generated from the code.

Some documentation is a rendering of declarations the code already holds, and drifts the
day someone edits one without the other: what each legacy call becomes in REST and where v2
and REST differ (the call registry, the same text ``explain`` prints), the v2-strict rules,
the calls the gateway does not offer, every configuration key and every metric. Each such
block sits in a hand-written document between two markers::

    <!-- generated: calls (python -m gateway.tools.docs); do not edit -->
    ...
    <!-- end generated: calls -->

``python -m gateway.tools.docs`` rewrites every block in ``docs/*.md``; with ``--check`` it
writes nothing and exits 1 naming each stale block (``tests/test_docs.py`` runs the same
check). Pure rendering: no reactor, no store, no network.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Final

from gateway.binding import mermaid
from gateway.calls import REGISTRY, not_offered, profiles
from gateway.calls.spec import CallSpec, Target
from gateway.config import MERCHANT_KEYS, REQUIRED, GatewaySettings, SandboxSettings
from gateway.metrics import Metrics
from gateway.model import MoneyKind

DOCS: Final = Path(__file__).resolve().parents[2] / "docs"
COMMAND: Final = "python -m gateway.tools.docs"
_BLOCK = re.compile(r"(<!-- generated: ([\w-]+) \(python -m gateway\.tools\.docs\); do not "
                    r"edit -->\n)(.*?)(<!-- end generated: \2 -->)", re.S)
_DOC_LINK = re.compile(r"docs/([\w-]+\.md)#([\w-]+)")
_CODE = re.compile(r"(`[^`]*`)")
#: Where each call's parameters, digest and reply are described.
_PROTOCOL_ANCHOR: Final = {"recurring_order": "kco-v2-recurring-orders"}
PROFILES_ANCHOR: Final = "profiles-default-and-v2-strict"


# -- Markdown helpers ------------------------------------------------------------------------


def prose(text: str) -> str:
    """``text`` as Markdown prose: ``<``/``>`` outside code spans escaped (``<int>`` is not a
    tag), and ``docs/<file>.md#<anchor>`` written as a link relative to ``docs/``."""
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):
        plain = parts[i].replace("<", "&lt;").replace(">", "&gt;")
        parts[i] = _DOC_LINK.sub(r"[docs/\1#\2](\1#\2)", plain)
    return "".join(parts)


def cell(text: str) -> str:
    """``text`` fit for a table cell."""
    return prose(text).replace("|", "\\|")


def table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# -- docs/translation.md ---------------------------------------------------------------------


def _specs() -> list[CallSpec[Any]]:
    """The served calls in registry order, then the internal ones (KCO v2 recurring)."""
    return [*REGISTRY.served.values(), *REGISTRY.internal.values()]


def _names(spec: CallSpec[Any]) -> str:
    return {
        Target.RESERVATION: "a reservation number (rno)",
        Target.INVOICE: "an invoice number (invno)",
        Target.LOOKUP: "a reservation or invoice number, or the merchant's order id "
                       "(its `type` says which)",
        Target.NONE: "no number: it creates an order",
    }.get(spec.target, spec.target.value)


def _moves(spec: CallSpec[Any]) -> str:
    if spec.read_only:
        return "nothing: a read, worked out afresh every time"
    return {MoneyKind.CAPTURE: "a capture", MoneyKind.REFUND: "a refund"}.get(
        spec.money, "no money")


def calls_at_a_glance() -> str:
    rows = ([f"[`{s.name}`](#{s.name})", cell(s.summary)] for s in _specs())
    return "\n".join(table(("call", "in REST → reply"), rows))


def call_section(spec: CallSpec[Any]) -> list[str]:
    """One call's section: what it becomes, what it names and moves, how v2 and REST
    differ (``spec.differences``, as ``explain`` prints them) and its v2-strict rules."""
    anchor = _PROTOCOL_ANCHOR.get(spec.name, spec.name)
    lines = [f"## {spec.name}", "", prose(spec.summary), "",
             f"- Names {_names(spec)}; moves {_moves(spec)}.",
             f"- Parameters, digest and reply: "
             f"[legacy-protocol.md#{anchor}](legacy-protocol.md#{anchor}).", "",
             "Where v2 and REST differ:", ""]
    lines += [f"- {prose(d)}" for d in spec.differences]
    rules = [r for r in profiles.STRICT_RULES if spec.name in r.calls]
    if rules:
        lines += ["", f"Under [`v2-strict`](#{PROFILES_ANCHOR}):", ""]
        lines += [f"- `{r.id}`: {prose(r.v2)}. Default profile: {prose(r.rest)}."
                  for r in rules]
    return lines


def calls() -> str:
    lines: list[str] = []
    for spec in _specs():
        lines += [*call_section(spec), ""]
    return "\n".join(lines).rstrip("\n")


def profile_rules() -> str:
    return "\n".join(table(("rule", "calls", "v2 (and `v2-strict`)", "REST (the default profile)"),
                           ()) + profiles.doc_rows())


def calls_not_offered() -> str:
    return "\n".join(table(("call", "fault", "why"), ()) + not_offered.doc_rows())


# -- docs/operations.md ----------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


_TYPES: Final = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _section_rows(cls: type) -> list[list[str]]:
    rows = []
    for f in fields(cls):
        secret = f.name == "admin_token"  # the one secret of a section (``_section``)
        spellings = (f.name, f"{f.name}_env", f"{f.name}_file") if secret else (f.name,)
        name = ", ".join(f"`{s}`" for s in spellings)
        default = f.default if f.default is not MISSING else None
        rows.append([name, _TYPES[type(default)], f"`{_toml(default)}`",
                     cell(f.metadata["doc"])])
    return rows


def _merchant_rows() -> list[list[str]]:
    rows = []
    for key in MERCHANT_KEYS:
        name = ", ".join(f"`{s}`" for s in key.spellings)
        if key.default is REQUIRED:
            default = "required"
        elif key.default is None:
            default = "none"
        else:
            default = f"`{_toml(key.default)}`"
        rows.append([name, key.type, default, cell(key.doc)])
    return rows


def configuration() -> str:
    head = ("key", "type", "default", "meaning")
    lines = ["A secret key is listed with its three spellings; give one: the value inline, "
             "`_env` (an environment variable's name) or `_file` (a file's path, its trailing "
             "newline stripped).", "",
             "#### `[gateway]`", "", *table(head, _section_rows(GatewaySettings)), "",
             "#### `[[merchants]]`", "",
             "One table per legacy eid.", "",
             *table(head, _merchant_rows()), "",
             "#### `[sandbox]`", "",
             "Only for `klarna-gateway sandbox` and `serve --sandbox`.", "",
             *table(head, _section_rows(SandboxSettings))]
    return "\n".join(lines)


def metrics() -> str:
    rows = ([f"`{m.name}`", m.type, ", ".join(f"`{x}`" for x in m.labels) or "-",
             cell(m.help)] for m in Metrics().catalogue())
    return "\n".join(table(("metric", "type", "labels", "help"), rows))


def binding() -> str:
    """The binding's state diagram, drawn from ``gateway.binding.TRANSITIONS``."""
    return "```mermaid\n" + mermaid() + "\n```"


#: Every generated block by its marker name.
BLOCKS: Final[dict[str, Callable[[], str]]] = {
    "binding": binding,
    "calls-at-a-glance": calls_at_a_glance,
    "profile-rules": profile_rules,
    "calls": calls,
    "calls-not-offered": calls_not_offered,
    "configuration": configuration,
    "metrics": metrics,
}


# -- writing and checking --------------------------------------------------------------------


def render(text: str) -> tuple[str, list[str]]:
    """``text`` with every generated block rendered anew, and the blocks' names."""
    found: list[str] = []

    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in BLOCKS:
            raise KeyError(f"unknown generated block {name!r}")
        found.append(name)
        return m.group(1) + "\n" + BLOCKS[name]() + "\n\n" + m.group(4)
    return _BLOCK.sub(fill, text), found


def update(docs: Path = DOCS, *, write: bool) -> list[str]:
    """Render every block under ``docs``; return the stale ones (``file: block``), writing
    the files when ``write``. Every known block must appear in exactly one file."""
    stale: list[str] = []
    seen: dict[str, str] = {}
    for path in sorted(docs.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        new, names = render(text)
        for name in names:
            if name in seen:
                raise ValueError(f"block {name!r} is in {seen[name]} and {path.name}")
            seen[name] = path.name
        if new != text:
            old_blocks = {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}
            stale += [f"{path.name}: {m.group(2)}" for m in _BLOCK.finditer(new)
                      if old_blocks.get(m.group(2)) != m.group(3)]
            if write:
                path.write_text(new, encoding="utf-8")
    missing = sorted(set(BLOCKS) - set(seen))
    if missing:
        raise ValueError(f"no document holds the block(s) {', '.join(missing)}")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a generated block is stale")
    args = parser.parse_args(argv)
    stale = update(write=not args.check)
    if args.check and stale:
        print(f"stale generated documentation (run {COMMAND}): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    for name in stale:
        print(f"rewrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
