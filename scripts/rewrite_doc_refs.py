"""Rewrite references to documents as a reference map says (issue 19).

Usage::

    python scripts/rewrite_doc_refs.py MAP.tsv [--root DIR] [--check]

``MAP.tsv`` has one reference per line, ``path:line<TAB>old text<TAB>new reference``; lines
that are empty or start with ``#`` are comments. ``old text`` is replaced by ``new
reference`` (a document path and heading anchor, ``docs/legacy-protocol.md#digests``); the
two characters backslash-n in ``old text`` stand for a line break plus the next line's
indentation (and a comment's leading ``#``). In Markdown files the reference is written as a
relative link, ``[docs/legacy-protocol.md#digests](../docs/legacy-protocol.md#digests)`` in a
file one folder down, so it works when the file is read on its own. In Python files, a
comment or docstring paragraph that a rewrite made longer than 100 characters is re-wrapped
from that line to the paragraph's end (``--no-reflow`` leaves it); lines the script cannot
re-wrap safely are listed.

Why the map is applied by a script, after every branch is merged: other branches move and
edit the same files, so a line number may no longer be right. Each row is looked for on its
line first; failing that, it is matched by rank among the occurrences of its old text in the
file (when the map and the file have as many occurrences, their order is what survives
edits elsewhere), and a file that was moved is found by its name. Anything that cannot be
placed exactly is reported and nothing at all is written (exit status 1). A row whose new
reference is already in place is skipped, so running the script twice is harmless.
``--check`` reports what would change and writes nothing.

Pure standard library, so it runs before the project is installed.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

#: Lines longer than this after a rewrite are listed, to be reflowed by hand.
LINE_LIMIT = 100
_BREAK = "\\n"
_CONTINUATION = r"[ \t]*\n[ \t]*(?:#+:?[ \t]?)?[ \t]*"


@dataclass(frozen=True)
class Row:
    """One reference of the map."""

    number: int  # line of the map file, for messages
    path: str
    line: int
    old: str
    new: str

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(_CONTINUATION.join(re.escape(p) for p in self.old.split(_BREAK)))


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str
    row: Row


def read_map(path: Path) -> list[Row]:
    """The rows of a map file; a malformed row raises ``ValueError`` naming its line."""
    rows = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 3 tab-separated fields, got "
                             f"{len(fields)}")
        where, old, new = fields
        file, sep, line = where.rpartition(":")
        if not sep or not line.isdigit() or not old or not new:
            raise ValueError(f"{path}:{number}: expected path:line, old text, new reference")
        rows.append(Row(number, file, int(line), old, new))
    return rows


def rendered(row: Row, file: Path, root: Path) -> str:
    """The new reference as it is written in ``file``: a relative link in Markdown."""
    if file.suffix != ".md":
        return row.new
    target, sep, anchor = row.new.partition("#")
    relative = Path(os.path.relpath(root / target, file.parent)).as_posix()
    return f"[{row.new}]({relative}{sep}{anchor})"


def locate_file(row: Row, root: Path) -> Path | None:
    """The file a row names, or the one file of that name that still holds its old text
    (another branch moved it)."""
    file = root / row.path
    if file.is_file():
        return file
    name = Path(row.path).name
    found = [p for p in root.rglob(name)
             if ".git" not in p.parts and ".venv" not in p.parts and p.is_file()
             and row.pattern.search(p.read_text(encoding="utf-8"))]
    return found[0] if len(found) == 1 else None


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts += [m.end() for m in re.finditer("\n", text)]
    return starts


def plan_file(file: Path, rows: list[Row], root: Path) -> tuple[list[Edit], list[str], list[str]]:
    """The edits for one file, notes (rows found elsewhere or already applied), problems.

    A group of rows with the same old text is placed on the lines the map names when every
    row's line holds an occurrence; otherwise by rank, when the file has exactly as many
    occurrences as the map has rows (lines moved, their order did not); otherwise refused.
    An occurrence inside a longer old text of another row is not one.
    """
    text = file.read_text(encoding="utf-8")
    starts = _line_starts(text)
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.line):
        groups[row.old].append(row)
    spans = {old: [(m.start(), m.end()) for m in group[0].pattern.finditer(text)]
             for old, group in groups.items()}

    def inside_longer(old: str, span: tuple[int, int]) -> bool:
        return any(len(other) > len(old) and a <= span[0] and span[1] <= b
                   for other, found in spans.items() for a, b in found)

    edits: list[Edit] = []
    notes: list[str] = []
    problems: list[str] = []
    for old, group in groups.items():
        found = [span for span in spans[old] if not inside_longer(old, span)]
        placed: list[tuple[int, int]] = []
        for row in group:
            begin = starts[row.line - 1] if 1 <= row.line <= len(starts) else -1
            end = starts[row.line] if row.line < len(starts) else len(text) + 1
            here = [span for span in found if begin <= span[0] < end and span not in placed]
            if not here:
                break
            placed.append(here[0])
        else:
            edits += [Edit(a, b, rendered(row, file, root), row)
                      for row, (a, b) in zip(group, placed)]
            continue
        if not found and all(rendered(r, file, root) in text for r in group):
            notes += [f"{r.path}:{r.line}: already {r.new}" for r in group]
        elif len(found) == len(group):
            for row, (a, b) in zip(group, found):
                edits.append(Edit(a, b, rendered(row, file, root), row))
                line = text.count("\n", 0, a) + 1
                if line != row.line:
                    notes.append(f"{row.path}:{row.line}: found on line {line}")
        else:
            problems += [f"map line {r.number}: {r.path}:{r.line}: {r.old!r} is not on that "
                         f"line, and the file has {len(found)} occurrence(s) for {len(group)} "
                         "row(s)" for r in group]
    edits.sort(key=lambda e: e.start)
    for before, after in zip(edits, edits[1:]):
        if after.start < before.end:
            problems.append(f"map lines {before.row.number} and {after.row.number}: "
                            f"{file.name}: the two old texts overlap")
    return edits, notes, problems


def apply(text: str, edits: list[Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[:edit.start] + edit.text + text[edit.end:]
    return text


_RULE = re.compile(r"^(?P<head>[ \t]*#+ --.*?) -{3,}$")
_MARKER = re.compile(r"^(?P<indent>[ \t]*)(?P<marker>#+:?[ \t]|#+$)?")
_OPENING = re.compile(r'^[ \t]*(?:[rRbBuU]{0,2})"""')
_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:$")
_BULLET = re.compile(r"^(?:[*\-\u2022] |\d+\. )")


