from __future__ import annotations

import pytest

from filters.normalize import FOLD_TABLE, fold, fold_char, last_word_open, normalize, words


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
        ("straße", "strasse"),
    ],
)
def test_normalize_folds_case_accents_and_separators(text: str, expected: str) -> None:
    assert normalize(text) == expected


#: Letters and digits of other scripts and styles that render like Latin ones.
CONFUSABLES = [
    ("\u041darry", "harry"),  # Cyrillic capital EN
    ("H\u0430rry", "harry"),  # Cyrillic small A
    ("\u0397\u0391\u03a1\u03a1\u03a5", "happy"),  # Greek capitals (rho reads as P)
    ("Hermi\u03bfne", "hermione"),  # Greek omicron
    ("\u210c\U0001d51e\U0001d52f\U0001d52f\U0001d536", "harry"),  # fraktur
    ("\U0001d407\U0001d41a\U0001d42b\U0001d42b\U0001d432", "harry"),  # mathematical bold
    ("\uff28\uff41\uff52\uff52\uff59", "harry"),  # fullwidth
    ("\u0440\u0435\u0455\u0441\u0443", "pescy"),  # Cyrillic er, ie, dze, es, u
    ("\u0399", "i"),  # Greek capital iota reads as I, not TR39's "l"
    ("\u0131\u0261\u0251", "iga"),  # Latin dotless i, script g, alpha
]


@pytest.mark.parametrize(("text", "expected"), CONFUSABLES, ids=[c[1] for c in CONFUSABLES])
def test_confusable_letters_fold_to_their_latin_skeleton(text: str, expected: str) -> None:
    assert normalize(text) == expected


DIGITS = [
    ("\uff14\uff11\uff15", "415"),  # fullwidth
    ("\u0664\u0661\u0665", "415"),  # Arabic-Indic
    ("\u06f4\u06f1\u06f5", "415"),  # extended Arabic-Indic
    ("\u096a\u0967\u096b", "415"),  # Devanagari
    ("\U0001d7d2\U0001d7cf\U0001d7d3", "415"),  # mathematical bold
    ("\u09ea\u09e7\u09eb", "415"),  # Bengali
    ("\u0e54\u0e51\u0e55", "415"),  # Thai
    ("\u2463\u2460\u2464", "415"),  # circled digits
    ("\u2779\u2776\u277a", "415"),  # negative circled digits: a digit value, not decimal
    ("\u136c\u1369\u136d", "415"),  # Ethiopic digits
]


@pytest.mark.parametrize(("text", "expected"), DIGITS, ids=[d[0] for d in DIGITS])
def test_every_script_s_decimal_digits_become_ascii(text: str, expected: str) -> None:
    assert normalize(text) == expected


INVISIBLES = [
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
    "\u034f",  # combining grapheme joiner
    "\u180e",  # Mongolian vowel separator
    "\ufe0f",  # variation selector 16
    "\U000e0101",  # variation selector 18
    "\u3164",  # Hangul filler
    "\u115f",  # Hangul choseong filler
    "\u1160",  # Hangul jungseong filler
    "\uffa0",  # halfwidth Hangul filler
    "\u2800",  # braille blank
    "\u202e",  # right-to-left override
    "\U000e0041",  # tag latin capital A
    "\u2062",  # invisible times
]


@pytest.mark.parametrize("ch", INVISIBLES, ids=[f"U+{ord(c):04X}" for c in INVISIBLES])
def test_invisible_and_filler_characters_vanish_inside_a_word(ch: str) -> None:
    assert fold_char(ch) == ""
    assert normalize(f"41{ch}5 Har{ch}{ch}ry") == "415 harry"


SEPARATORS = ["\u00a0", "\u2003", "\u3000", "\u2014", "\u2013", "\u2212", "\u2028", "\u00b7", "/"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
def test_any_unicode_space_dash_or_punctuation_is_one_word_boundary(sep: str) -> None:
    assert normalize(f"harry{sep}{sep} potter") == "harry potter"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3\u00d74", "3 4"),  # multiplication sign: a TR39 confusable of "x", but a symbol
        ("0 1 m", "0 1 m"),  # ASCII is never remapped (TR39: 0 -> O, 1 -> l, m -> rn)
        ("\u041f\u0440\u0438\u0432\u0435\u0442", "\u043fp\u0438\u0432e\u0442"),
        ("\u6771\u4eac", "\u6771\u4eac"),
    ],
)
def test_what_does_not_look_latin_is_kept(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("H4rry P0tt3r", "harry potter"),
        ("h@rry", "harry"),
        ("born in 1987", "born in 1987"),
        ("born in \u0661\u0669\u0668\u0667", "born in 1987"),
    ],
)
def test_leet_digits_read_as_letters_only_inside_words_with_letters(
    text: str, expected: str
) -> None:
    assert normalize(text, leet=True) == expected


def test_word_offsets_point_back_into_the_original_text() -> None:
    text = "  Crème,\nBRÛLÉE -- ok \u041d\u0430rry \U0001d7d2\u200b2 "
    ws = words(text, offset=10)
    assert [w.text for w in ws] == ["creme", "brulee", "ok", "harry", "42"]
    for w in ws:
        original = text[w.start - 10 : w.end - 10]
        assert "".join(fold_char(c) for c in original) == w.text
    assert text[ws[-1].start - 10 : ws[-1].end - 10] == "\U0001d7d2\u200b2"


def test_fold_table_agrees_with_fold_char_and_fold() -> None:
    sample = "".join(chr(c) for c in range(0x20, 0x3000, 7)) + "\U0001d41a\uac00\u4e00"
    assert fold(sample) == "".join(fold_char(c) for c in sample)
    assert all(FOLD_TABLE[c] == fold_char(c) for c in sample if c in FOLD_TABLE)


@pytest.mark.parametrize(
    ("text", "open_"),
    [("abc", True), ("abc ", False), ("abc\u200b", True), ("abc.", False), ("abc\u2800", True)],
)
def test_last_word_is_open_until_a_real_separator(text: str, open_: bool) -> None:
    assert last_word_open(text, words(text)) is open_


def test_ordinary_text_is_folded_by_the_precomputed_table() -> None:
    # Not a timing assertion (speed belongs in bench/): ordinary text, accents, dashes and
    # fullwidth or mathematical letters never reach the slow path per character.
    text = "The quick brown fox, \u00e9t\u00e9 \u2014 415\u2011555 \uff21\U0001d41a. "
    fold_char.cache_clear()
    words(text * 50)
    assert fold_char.cache_info().misses == 0, "a common character missed the fold table"
