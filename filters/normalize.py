"""Text normalisation that remembers where every character came from.

Filters match on a canonical form but must report spans in the caller's text, so folding is
defined one original character at a time (`fold_char`: one character -> a string, possibly
empty or longer) and every helper here keeps original offsets.

The canonical form of a character, in order:
- invisible and filler characters are removed: Unicode's Default_Ignorable_Code_Point set
  (zero-width space/joiners, soft hyphen, word joiner, bidi controls, variation selectors,
  combining grapheme joiner, Mongolian vowel separator, Hangul fillers U+115F/U+1160/U+3164/
  U+FFA0, tags), every other format character (category Cf) and the braille blank U+2800;
  they do not break a word, so "41\u200b5" is "415";
- every Unicode digit becomes its ASCII digit: decimal digits of every script (Arabic-Indic,
  Devanagari, fullwidth, mathematical bold...) and the other characters with a digit value
  (circled, negative circled, superscript, Ethiopic), so "٤١٥", "４１５" and "❹❶❺" are "415";
- compatibility decomposition (NFKD, the decomposition half of NFKC) with combining marks
  dropped: "ﬁ" -> "fi", "ℌ" -> "h", "é" -> "e";
- Unicode TR39 confusable skeletons from the maintained `confusable-homoglyphs` data (the
  Unicode confusables.txt): a letter or number of another script whose prototype is a Latin
  letter or digit takes that prototype, so Cyrillic "Нarry" and Greek "οmicron" fold to Latin;
  case is folded before and after ("Σ" -> "σ" -> "o"). Symbols and punctuation are not
  skeleton-folded ("×" stays a separator, not an "x"); ASCII characters are never remapped
  (TR39 maps "0" to "O" and "m" to "rn": that would merge digits and letters);
- lower case.
Whatever is not a letter or digit after folding (any Unicode space, dash, punctuation) is a
word boundary, and runs of boundaries collapse into one.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from confusable_homoglyphs.utils import load as _load_confusables_data

#: Digits read as letters inside a word that also has letters ("h4rry" -> "harry"); a word
#: made only of digits ("1987") is left alone.
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"})
_LEET_SYMBOLS = {"@": "a", "$": "s"}

#: Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt) plus the braille blank,
#: which renders as a space but is a symbol.
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_IGNORABLE = frozenset(chr(c) for a, b in _IGNORABLE_RANGES for c in range(a, b + 1))
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})
#: Folded ahead of time: alphabetic scripts, symbols, compatibility and fullwidth forms, and
#: the astral blocks used to disguise letters and digits (mathematical alphanumerics,
#: enclosed and segmented digits). Ideographs, Hangul syllables and private use are left to
#: the cached function: they are large and fold to themselves or to their own jamo.
_PRECOMPUTED = (
    (0x0000, 0x33FF),
    (0xA000, 0xABFF),
    (0xF900, 0xFFFF),
    (0x1D400, 0x1D7FF),
    (0x1F100, 0x1F1FF),
    (0x1FBF0, 0x1FBF9),
)


@dataclass(frozen=True, slots=True)
class Word:
    """A normalised word and its half-open [start, end) offsets in the original text."""

    text: str
    start: int
    end: int


def _strip_marks(s: str) -> str:
    return "".join(
        c
        for c in unicodedata.normalize("NFKD", s)
        if unicodedata.category(c) not in _DROPPED_CATEGORIES and c not in _IGNORABLE
    )


def _skeleton_map() -> dict[str, str]:
    """Source character -> its TR39 prototype, for prototypes made of ASCII letters/digits.

    The package stores confusables.txt as a symmetric adjacency map (each "source ->
    prototype" line added in both directions). Prototypes are never sources (the mapping is
    idempotent), so each component is a star: a key with several neighbours is a prototype,
    a key with one neighbour is a source of it. In a two-character component the ASCII side
    is taken as the prototype; other two-character components do not concern Latin folding.
    """
    raw: dict[str, list[dict[str, str]]] = _load_confusables_data("confusables.json")

    def clean(s: str) -> str:  # the data wraps right-to-left characters in LRM marks
        return s.replace("\u200e", "").replace("\u200f", "")

    neighbours: dict[str, set[str]] = {}
    for key, entries in raw.items():
        neighbours.setdefault(clean(key), set()).update(clean(e["c"]) for e in entries)
    out: dict[str, str] = {}
    for src, nbs in neighbours.items():
        if len(src) != 1 or src.isascii() or len(nbs) != 1:
            continue
        (proto,) = nbs
        if len(proto) == 1 and len(neighbours.get(proto, ())) < 2 and not proto.isascii():
            continue  # a pair of non-ASCII characters: direction unknown, not Latin anyway
        if unicodedata.category(src)[0] not in "LN":
            continue  # symbols that look like letters ("×", "∞") stay separators
        folded = _strip_marks(proto)
        if folded and folded.isascii() and folded.isalnum():
            # TR39 gives capital I the prototype "l"; a capital that looks like it is an I
            # here, as ASCII "I" folds to "i" ("ΗΙΜ" -> "him").
            if folded == "l" and unicodedata.category(src) == "Lu":
                folded = "i"
            out[src] = folded.lower()
    return out


_SKELETON = _skeleton_map()


def _fold_one(c: str) -> str:
    """One character of an NFKD decomposition (marks already dropped)."""
    if c.isascii():
        return c.lower()
    digit = unicodedata.digit(c, None)
    if digit is not None:
        return str(digit)
    proto = _SKELETON.get(c)
    if proto is not None:
        return proto
    out = []
    for f in _strip_marks(c.casefold()):
        if f.isascii():
            out.append(f.lower())
        else:
            out.append(_SKELETON.get(f, f))
    return "".join(out)


def _fold_uncached(ch: str) -> str:
    if ch.isascii():
        return ch.lower()
    if ch in _IGNORABLE or unicodedata.category(ch) == "Cf":
        return ""
    digit = unicodedata.digit(ch, None)
    if digit is not None:
        return str(digit)
    return "".join(_fold_one(c) for c in _strip_marks(ch))


def _precompute() -> dict[str, str]:
    table = {}
    for a, b in _PRECOMPUTED:
        for cp in range(a, b + 1):
            table[chr(cp)] = _fold_uncached(chr(cp))
    for ch in _IGNORABLE:
        table[ch] = ""
    for ch in _SKELETON:
        table[ch] = _fold_uncached(ch)
    return table


#: Folded at import so the hot path is one dict lookup per character; anything else goes
#: through the cached function.
FOLD_TABLE: dict[str, str] = _precompute()


@lru_cache(maxsize=8192)
def fold_char(ch: str) -> str:
    """One character's canonical form: may be empty (accents, zero-width) or longer ("ﬁ")."""
    folded = FOLD_TABLE.get(ch)
    return _fold_uncached(ch) if folded is None else folded


