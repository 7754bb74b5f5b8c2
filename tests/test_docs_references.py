"""References to documents name files and headings that exist in this repository.

Code and tests explain themselves by pointing at documentation ("why: see
``docs/order-management.md#order-lines``"). A pointer at a document the repository does not
have, or at a heading that was renamed, leaves a newcomer with nothing to follow, so:

* a ``.md`` path (relative to the file, to the repository, or a bare name in ``docs/``) must
  be a file, and its ``#anchor`` a heading of that file (GitHub's anchors, which MkDocs
  produces too for plain headings); a quoted heading after a path (``README.md``, "Seeded
  mode") must exist too;
* numbered sections (the section sign) are refused outright, except an RFC's: they name
  sections of documents outside the repository;
* so are the names of the outside documents code once cited: the research notes, the style
  brief and the specification folder.

The scan covers ``gateway/``, ``tests/`` and ``scripts/`` (except copied data under
``tests/data/``, which is never edited, and this file, whose examples are bad references on
purpose), and separately the links between the files of ``docs/``. The checker itself is
tested on scratch trees.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

THIS = Path(__file__).resolve()
ROOT = THIS.parents[1]
SCANNED = ("gateway", "tests", "scripts")
#: Copied data (OpenAPI files, wire captures): kept byte for byte, never checked.
COPIED = ("tests/data/vendor", "tests/data/captures")
TEXT_SUFFIXES = frozenset({".py", ".md", ".txt", ".toml", ".cfg", ".conf", ".ini", ".lua",
                           ".service", ".socket", ".mako", ".yml", ".yaml", ".sh", ".csv"})

SECTION_SIGN = "\u00a7"
_RFC_BEFORE = re.compile(r"RFC \d+ $")
_OUTSIDE = (
    (re.compile(r"\bpain-points\b"), "the research notes are not in the repository"),
    (re.compile(r"\bSTYLE rule\b"), "the style brief is not in the repository"),
    (re.compile(r"(?<![\w/.-])spec/[\w./-]*"), "the specification folder is not in the "
                                                 "repository"),
)
_DOC_REF = re.compile(r"(?<![\w/.:~-])((?:\.{1,2}/)*\w[\w./-]*\.md)(?!\w)(?:#([\w-]+))?")
_QUOTED_HEADING = re.compile(r"((?:\.{1,2}/)*\w[\w./-]*\.md)(?!\w)`{0,2},? \"([^\"\n]+)\"")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation other than ``-``/``_`` dropped,
    spaces as ``-`` (inline code and links keep their text)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    """The Markdown headings of ``path``, outside fenced code blocks."""
    found = []
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            found.append(m.group(1))
    return found


def anchors(path: Path) -> list[str]:
    """Every heading's anchor, duplicates numbered as GitHub numbers them (``-1``, ``-2``)."""
    seen: dict[str, int] = {}
    result = []
    for heading in headings(path):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.append(base if count == 0 else f"{base}-{count}")
    return result


def resolve(reference: str, source: Path, root: Path) -> Path | None:
    """The repository file a ``.md`` reference in ``source`` names, or ``None``."""
    candidates = [source.parent / reference, root / reference]
    if "/" not in reference:
        candidates.append(root / "docs" / reference)
    for candidate in candidates:
        try:
            inside = candidate.resolve().relative_to(root.resolve())
        except ValueError:
            continue  # a path out of the repository
        if (root / inside).is_file():
            return root / inside
    return None


def check_text(text: str, source: Path, root: Path) -> list[Problem]:
    """Every bad reference in one file's text."""
    rel = source.relative_to(root).as_posix()
    problems = []

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    for m in re.finditer(SECTION_SIGN, text):
        if not _RFC_BEFORE.search(text[max(0, m.start() - 12):m.start()]):
            problems.append(Problem(rel, line_of(m.start()), "a numbered section of a document "
                                    "outside the repository"))
    for pattern, why in _OUTSIDE:
        for m in pattern.finditer(text):
            problems.append(Problem(rel, line_of(m.start()), f"{m.group(0)!r}: {why}"))
    for m in _DOC_REF.finditer(text):
        reference, anchor = m.group(1), m.group(2)
        target = resolve(reference, source, root)
        if target is None:
            problems.append(Problem(rel, line_of(m.start()),
                                    f"{reference}: no such file in the repository"))
        elif anchor is not None and anchor not in anchors(target):
            problems.append(Problem(rel, line_of(m.start()),
                                    f"{reference}#{anchor}: no such heading"))
    for m in _QUOTED_HEADING.finditer(text):
        target = resolve(m.group(1), source, root)
        if target is not None and slug(m.group(2)) not in anchors(target):
            problems.append(Problem(rel, line_of(m.start()),
                                    f"{m.group(1)}, {m.group(2)!r}: no such heading"))
    return problems


