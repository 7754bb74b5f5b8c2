"""Documentation that is generated from the code is current."""
from __future__ import annotations

import re
from pathlib import Path

from gateway.binding import mermaid

DOCS = Path(__file__).resolve().parents[1] / "docs"


def generated(doc: str) -> str:
    """The block between the ``generated`` markers of ``docs/<doc>``."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    found = re.search(r"<!-- generated from [^>]*-->\n```mermaid\n(.*?)\n```\n<!-- end generated -->",
                      text, re.S)
    assert found, f"docs/{doc} has no generated block"
    return found.group(1)


def test_the_binding_diagram_is_the_binding_table() -> None:
    """docs/architecture.md draws exactly ``gateway.binding.TRANSITIONS``: regenerate with
    ``python -c 'from gateway.binding import mermaid; print(mermaid())'``."""
    assert generated("architecture.md") == mermaid()
