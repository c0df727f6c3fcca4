"""One person's literal facts (phone, email, address, date of birth...) in any common form.

Text is turned into a canonical token stream (filters.normalize folding; number words read as
digits, "at"/"[at]" as "@", "dot"/"(dot)" as "."; all other punctuation a boundary) and each
field becomes a `regex` pattern over it. The patterns allow any separators between digits and
words and single letters spelled apart, so "4 1 5 . 5 5 5 - 0 1 9 9", "(415) 555 0199",
"four one five five five five zero one nine nine" and "elena dot marquez at example dot org"
all match, while another person's number (other digits) does not.

Streaming uses `regex` partial matching: the scanner holds back only from the earliest point
where a pattern has matched up to the end of the text so far (a PII form could still be
completing), plus the word being written.

A text that *ends* inside a match ("Address: 42 Harbor" when the generation stops at
max_tokens) still gives most of the value away: at the end of a whole text or of a stream, a
trailing partial match of at least `partial_min_chars` letters and digits is redacted too,
if it holds a digit or the "@": a name, or the start of an e-mail that spells the name, stays.

Not matched on purpose: a ZIP code or city alone (a ZIP is shared by a whole town: Daniel
Okafor in the shipped data lives in Elena Marquez's) and a month-and-day without the year.
The name is matched only when listed in `fields` (the person may be discussed; their contact
data may not).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import regex
from pydantic import Field

from filters.base import (
    ALLOW,
    Action,
    Filter,
    FilterOptions,
    FilterResult,
    PolicyData,
    ScanResult,
    Span,
    StreamScanner,
)
from filters.normalize import Word, fold_char

_NUMBER_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "at": "@",
    "dot": ".",
    "period": ".",
    "point": ".",
}
_SYMBOLS = {"@", "."}

SEP = r"[ .]*"

_STREET_SUFFIXES = [
    ("lane", "ln"),
    ("street", "st"),
    ("avenue", "ave", "av"),
    ("road", "rd"),
    ("boulevard", "blvd"),
    ("drive", "dr"),
    ("court", "ct"),
    ("place", "pl"),
    ("terrace", "ter"),
    ("circle", "cir"),
    ("highway", "hwy"),
    ("parkway", "pkwy"),
    ("square", "sq"),
    ("way",),
]
_DIRECTIONS = [
    ("north", "n"),
    ("south", "s"),
    ("east", "e"),
    ("west", "w"),
    ("northeast", "ne"),
    ("northwest", "nw"),
    ("southeast", "se"),
    ("southwest", "sw"),
]
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_DEFAULT_FIELDS = ("phone", "email", "address", "date_of_birth")


def _token_alternatives(tok: str) -> list[str]:
    for group in _STREET_SUFFIXES + _DIRECTIONS:
        if tok in group:
            return list(group)
    if tok in _ORDINALS:
        k = _ORDINALS.index(tok) + 1
        return [tok, f"{k}{_suffix(k)}"]
    m = re.fullmatch(r"(\d+)(st|nd|rd|th)", tok)
    if m and 1 <= int(m.group(1)) <= 9:
        return [tok, _ORDINALS[int(m.group(1)) - 1]]
    return [tok]


def _suffix(k: int) -> str:
    if 10 <= k % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")


def _spaced(tok: str) -> str:
    """A literal word whose letters may be written apart ("e l e n a")."""
    if tok.isdigit():
        return SEP.join(tok)
    return " ?".join(regex.escape(c) for c in tok)


def _words_pattern(toks: list[str]) -> str:
    parts = []
    for tok in toks:
        alts = sorted({_spaced(a) for a in _token_alternatives(tok)}, key=len, reverse=True)
        parts.append(alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")")
    return SEP.join(parts)


def _plain_tokens(value: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", "".join(fold_char(c) for c in value)) if t]


def phone_pattern(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if not digits:
        raise ValueError("pii: phone has no digits")
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    full = SEP.join(digits)
    if len(digits) != 10:
        return full
    local = SEP.join(digits[3:])
    # The 7-digit local form only when no other digits precede it: "212-555-0199" is not hers.
    return rf"(?:1{SEP})?{full}|(?<![0-9]{SEP}){local}"


def email_pattern(value: str) -> str:
    if value.count("@") != 1:
        raise ValueError("pii: email must contain exactly one @")
    local, domain = value.split("@")
    before = _words_pattern(_plain_tokens(local))
    after = _words_pattern(_plain_tokens(domain))
    return rf"{before}{SEP}@{SEP}{after}"


def address_pattern(value: str) -> str:
    parts = [p for p in (p.strip() for p in value.split(",")) if p]
    street = _words_pattern(_plain_tokens(parts[0]))
    tail = ""
    for tok in reversed([t for p in parts[1:] for t in _plain_tokens(p)]):
        tail = f"(?:{SEP}{_words_pattern([tok])}{tail})?"
    return street + tail


def date_pattern(value: str) -> str:
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"pii: date_of_birth must be YYYY-MM-DD, got {value!r}") from exc
    y, mo, d = str(day.year), day.month, day.day
    yy = f"(?:{SEP.join(y)}|{SEP.join(y[2:])})"
    y4 = SEP.join(y)
    dd = f"0?{d}" if d < 10 else SEP.join(str(d))
    mm = f"0?{mo}" if mo < 10 else SEP.join(str(mo))
    name = _MONTHS[mo - 1]
    month = f"(?:{name}|{name[:3]}{'|sept' if mo == 9 else ''})"
    ordinal = f"{dd}(?: ?(?:st|nd|rd|th))?"
    of = f"(?:{SEP}of)?"
    forms = [
        f"{y4}{SEP}{mm}{SEP}{dd}",
        f"{mm}{SEP}{dd}{SEP}{yy}",
        f"{dd}{SEP}{mm}{SEP}{yy}",
        f"{month}{SEP}{ordinal}{SEP}{y4}",
        f"{ordinal}{of}{SEP}{month}{SEP}{y4}",
    ]
    return rf"(?<![0-9])(?:{'|'.join(forms)})"


def generic_pattern(value: str) -> str:
    toks = _plain_tokens(value)
    if not toks:
        raise ValueError("pii: empty value")
    return _words_pattern(toks)


_BUILDERS = {
    "phone": phone_pattern,
    "email": email_pattern,
    "address": address_pattern,
    "date_of_birth": date_pattern,
}


@dataclass(frozen=True, slots=True)
class Canonical:
    text: str
    tokens: list[Word]  # canonical tokens with original offsets
    owner: list[int]  # canonical char -> token index (spaces belong to the token before)

    def span(self, a: int, b: int) -> Span:
        while a < b and self.text[a] == " ":
            a += 1
        while b > a and self.text[b - 1] == " ":
            b -= 1
        return Span(self.tokens[self.owner[a]].start, self.tokens[self.owner[b - 1]].end)


def canonical(text: str, offset: int = 0, final: bool = True) -> tuple[Canonical, int]:
    """The canonical token stream of `text`, and the offset where an unfinished last word
    starts (len(text) + offset when the text ends on a boundary or `final`)."""
    toks: list[Word] = []
    buf: list[str] = []
    start = -1
    end = -1

    def flush() -> None:
        nonlocal buf, start
        if start >= 0:
            w = "".join(buf)
            toks.append(Word(_NUMBER_WORDS.get(w, w), start + offset, end + offset))
            buf = []
            start = -1

    for i, ch in enumerate(text):
        folded = fold_char(ch)
        for c in folded:
            if c.isalnum():
                if start < 0:
                    start = i
                buf.append(c)
                end = i + 1
            else:
                flush()
                if c in _SYMBOLS:
                    toks.append(Word(c, i + offset, i + 1 + offset))
    open_at = len(text) + offset
    if start >= 0 and not final:
        open_at = start + offset
        buf = []
        start = -1
    flush()
    parts: list[str] = []
    owner: list[int] = []
    for k, t in enumerate(toks):
        if k:
            parts.append(" ")
            owner.append(k - 1)
        parts.append(t.text)
        owner.extend([k] * len(t.text))
    return Canonical("".join(parts), toks, owner), open_at


class Pii(Filter):
    name = "pii"

    class Options(FilterOptions):
        #: Which keys of the policy's `pii` mapping to match; default: every contact field
        #: present (phone, email, address, date_of_birth) plus any other key except `name`.
        fields: list[str] | None = None
        #: Context re-read before the stable point so look-behinds see what precedes.
        context_chars: int = Field(64, ge=0)
        #: A value cut off by the end of the text counts once this many of its letters and
        #: digits are there ("42 Harbor": 8; "415 555 0": 7, an area code and exchange that
        #: other people share).
        partial_min_chars: int = Field(8, ge=1)

    def __init__(self, fields: dict[str, str], options: Pii.Options):
        self.options = options
        self.patterns: list[tuple[str, regex.Pattern[str]]] = []
        for key, value in fields.items():
            build = _BUILDERS.get(key, generic_pattern)
            try:
                self.patterns.append((key, regex.compile(rf"(?<![a-z0-9])(?:{build(str(value))})")))
            except ValueError as exc:
                raise ValueError(f"pii field {key!r}: {exc}") from exc
        if not self.patterns:
            raise ValueError("pii: no fields to match")

    @classmethod
    def from_policy(cls, data: PolicyData, resources: object, options: FilterOptions) -> Pii:
        assert isinstance(options, cls.Options)
        if not data.pii:
            raise ValueError(f"policy {data.name!r}: the pii filter needs `pii` data")
        wanted = options.fields
        if wanted is None:
            wanted = [k for k in data.pii if k != "name" and k != "bio"]
        missing = [k for k in wanted if k not in data.pii]
        if missing:
            raise ValueError(f"policy {data.name!r}: pii fields not in data: {missing}")
        return cls({k: data.pii[k] for k in wanted if data.pii[k]}, options)

    def matches(self, canon: Canonical, growing: bool = False) -> list[tuple[str, Span]]:
        """Complete matches; with `growing`, a match that reaches the end of the text so far
        (and so may still extend: "42 Harbor Lane" -> "..., Sausalito, CA 94965") is left out
        and returned as a ("", span) marker for the scanner to hold."""
        found = []
        for key, pat in self.patterns:
            for m in pat.finditer(canon.text):
                if m.end() > m.start():
                    open_end = growing and m.end() == len(canon.text)
                    found.append(("" if open_end else key, canon.span(m.start(), m.end())))
        return sorted(found, key=lambda f: f[1].start)

    def cut_short(self, canon: Canonical) -> list[tuple[str, Span]]:
        """Matches that the end of the text cut short, once long enough to give the value away."""
        found = []
        for key, pat in self.patterns:
            for m in pat.finditer(canon.text, partial=True):
                part = m.group()
                kept = sum(ch.isalnum() for ch in part)
                telling = "@" in part or any(ch.isdigit() for ch in part)
                if m.partial and telling and kept >= self.options.partial_min_chars:
                    found.append((key, canon.span(m.start(), m.end())))
        return found

    def partial_start(self, canon: Canonical) -> int | None:
        """Original offset where the earliest still-growing partial match begins."""
        best: int | None = None
        for _, pat in self.patterns:
            for m in pat.finditer(canon.text, partial=True):
                if m.partial and m.end() > m.start():
                    start = canon.span(m.start(), m.end()).start
                    best = start if best is None else min(best, start)
                    break
        return best

    def result(self, found: list[tuple[str, Span]]) -> FilterResult:
        if not found:
            return ALLOW
        kinds = sorted({k for k, _ in found})
        return FilterResult(
            Action.REDACT,
            1.0,
            "pii: " + ", ".join(kinds),
            tuple(s for _, s in found),
        )

    def check(self, text: str) -> FilterResult:
        canon, _ = canonical(text)
        return self.result(self.matches(canon) + self.cut_short(canon))

    def open_stream(self) -> StreamScanner:
        return PiiScanner(self)


class PiiScanner(StreamScanner):
    def __init__(self, flt: Pii):
        self._f = flt
        self._stable = 0

    def scan(self, text: str, final: bool) -> ScanResult:
        f = self._f
        ctx = _word_start_before(text, max(0, self._stable - f.options.context_chars))
        canon, open_at = canonical(text[ctx:], offset=ctx, final=final)
        found = [(k, s) for k, s in f.matches(canon, not final) if s.start >= self._stable]
        if final:
            found += [(k, s) for k, s in f.cut_short(canon) if s.start >= self._stable]
            self._stable = len(text)
            return ScanResult(f.result(found), self._stable)
        hold = min([open_at] + [s.start for k, s in found if not k])
        found = [(k, s) for k, s in found if k]
        partial = f.partial_start(canon)
        if partial is not None:
            hold = min(hold, partial)
        for _, s in found:
            if s.start < hold < s.end:
                hold = s.start
        self._stable = max(self._stable, hold)
        return ScanResult(f.result(found), self._stable)


def _word_start_before(text: str, pos: int) -> int:
    while pos > 0 and fold_char(text[pos - 1]).isalnum():
        pos -= 1
    return pos


FILTER = Pii