def _prefix(line: str) -> str:
    """A line's indentation and comment marker (``"    "``, ``"#: "``, ``"    # "``)."""
    m = _MARKER.match(line)
    assert m is not None
    return m.group("indent") + (m.group("marker") or "")


def _paragraph_end(lines: list[str], first: int, prefix: str, opening: bool) -> int:
    """The index after the last line of the comment or docstring paragraph that starts at
    ``first`` (continuation lines have exactly ``prefix``; a blank line, a bullet, a
    ``Section:`` line, deeper indentation or the docstring's end stops it)."""
    head = lines[first].rstrip()
    if head.endswith('"""') and (not opening or head.count('"""') == 2):
        return first + 1
    j = first + 1
    while j < len(lines):
        line = lines[j]
        content = line[len(prefix):].rstrip()
        if (not line.startswith(prefix) or _prefix(line) != prefix or not content
                or content == '"""' or _BULLET.match(content) or _SECTION.match(content)
                or '"""' in content[:-3]):
            break
        j += 1
        if content.endswith('"""'):
            break
    return j


def reflow(text: str, needles: list[str], limit: int = LINE_LIMIT) -> tuple[str, list[int]]:
    """Re-wrap the Python comment or docstring paragraphs whose lines holding one of
    ``needles`` (the new references) are longer than ``limit``; the numbers of such lines
    that could not be re-wrapped (code, a word longer than the line) are returned."""
    lines = text.split("\n")
    unfixed: list[int] = []

    def eligible(i: int) -> bool:
        return len(lines[i]) > limit and any(n in lines[i] for n in needles)

    i = len(lines) - 1
    while i >= 0:
        if not eligible(i):
            i -= 1
            continue
        line = lines[i]
        rule = _RULE.match(line)
        if rule:
            head = rule.group("head")  # a "# -- section ----" rule: shorten its dashes
            dashes = max(3, limit - 8 - len(head) - 1)
            lines[i] = head + " " + "-" * dashes if len(head) + 1 + dashes <= limit else head
            i -= 1
            continue
        stripped = line.lstrip()
        in_comment = stripped.startswith("#")
        in_docstring = _OPENING.match(line) or _inside_docstring(lines, i)
        if not (in_comment or in_docstring):
            unfixed.append(i + 1)
            i -= 1
            continue
        opening = _OPENING.match(line)
        first_prefix = opening.group(0) if opening else _prefix(line)
        rest_prefix = line[:len(line) - len(stripped)] if opening else _prefix(line)
        end = _paragraph_end(lines, i, rest_prefix, opening is not None)
        words = " ".join([line[len(first_prefix):]] +
                         [ln[len(rest_prefix):] for ln in lines[i + 1:end]]).split()
        wrapped = textwrap.wrap(" ".join(words), width=limit, initial_indent=first_prefix,
                                subsequent_indent=rest_prefix, break_long_words=False,
                                break_on_hyphens=False)
        if any(len(w) > limit for w in wrapped):
            unfixed.append(i + 1)
        lines[i:end] = wrapped
        i -= 1
    return "\n".join(lines), sorted(unfixed)


