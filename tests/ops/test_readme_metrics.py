"""The README's metric table names exactly the metrics `/metrics` serves, with their labels."""
from __future__ import annotations

import re
from pathlib import Path

from gateway.metrics import Metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metric_table_matches_the_registry() -> None:
    text = README.read_text(encoding="utf-8").split("## Running in production", 1)[1]
    text = text.split("\n## ", 1)[0]
    named: dict[str, set[str]] = {}
    for cell in re.findall(r"^\| (`klarna_gateway_[^|]+) \|", text, re.M):
        for name, labels in re.findall(r"`(klarna_gateway_\w+)(?:\{([\w,]+)\})?`", cell):
            named[name] = set(labels.split(",")) if labels else set()
    served: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if hasattr(metric, "_labelnames"):
            suffix = "_total" if metric._type == "counter" else ""
            served[metric._name + suffix] = set(metric._labelnames)
    assert named == served