def files_under(root: Path, folders: tuple[str, ...]) -> list[Path]:
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if (path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in
                    path.parts and not rel.startswith(COPIED) and path.resolve() != THIS):
                found.append(path)
    return found


def check_tree(root: Path, folders: tuple[str, ...]) -> list[Problem]:
    problems = []
    for path in files_under(root, folders):
        problems += check_text(path.read_text(encoding="utf-8"), path, root)
    return problems


def _report(problems: list[Problem]) -> str:
    return f"{len(problems)} bad reference(s):\n" + "\n".join(str(p) for p in problems)


# -- the repository -------------------------------------------------------------------------


def test_references_in_code_tests_and_scripts_exist() -> None:
    problems = check_tree(ROOT, SCANNED)
    assert not problems, _report(problems)


def test_links_between_docs_exist() -> None:
    problems = check_tree(ROOT, ("docs",))
    assert not problems, _report(problems)


def test_every_doc_heading_has_its_own_anchor() -> None:
    """References use anchors: two headings of one document with the same anchor would make
    one of them reachable only by a number that changes when a heading is added above."""
    for path in sorted((ROOT / "docs").glob("*.md")):
        found = [slug(h) for h in headings(path)]
        repeated = sorted({a for a in found if found.count(a) > 1})
        assert not repeated, f"{path.name}: headings share anchors {repeated}"


# -- the checker ----------------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


DOC = "# Title\n\n## Order lines\n\n```\n## not a heading\n```\n\n## Order lines\n"


def test_slug_is_githubs_anchor() -> None:
    assert slug("Where the gateway follows the SDKs") == "where-the-gateway-follows-the-sdks"
    assert slug("extend_expiry_date") == "extend_expiry_date"
    assert slug("REST refusals as faults") == "rest-refusals-as-faults"
    assert slug("The `update` struct (v2)") == "the-update-struct-v2"
    assert slug("Klarna's rules, in [short](x.md)") == "klarnas-rules-in-short"


def test_anchors_skip_code_blocks_and_number_duplicates(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"docs/a.md": DOC})
    assert anchors(root / "docs" / "a.md") == ["title", "order-lines", "order-lines-1"]


def test_checker_accepts_references_that_exist(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "docs/a.md": DOC,
        "gateway/sandbox/README.md": ("# Sandbox\n\n## Seeded mode\n\nSee [it]"
                                      "(../../docs/a.md#order-lines) and [here](#seeded-mode).\n"),
        "gateway/x.py": '"""Why: docs/a.md#order-lines; docs/a.md#order-lines-1; a.md here.\n'
                        '(``gateway/sandbox/README.md``, "Seeded mode"); RFC 9110 '
                        f'{SECTION_SIGN}7.6.1; hashlib.md5."""\n',
        "gateway/a.md": "# A\n",
        "tests/t.py": 'DOC = ROOT / "docs" / "a.md"\n',
    })
    assert check_tree(root, ("gateway", "tests")) == []


def test_checker_names_each_bad_reference(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "docs/a.md": DOC,
        "gateway/x.py": (f'"""Rounding per translation.md {SECTION_SIGN}4.\n'
                         'Why: see docs/a.md#order-line, and ../../etc/b.md.\n'
                         'Burned before (pain-points 11), STYLE rule 4.\n'
                         f'Copied from spec/vendor/ long ago; ({SECTION_SIGN}2.3).\n'
                         '(``docs/a.md``, "Seeded mode")"""\n'),
        "tests/data/vendor/copied.yml": f"# {SECTION_SIGN}1 of someone else's translation.md\n",
    })
    problems = [str(p) for p in check_tree(root, ("gateway", "tests"))]
    assert problems == [
        "gateway/x.py:1: a numbered section of a document outside the repository",
        "gateway/x.py:4: a numbered section of a document outside the repository",
        "gateway/x.py:3: 'pain-points': the research notes are not in the repository",
        "gateway/x.py:3: 'STYLE rule': the style brief is not in the repository",
        "gateway/x.py:4: 'spec/vendor/': the specification folder is not in the repository",
        "gateway/x.py:1: translation.md: no such file in the repository",
        "gateway/x.py:2: docs/a.md#order-line: no such heading",
        "gateway/x.py:2: ../../etc/b.md: no such file in the repository",
        "gateway/x.py:5: docs/a.md, 'Seeded mode': no such heading",
    ]
