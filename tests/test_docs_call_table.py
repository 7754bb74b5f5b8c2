"""docs/translation.md's call table names every served call, and no call that is not served."""
from __future__ import annotations

import re
from pathlib import Path

from gateway.calls import REGISTRY

TRANSLATION = Path(__file__).resolve().parents[1] / "docs" / "translation.md"


def test_the_call_table_lists_exactly_the_served_calls() -> None:
    text = TRANSLATION.read_text(encoding="utf-8")
    section = text.split("## The calls at a glance", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.M)
    named = {name for cell in first_cells
             for name in re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", cell))}
    assert named == set(REGISTRY.served) | set(REGISTRY.internal)


def test_every_call_has_its_section() -> None:
    """Code and other documents link to ``docs/translation.md#<method>``."""
    headings = re.findall(r"^## (\w+)$", TRANSLATION.read_text(encoding="utf-8"), re.M)
    assert set(REGISTRY.served) | set(REGISTRY.internal) <= set(headings)