def _inside_docstring(lines: list[str], index: int) -> bool:
    """Whether line ``index`` is inside a triple-quoted string (counting the quotes above)."""
    count = sum(ln.count('"""') for ln in lines[:index])
    return count % 2 == 1


def long_lines(text: str, needles: list[str], limit: int = LINE_LIMIT) -> list[int]:
    """Numbers of the lines holding a new reference that are longer than ``limit``."""
    return [n for n, line in enumerate(text.split("\n"), start=1)
            if len(line) > limit and any(x in line for x in needles)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("map", type=Path, help="the reference map (TSV)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the repository to rewrite (default: this script's)")
    parser.add_argument("--check", action="store_true",
                        help="report what would change, write nothing")
    parser.add_argument("--no-reflow", action="store_true",
                        help="leave lines a rewrite made too long as they are")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        rows = read_map(args.map)
    except (OSError, ValueError) as e:
        print(f"rewrite_doc_refs: {e}", file=sys.stderr)
        return 2
    by_file: dict[Path, list[Row]] = defaultdict(list)
    problems: list[str] = []
    for row in rows:
        file = locate_file(row, root)
        if file is None:
            problems.append(f"map line {row.number}: {row.path}: no such file (and no single "
                            "moved copy holds the old text)")
        else:
            by_file[file].append(row)
    planned: dict[Path, list[Edit]] = {}
    notes: list[str] = []
    for file, file_rows in sorted(by_file.items()):
        edits, done, trouble = plan_file(file, file_rows, root)
        planned[file] = edits
        notes += done
        problems += trouble
    for note in notes:
        print(f"note: {note}")
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"rewrite_doc_refs: {len(problems)} problem(s); nothing written", file=sys.stderr)
        return 1
    count = sum(len(e) for e in planned.values())
    for file, edits in planned.items():
        if not edits:
            continue
        new_text = apply(file.read_text(encoding="utf-8"), edits)
        relative = file.relative_to(root).as_posix()
        needles = sorted({e.text for e in edits})
        if file.suffix == ".py" and not args.no_reflow:
            new_text, _ = reflow(new_text, needles)
        if file.suffix == ".py":
            for line in long_lines(new_text, needles):
                print(f"reflow: {relative}:{line} is longer than {LINE_LIMIT} characters")
        if not args.check:
            file.write_text(new_text, encoding="utf-8")
    verb = "would rewrite" if args.check else "rewrote"
    print(f"{verb} {count} reference(s) in {sum(1 for e in planned.values() if e)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
