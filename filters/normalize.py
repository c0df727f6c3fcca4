"""Text normalisation that remembers where every character came from.

Filters match on a canonical form (case-folded, NFKD with accents dropped, zero-width
characters removed, every non-alphanumeric character a word boundary) but must report spans
in the caller's text, so every helper here keeps original offsets.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

#: Digits read as letters inside a word that also has letters ("h4rry" -> "harry"); a word
#: made only of digits ("1987") is left alone.
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"})
_LEET_SYMBOLS = {"@": "a", "$": "s"}


@dataclass(frozen=True, slots=True)
class Word:
    """A normalised word and its half-open [start, end) offsets in the original text."""

    text: str
    start: int
    end: int


@lru_cache(maxsize=8192)
def fold_char(ch: str) -> str:
    """One character's canonical form: may be empty (accents, zero-width) or longer ("ﬁ")."""
    if ch.isascii():
        return ch.lower()
    out = []
    for c in unicodedata.normalize("NFKD", ch):
        cat = unicodedata.category(c)
        if cat in ("Mn", "Me", "Cf"):
            continue
        out.append(c)
    return "".join(out).casefold()


def words(text: str, *, leet: bool = False, offset: int = 0) -> list[Word]:
    """Maximal runs of alphanumeric characters after folding, with original offsets.

    `offset` is added to every offset (for tokenising a slice of a longer text).
    """
    out: list[Word] = []
    buf: list[str] = []
    start = -1
    end = -1
    for i, ch in enumerate(text):
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