def fold(text: str) -> str:
    """The folded characters of `text`, without word segmentation (offsets are lost)."""
    get = FOLD_TABLE.get
    return "".join(f if (f := get(ch)) is not None else fold_char(ch) for ch in text)


def words(text: str, *, leet: bool = False, offset: int = 0) -> list[Word]:
    """Maximal runs of alphanumeric characters after folding, with original offsets.

    `offset` is added to every offset (for tokenising a slice of a longer text).
    """
    out: list[Word] = []
    buf: list[str] = []
    start = -1
    end = -1
    get = FOLD_TABLE.get
    for i, ch in enumerate(text):
        folded = get(ch)
        if folded is None:
            folded = fold_char(ch)
        if not folded:
            continue  # zero-width and combining marks do not break a word
        if leet and folded in _LEET_SYMBOLS:
            folded = _LEET_SYMBOLS[folded]
        for c in folded:
            if c.isalnum():
                if start < 0:
                    start = i
                buf.append(c)
                end = i + 1
            elif start >= 0:
                out.append(_word(buf, start + offset, end + offset, leet))
                buf = []
                start = -1
    if start >= 0:
        out.append(_word(buf, start + offset, end + offset, leet))
    return out


def _word(chars: list[str], start: int, end: int, leet: bool) -> Word:
    w = "".join(chars)
    if leet and not w.isdigit() and not w.isalpha():
        w = w.translate(LEET)
    return Word(w, start, end)


def normalize(text: str, *, leet: bool = False) -> str:
    """The canonical form as one string: words joined by single spaces."""
    return " ".join(w.text for w in words(text, leet=leet))


def last_word_open(text: str, ws: list[Word], offset: int = 0) -> bool:
    """True when nothing but zero-width characters follows the last word, so more may extend it."""
    if not ws:
        return False
    return all(not fold_char(c) for c in text[ws[-1].end - offset :])
