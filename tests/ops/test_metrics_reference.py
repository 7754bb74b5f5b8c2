"""docs/operations.md's metric table names exactly the metrics `/metrics` serves, with their
types and labels (it is generated from the registry; this reads it as a reader would)."""
from __future__ import annotations

import re
from pathlib import Path

from gateway.metrics import Metrics

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_the_metric_table_matches_the_registry() -> None:
    text = OPERATIONS.read_text(encoding="utf-8").split("\n## Metrics", 1)[1]
    text = text.split("\n## ", 1)[0]
    named = {name: (kind, set(re.findall(r"`(\w+)`", labels)))
             for name, kind, labels in re.findall(
                 r"^\| `(klarna_gateway_\w+)` \| (\w+) \| ([^|]+) \|", text, re.M)}
    served: dict[str, tuple[str, set[str]]] = {}
    for metric in vars(Metrics()).values():
        if hasattr(metric, "_labelnames"):
            suffix = "_total" if metric._type == "counter" else ""
            served[metric._name + suffix] = (metric._type, set(metric._labelnames))
    assert named == served
