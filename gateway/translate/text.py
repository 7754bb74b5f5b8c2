"""Mis-encoded text (mojibake) in what merchants send, found and repaired with ftfy.

Why: the legacy SDKs demanded ISO-8859-1, and an ERP that hands them UTF-8 bytes turns
"Åsa" into "Ã\\x85sa"; v2 printed that on the invoice, Order Management stores it as sent.
ftfy (made for exactly this) detects it; this module only narrows what it may do:

- only the *encoding* repair runs (ftfy's ``fix_encoding``): no quote uncurling, no
  ligature or width changes, no HTML unescaping, no Unicode normalisation, no control
  character removal: those change text that is right;
- a repair is accepted only where the received text is the UTF-8 bytes of the repaired
  text read as ISO-8859-1 or Windows-1252, layer by layer (text mis-decoded twice is
  repaired twice). Anything else ftfy might guess (another code page, a "lossy" sequence,
  C1 controls taken as Windows-1252) leaves the text as received.

So text that round-trips through ISO-8859-1 and holds no UTF-8 sequence read as
ISO-8859-1 is never touched: "SÃO PAULO", "Ærø" and "naïve" stay as they are (a property
test checks it over every such text). And the repair never raises: whatever goes wrong,
the text goes on as received, with the error for the journal note.

Pure: no clock, no I/O. What to repair in each legacy call, and what the modes do, is
:mod:`gateway.calls.text_repair`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Final

import ftfy
import ftfy.bad_codecs  # noqa: F401 - registers "sloppy-windows-1252"
from ftfy import TextFixerConfig
from ftfy.fixes import decode_inconsistent_utf8

#: ftfy's encoding repair and nothing else (every other fix changes text that is right).
_CONFIG: Final = TextFixerConfig(
    unescape_html=False, remove_terminal_escapes=False, fix_encoding=True,
    restore_byte_a0=False, replace_lossy_sequences=False, decode_inconsistent_utf8=True,
    fix_c1_controls=False, fix_latin_ligatures=False, fix_character_width=False,
    uncurl_quotes=False, fix_line_breaks=False, fix_surrogates=False,
    remove_control_chars=False, normalization=None, explain=True)
#: What the text was wrongly read as: the legacy protocol's ISO-8859-1, and the Windows
#: code page an ERP on Windows reads it as.
_READ_AS: Final = ("latin-1", "sloppy-windows-1252", "windows-1252")
#: What the bytes really were (ftfy says "utf-8-variants" whenever 0xC0 or 0xED occurs;
#: the replay decodes strict UTF-8 either way).
_REALLY: Final = ("utf-8", "utf-8-variants")
_INDEX: Final = re.compile(r"\[\d+\]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: How every text repair note begins (the console lists them apart).
NOTE_PREFIX: Final = "text repair ("


@dataclass(frozen=True)
class Repaired:
    """The text to use (the repaired one, or the original) and why nothing was repaired
    when the repair itself failed."""

    text: str
    error: str | None = None


def repair(text: str) -> Repaired:
    """``text`` with its mojibake repaired; the original when there is none, when ftfy
    proposes anything but a UTF-8 re-reading, or when anything fails (``error`` says
    what). Never raises."""
    try:
        if not isinstance(text, str) or text.isascii() or _SURROGATE.search(text):
            return Repaired(text)  # a lone surrogate is no UTF-8 read wrongly: nothing to do
        fixed = ftfy.fix_encoding_and_explain(text, _CONFIG)
        if fixed.text == text:
            return Repaired(text)
        replayed = _replay(text, fixed.explanation or [])
        return Repaired(replayed if replayed is not None else text)
    except Exception as e:  # noqa: BLE001 - a repair must never fail a call
        return Repaired(text, f"{type(e).__name__}: {e}"[:200])


def _replay(text: str, plan: list[tuple[str, str]]) -> str | None:
    """Apply ftfy's plan step by step, each step checked to be a UTF-8 re-reading of
    ISO-8859-1/Windows-1252 text; None as soon as one is anything else."""
    steps = [tuple(step) for step in plan]
    current, i = text, 0
    while i < len(steps):
        kind, name = steps[i]
        if kind == "encode" and name in _READ_AS and i + 1 < len(steps) \
                and steps[i + 1][0] == "decode" and steps[i + 1][1] in _REALLY:
            try:  # strict UTF-8: not Java's or CESU-8's variants ("À\x80" is no NUL)
                current = current.encode(name).decode("utf-8")
            except UnicodeError:
                return None
            i += 2
        elif (kind, name) == ("apply", "decode_inconsistent_utf8"):
            fixed = decode_inconsistent_utf8(current)
            if not _reread_pieces(current, fixed):
                return None
            current = fixed
            i += 1
        else:
            return None
    return current


def _reread_pieces(before: str, after: str) -> bool:
    """Whether every piece that differs between ``before`` and ``after`` is the UTF-8
    bytes of the new piece read as ISO-8859-1 or Windows-1252 (ftfy repaired mojibake
    inside otherwise right text, and nothing else)."""
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, before, after,
                                               autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag != "replace":
            return False
        utf8 = after[j1:j2].encode("utf-8")
        if not any(_encodes_to(before[i1:i2], codec, utf8) for codec in _READ_AS):
            return False
    return True


def _encodes_to(text: str, codec: str, expected: bytes) -> bool:
    try:
        return text.encode(codec) == expected
    except UnicodeEncodeError:
        return False


@dataclass(frozen=True)
class TextRepair:
    """Mis-encoded text in one field of a call, for the journal note and the metric.

    ``field`` names the legacy field (``dlv_addr.city``, ``goods_list[1].title``);
    ``mode`` the merchant's ``text_repair`` (``report``: sent as received; ``fix``: sent
    repaired); ``error``: the repair failed and the text went as received.
    """

    field: str
    before: str
    after: str
    mode: str
    error: str | None = None

    @property
    def label(self) -> str:
        """The field without positions (``goods_list.title``): the metric's label."""
        return _INDEX.sub("", self.field)

    @property
    def note(self) -> str:
        if self.error is not None:
            return (f"{NOTE_PREFIX}{self.mode}): {self.field} could not be checked "
                    f"({self.error}); sent as received")
        done = "sent repaired" if self.mode == "fix" else "sent as received"
        return f"{NOTE_PREFIX}{self.mode}): {self.field} {self.before!r} → {self.after!r}, {done}"
