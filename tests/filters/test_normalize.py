from __future__ import annotations

import pytest

from filters.normalize import fold_char, last_word_open, normalize, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello,   WORLD!", "hello world"),
        ("Crème brûlée", "creme brulee"),
        ("one\nword\nper\nline", "one word per line"),
        ("a-b_c.d|e*f", "a b c d e f"),
        ("ﬁne ＦＵＬＬ", "fine full"),
        ("Har\u200bry Pot\u00adter", "harry potter"),
        ("e\u0301te\u0301", "ete"),
    ],
)
def test_normalize_folds_case_accents_and_separators(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("H4rry P0tt3r", "harry potter"),
        ("h@rry", "harry"),
        ("born in 1987", "born in 1987"),
    ],
)
def test_leet_digits_read_as_letters_only_inside_words_with_letters(
    text: str, expected: str
) -> None:
    assert normalize(text, leet=True) == expected


def test_word_offsets_point_back_into_the_original_text() -> None:
    text = "  Crème,\nBRÛLÉE -- ok "
    ws = words(text, offset=10)
    assert [w.text for w in ws] == ["creme", "brulee", "ok"]
    for w in ws:
        original = text[w.start - 10 : w.end - 10]
        assert "".join(fold_char(c) for c in original) == w.text


@pytest.mark.parametrize(
    ("text", "open_"), [("abc", True), ("abc ", False), ("abc\u200b", True), ("abc.", False)]
)
def test_last_word_is_open_until_a_real_separator(text: str, open_: bool) -> None:
    assert last_word_open(text, words(text)) is open_
