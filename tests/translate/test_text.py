"""Text repair (ftfy, encoding only): what is repaired, what is never touched, and that it
never raises."""
from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.translate import text as text_module
from gateway.translate.text import TextRepair, repair

#: UTF-8 multi-byte sequences among ISO-8859-1 bytes: the trace of UTF-8 read as ISO-8859-1.
UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                           rb"|[\xf0-\xf4][\x80-\xbf]{3}")


def mojibake(text: str, codec: str = "latin-1") -> str:
    """What an ERP sending UTF-8 in an ISO-8859-1 request makes of ``text``."""
    return text.encode("utf-8").decode(codec)


@pytest.mark.parametrize("sent, meant", [
    ("Ã\u0085sa", "Åsa"),                      # the example: UTF-8 "Åsa" as ISO-8859-1
    ("MalmÃ¶", "Malmö"),
    ("KÃ¸benhavn", "København"),
    ("GrÃ¼ÃŸe", "Grüße"),                     # read as Windows-1252
    ("BjÃ¶rk Ã…sa", "Björk Åsa"),
    ("Åsa GrÃ¼ÃŸe", "Åsa Grüße"),             # right and wrong in one field
    ("MalmÃ\x83Â¶", "Malmö"),                 # mis-read twice
    ("SmÃ¶rgÃ¥stÃ¥rta 12 %", "Smörgåstårta 12 %"),
])
def test_mojibake_is_repaired(sent: str, meant: str) -> None:
    assert repair(sent) == text_module.Repaired(meant)


@pytest.mark.parametrize("right", [
    "SÃO PAULO", "Ærø", "naïve", "Blåbärssylt", "Ã", "ßÆ", "À×Ø", "\x80 Euro", "Ã…sa",
    "ASCII only", "", "Łódź", "東京", "“curly” ﬁ ｆｕｌｌ", "a\u0301", "À\x80",
])
def test_text_already_right_is_never_touched(right: str) -> None:
    """Right text, and what ftfy cannot tell apart from right text ("Ã…sa" alone), stays.
    No other ftfy fix runs: curly quotes, ligatures, full-width letters, decomposed
    accents are the merchant's text."""
    assert repair(right) == text_module.Repaired(right)


#: Text that round-trips through ISO-8859-1 (every character U+0000-U+00FF).
ISO_8859_1 = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=80)


@settings(max_examples=3000)
@given(ISO_8859_1)
def test_iso_8859_1_text_without_mojibake_is_never_touched(value: str) -> None:
    """repair(text) == text for any text that round-trips through ISO-8859-1 and carries
    no mojibake (no UTF-8 sequence among its ISO-8859-1 bytes)."""
    assert value.encode("iso-8859-1").decode("iso-8859-1") == value
    if UTF8_SEQUENCE.search(value.encode("iso-8859-1")):
        return
    assert repair(value).text == value


@settings(max_examples=1000)
@given(st.text(max_size=40))
def test_utf8_read_as_iso_8859_1_comes_back(meant: str) -> None:
    """Mojibake of any text is repaired to that text (repaired in turn when it was itself
    mojibake), or left as received when ftfy cannot tell it from right text; never turned
    into anything else."""
    sent = mojibake(meant)
    assert repair(sent).text in (meant, sent, repair(meant).text)


@settings(max_examples=3000)
@given(st.one_of(st.text(), ISO_8859_1,
                 st.text(alphabet=st.sampled_from("ÃÂâ€™œ\x80\x85\x9d¤¶¸©Å ÐÑ\ud800a"),
                         max_size=30)))
@example("Â \ud800Â  ")  # a lone surrogate beside mojibake: ftfy raised inside
def test_repair_never_raises(value: str) -> None:
    result = repair(value)
    assert isinstance(result.text, str) and result.error is None


def test_a_failing_repair_lets_the_original_through_with_the_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Should ftfy itself fail (a bug in a new version), the text goes on as received and
    the error is kept for the journal note."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("ftfy broke")
    monkeypatch.setattr(text_module.ftfy, "fix_encoding_and_explain", broken)
    assert repair("Ã\u0085sa") == text_module.Repaired("Ã\u0085sa", "RuntimeError: ftfy broke")
    note = TextRepair("dlv_addr.city", "Ã\u0085sa", "Ã\u0085sa", "fix",
                      "RuntimeError: ftfy broke").note
    assert note == ("text repair (fix): dlv_addr.city could not be checked "
                    "(RuntimeError: ftfy broke); sent as received")


def test_the_note_names_the_field_with_the_text_before_and_after() -> None:
    r = TextRepair("goods_list[1].title", "Ã\u0085sa", "Åsa", "report")
    assert r.label == "goods_list.title"
    assert r.note == ("text repair (report): goods_list[1].title 'Ã\\x85sa' → 'Åsa', "
                      "sent as received")
    assert TextRepair("description", "MalmÃ¶", "Malmö", "fix").note.endswith(
        "'MalmÃ¶' → 'Malmö', sent repaired")
