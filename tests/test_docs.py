"""Documentation that is generated from the code is current, and the layout section of
docs/architecture.md is the package tree."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.binding import mermaid
from gateway.calls import REGISTRY
from gateway.calls.registry import CallRegistry, RegistryError
from gateway.tools import docs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def generated(doc: str) -> str:
    """The block between the ``generated`` markers of ``docs/<doc>``."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    found = re.search(r"<!-- generated: binding [^>]*-->\n\n```mermaid\n(.*?)\n```\n\n"
                      r"<!-- end generated: binding -->", text, re.S)
    assert found, f"docs/{doc} has no generated block"
    return found.group(1)


def test_the_binding_diagram_is_the_binding_table() -> None:
    """docs/architecture.md draws exactly ``gateway.binding.TRANSITIONS``: regenerate with
    ``python -m gateway.tools.docs``."""
    assert generated("architecture.md") == mermaid()


def test_generated_documentation_is_current() -> None:
    """docs/translation.md (the call registry), the configuration and metrics references of
    docs/operations.md: regenerate with ``python -m gateway.tools.docs``."""
    assert docs.update(DOCS, write=False) == []


def test_the_check_mode_names_a_stale_block(tmp_path: Path) -> None:
    """``--check`` writes nothing and exits 1 naming the stale block; the writing mode
    brings it back, and a block no document holds is an error, not a silent skip."""
    for path in DOCS.glob("*.md"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    target = tmp_path / "translation.md"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("## cancel_reservation\n", "## cancel_reservation\n\nedited\n"),
                      encoding="utf-8")
    assert docs.update(tmp_path, write=False) == ["translation.md: calls"]
    assert "edited" in target.read_text(encoding="utf-8")
    assert docs.update(tmp_path, write=True) == ["translation.md: calls"]
    assert target.read_text(encoding="utf-8") == text
    (tmp_path / "operations.md").unlink()
    with pytest.raises(ValueError, match="configuration"):
        docs.update(tmp_path, write=False)


def test_the_documented_command_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.tools.docs", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_call_section_shows_what_explain_prints() -> None:
    """The generated section of each call carries its summary and every declared
    difference, the text ``explain`` prints after a plan."""
    text = (DOCS / "translation.md").read_text(encoding="utf-8")
    for spec in [*REGISTRY.served.values(), *REGISTRY.internal.values()]:
        section = text.split(f"\n## {spec.name}\n", 1)[1].split("\n## ", 1)[0]
        assert docs.prose(spec.summary) in section
        for difference in spec.differences:
            assert f"- {docs.prose(difference)}" in section


def test_prose_escapes_tags_but_not_code() -> None:
    assert docs.prose("→ <int> and `<int>`") == "→ &lt;int&gt; and `<int>`"
    assert docs.prose("rules (docs/order-management.md#idempotency).") == (
        "rules ([docs/order-management.md#idempotency](order-management.md#idempotency)).")


def test_a_call_must_say_how_v2_and_rest_differ() -> None:
    spec = REGISTRY.spec("activate")
    for bad in ((), ("",), ("two\nlines",), ("same", "same")):
        with pytest.raises(RegistryError, match="differ"):
            CallRegistry(served=[dataclasses.replace(spec, differences=bad)], not_offered=())


# -- the layout section ----------------------------------------------------------------------


def _packages() -> set[str]:
    return {p.parent.relative_to(ROOT).as_posix() + "/"
            for p in (ROOT / "gateway").rglob("__init__.py") if "__pycache__" not in p.parts}


def _listed() -> list[str]:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `(gateway/(?:[\w/]+/)?)`:", section, re.M)


def test_the_layout_lists_every_package_once() -> None:
    """One line per package of ``gateway/``: a package missing from docs/architecture.md's
    layout, or one listed that does not exist, fails (moving modules means updating it)."""
    listed = _listed()
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    assert set(listed) == _packages(), (
        f"missing from the layout: {sorted(_packages() - set(listed))}; "
        f"listed but not packages: {sorted(set(listed) - _packages())}")


def test_the_layout_names_only_modules_that_exist() -> None:
    """A module the layout names (``app.py``, ``docs.py``...) is a file of the package its
    line describes: a module moved or renamed without the layout following fails."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    missing = []
    for entry in re.split(r"\n- ", section)[1:]:
        entry = entry.split("\n\n", 1)[0]  # the paragraph after the list is not an entry
        package = re.match(r"`(gateway/(?:[\w/]+/)?)`:", entry)
        if package is None:
            continue
        for module in re.findall(r"`(\w+\.py)`", entry):
            if not (ROOT / package.group(1) / module).is_file():
                missing.append(package.group(1) + module)
    assert not missing, f"the layout names modules that do not exist: {missing}"
