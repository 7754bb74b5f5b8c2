"""The README's call table names every served call, and no call that is not served."""
from __future__ import annotations

import re
from pathlib import Path

from gateway.calls import REGISTRY

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_call_table_lists_exactly_the_served_calls() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The calls", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.M)
    named = {name for cell in first_cells
             for name in re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", cell))}
    assert named == set(REGISTRY.served)
