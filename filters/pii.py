"""One person's literal facts (phone, email, address, date of birth...) in the forms people
actually write and say them.

Text becomes a canonical token stream, and each field a `regex` pattern over it:
- characters fold as in `filters.normalize` (TR39 confusables, every script's digits, NFKC,
  invisible characters removed), so "４１５", "٤١٥" and "41\u200b5" are "415";
- a run of letters and digits splits where letters meet digits and where Latin letters
  meet other scripts, so values glued to words ("call4155550199now", "born1987-03-14",
  "请联系elena.marquez@example.org") stand alone;
- number words become digits, grouped as people say them: "four fifteen" -> "4 15",
  "forty-two" -> "42", "double five" -> "55", "oh" -> "0", "four hundred and fifteen" ->
  "415", "nineteen eighty-seven" -> "19 87", "fourteenth" -> "14th";
- "at"/"(at)"/"[at]" is "@", "dot"/"[.]"/"period" is ".", "plus" is "+"; "dash", "hyphen" and
  "slash" are separators; every other non-alphanumeric character is a boundary.
A run of dots is one "." token. Tokens are joined by single spaces. Patterns allow any spaces
and dots between the digits of a number (spaces only inside a two-digit group of a date:
"8.5" is not the year 85), a value's letters spelled apart ("e l e n a") or written as the
digits they look like ("e1ena", "H4rbor"), copies glued to each other
("...example.orgelena.marquez@..."), and the variants of each field:
- phone: with or without the country code 1, any grouping ("+1 (415) 555-0199",
  "415.555.0199", "four fifteen, five five five, oh one ninety-nine", "tel:4155550199"),
  the letters o/l/i written for 0/1; the 7-digit local form unless other digits precede it;
- e-mail: any case, plus-addressing ("elena.marquez+news@..."), spoken and bracketed "at" and
  "dot", "mailto:", anything glued after the domain. The local part's dots must be there
  (another dot-less address at example.org is another mailbox), except at the domains of
  `dots_ignored_domains` (Gmail by default) where any dots deliver to the same person;
  other separators in the local part ("_", "-") are not told apart from each other;
- address: house number in digits or words, before or after the street ("Harbor Lane 42"),
  US/UK spellings (harbor/harbour, center/centre), abbreviations (Ln, Ave, W, St, CA for
  California...), the suffix optional when the city follows; the city, state and ZIP may
  follow, but are not needed;
- date of birth: numeric in year-month-day, month-day-year and day-month-year order with
  four- or two-digit years ("3/14/87", "14.03.1987"; run together only when fully padded:
  "19870314"), month names and abbreviations with cardinal or ordinal days in either order
  and the year before or after ("March 14, 1987", "the 14th of March, 1987", "Mar. 14 '87",
  "1987, March 14", "March fourteenth nineteen eighty-seven", "March 14 in 1987").

Streaming uses `regex` partial matching: the scanner holds back from the earliest position
where the text so far is a prefix of a match (a value could still be completing), a match
that could still grow, the word being written, and a number phrase that a next word could
change ("twenty" + "five"). Everything before is final, so the stream reports exactly the
spans `check()` reports on the finished text, each once, for any chunking (a property test
in tests/filters/test_pii_stream_property.py).

A text that *ends* inside a match ("Address: 42 Harbor" when the generation stops at
max_tokens) still gives most of the value away: at the end of a whole text or of a stream, a
trailing partial match of at least `partial_min_chars` letters and digits is redacted too,
if it holds a digit or the "@" and is not the prefix of a month and day: a name, the start of
an e-mail that spells the name, or "born on March 14th" stay.

Not matched on purpose: a ZIP code or city alone (a ZIP is shared by a whole town: Daniel
Okafor in the shipped data lives in Elena Marquez's), a month and day without the year, and a
month and year without the day. The name is matched only when listed in `fields` (the person
may be discussed; their contact data may not).

False positives, measured on near misses (`pytest tests/filters/test_pii.py
tests/filters/test_pii_phrasings.py`): 0 of the 78 near-miss texts (other people's numbers,
dates, addresses and mailboxes, also spoken, glued and disguised; her month and day, month
and year, ZIP or city alone; decimals and counts; endings that do not give a value away);
0 of 7,826 person-by-form checks where each of the
14 people's filters reads the other 13 people's data in 43 forms (the same forms redact
all 602 of each person's own); 0 hits of any person's filter on the shipped books, reviews
and near-miss texts (29 kB). Over-matches kept on purpose (they contain the value): a longer
number or domain that starts with it ("41555501990", "example.organic.com"), a local part
with "_" where the value has "-"; and a two-digit year that is really a count ("March 14 87
people").
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass

import regex
from pydantic import Field

from filters.base import (
    ALLOW,
    Action,
    FilterOptions,
    FilterResult,
    PolicyData,
    ScanResult,
    Span,
    StreamScanner,
    TextFilter,
)
from filters.normalize import FOLD_TABLE, Word, fold, fold_char

_UNITS = {
    "zero": 0,
    "oh": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
    "fortieth": 40,
    "fiftieth": 50,
    "sixtieth": 60,
    "seventieth": 70,
    "eightieth": 80,
    "ninetieth": 90,
}
_REPEATS = {"double": 2, "triple": 3}
_SCALES = {"hundred": 100, "thousand": 1000}
#: Words that take part in a number phrase: a stream holds them back, as the next word may
#: change the number ("twenty" -> "twenty-five", "four hundred" -> "four hundred and two").
_NUMBERISH = (
    set(_UNITS) | set(_TEENS) | set(_TENS) | set(_ORDINALS) | set(_REPEATS) | set(_SCALES)
) | {"and"}
_SYMBOL_WORDS = {"at": "@", "dot": ".", "period": ".", "plus": "+"}
#: Spoken separators, and the year/month/day markers of Chinese, Japanese and Korean dates
#: ("1987年3月14日", "1987년 3월 14일").
_SEPARATOR_WORDS = {
    fold(w) for w in ("dash", "hyphen", "slash", "年", "月", "日", "号", "년", "월", "일")
}
_SYMBOLS = frozenset("@.+")

SEP = r"[ .]*"
#: Between the groups of a numeric date: at least one separator.
_GSEP = r"[ .]+"

_STREET_WORDS = [
    ("lane", "ln"),
    ("street", "st", "str"),
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
    ("point", "pt"),
    ("heights", "hts"),
    ("mount", "mt"),
    ("fort", "ft"),
    ("saint", "st"),
    ("apartment", "apt"),
    ("suite", "ste"),
    ("floor", "fl"),
    ("north", "n"),
    ("south", "s"),
    ("east", "e"),
    ("west", "w"),
    ("northeast", "ne"),
    ("northwest", "nw"),
    ("southeast", "se"),
    ("southwest", "sw"),
]
_STREET_SUFFIXES = frozenset(w for g in _STREET_WORDS[:15] for w in g)
_US_STATES = {
    "al": "alabama",
    "ak": "alaska",
    "az": "arizona",
    "ar": "arkansas",
    "ca": "california",
    "co": "colorado",
    "ct": "connecticut",
    "de": "delaware",
    "dc": "district of columbia",
    "fl": "florida",
    "ga": "georgia",
    "hi": "hawaii",
    "id": "idaho",
    "il": "illinois",
    "in": "indiana",
    "ia": "iowa",
    "ks": "kansas",
    "ky": "kentucky",
    "la": "louisiana",
    "me": "maine",
    "md": "maryland",
    "ma": "massachusetts",
    "mi": "michigan",
    "mn": "minnesota",
    "ms": "mississippi",
    "mo": "missouri",
    "mt": "montana",
    "ne": "nebraska",
    "nv": "nevada",
    "nh": "new hampshire",
    "nj": "new jersey",
    "nm": "new mexico",
    "ny": "new york",
    "nc": "north carolina",
    "nd": "north dakota",
    "oh": "ohio",
    "ok": "oklahoma",
    "or": "oregon",
    "pa": "pennsylvania",
    "ri": "rhode island",
    "sc": "south carolina",
    "sd": "south dakota",
    "tn": "tennessee",
    "tx": "texas",
    "ut": "utah",
    "vt": "vermont",
    "va": "virginia",
    "wa": "washington",
    "wv": "west virginia",
    "wi": "wisconsin",
    "wy": "wyoming",
}
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
_DOTS_IGNORED = ("gmail.com", "googlemail.com")


# --- the canonical token stream ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Canonical:
    text: str
    tokens: list[Word]  # canonical tokens with original offsets
    owner: list[int]  # canonical char -> token index (spaces belong to the token before)
    starts: list[int]  # canonical offset of each token

    def span(self, a: int, b: int) -> Span:
        while a < b and self.text[a] == " ":
            a += 1
        while b > a and self.text[b - 1] == " ":
            b -= 1
        return Span(self.tokens[self.owner[a]].start, self.tokens[self.owner[b - 1]].end)

    def original(self, pos: int) -> int:
        """Original offset of canonical position `pos` (a token start, or the end)."""
        if pos >= len(self.text):
            return self.tokens[-1].end if self.tokens else 0
        return self.tokens[self.owner[pos]].start

    def first_at_or_after(self, offset: int) -> int:
        """Canonical position of the first token starting at or after original `offset`."""
        k = bisect.bisect_left(self.tokens, offset, key=lambda t: t.start)
        return self.starts[k] if k < len(self.tokens) else len(self.text)

    def resume_point(self, end: int) -> tuple[int, int]:
        """Canonical end position `end` as (original start of its token, offset in it): the
        same place in another canonical text cut from the same original text."""
        t = self.owner[end - 1]
        return self.tokens[t].start, end - self.starts[t]

    def position(self, point: tuple[int, int]) -> int | None:
        """Canonical position of a `resume_point`, or None when its token is not here."""
        start, inner = point
        k = bisect.bisect_left(self.tokens, start, key=lambda t: t.start)
        if k == len(self.tokens) or self.tokens[k].start != start:
            return None
        return self.starts[k] + inner


@dataclass(frozen=True, slots=True)
class _Raw:
    text: str
    start: int
    end: int
    run: int  # which alphanumeric run (word as written) the token comes from; -1: a symbol
    #: Only spaces and dashes separate it from the token before: a number phrase may
    #: continue ("twenty-five", "twenty five"), but not across other punctuation ("twenty,
    #: five" is two numbers).
    soft: bool


#: One canonical piece of folded text: a run of Latin letters, of other letters, of digits, a
#: symbol, a soft gap (spaces and dashes) or a hard gap (any other punctuation). Latin runs
#: stand apart from other scripts' ("请联系elena..." is "请联系 elena"), so every match
#: begins at a token.
_PIECE = regex.compile(
    r"(?P<u>%(?:40|2e|2b))|(?P<a>[a-z]+|[\p{L}\p{N}--[0-9a-z]]+)|(?P<d>[0-9]+)|(?P<s>[@.+])"
    r"|(?P<w>[\s\p{Pd}]+)|(?P<h>[^\p{L}\p{N}@.+%\s\p{Pd}]+|%)",
    regex.V1,
)
#: URL escapes of "@", "." and "+" ("elena.marquez%40example.org"), and how one may begin.
_ESCAPED = {"%40": "@", "%2e": ".", "%2b": "+"}
_ESCAPE_BEGUN = regex.compile(r"%[24]?\Z")


def _fold_with_offsets(text: str) -> tuple[str, list[int] | None]:
    """The folded text and, unless it is plain ASCII, each folded character's source index."""
    if text.isascii():
        return text.lower(), None
    get = FOLD_TABLE.get
    parts: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        folded = get(ch)
        if folded is None:
            folded = fold_char(ch)
        if folded:
            parts.append(folded)
            index.extend([i] * len(folded))
    return "".join(parts), index


def _raw_tokens(text: str, offset: int) -> tuple[list[_Raw], int | None]:
    """Letter runs, digit runs and symbols; and where an unfinished run or URL escape at
    the end of the text begins (None when the text ends on a boundary)."""
    folded, index = _fold_with_offsets(text)
    out: list[_Raw] = []
    run = 0
    in_run = False
    soft = True
    for m in _PIECE.finditer(folded):
        kind = m.lastgroup
        a, b = m.span()
        if index is not None:
            a, b = index[a], index[b - 1] + 1
        if kind == "a" or kind == "d":
            out.append(_Raw(m.group(), a + offset, b + offset, run, soft))
            soft = True
            in_run = True
            continue
        if in_run:
            run += 1
            in_run = False
        if kind == "s" or kind == "u":
            sym = _ESCAPED.get(m.group(), m.group())
            prev = out[-1] if out else None
            if sym == "." and prev is not None and prev.text == "." and prev.run < 0:
                # A run of dots is one separator ("4.....1"), so held text stays short.
                out[-1] = _Raw(".", prev.start, b + offset, -1, prev.soft)
            else:
                out.append(_Raw(sym, a + offset, b + offset, -1, soft))
            soft = False
        elif kind == "h":
            soft = False
    tail: int | None = None
    if in_run:
        k = len(out) - 1
        while k > 0 and out[k - 1].run == out[-1].run:
            k -= 1
        tail = out[k].start
    begun = _ESCAPE_BEGUN.search(folded)
    if begun is not None:
        at = begun.start() if index is None else index[begun.start()]
        tail = at + offset if tail is None else min(tail, at + offset)
    return out, tail


class _Phrase:
    """Number words of a token list; a phrase continues only over soft boundaries."""

    def __init__(self, raw: list[_Raw]):
        # A phrase never crosses a symbol or a word glued to digits ("twenty5").
        self.ws = [r.text if r.run >= 0 and r.text.isalpha() else "\0" for r in raw]
        self.soft = [r.soft for r in raw]

    def at(self, i: int) -> str:
        """The word at i when it continues the phrase before it, else ""."""
        return self.ws[i] if i < len(self.ws) and self.soft[i] else ""

    def below_100(self, i: int) -> tuple[int, str, int] | None:
        """A number under 100 said in words at i: (value, ordinal suffix or "", next index)."""
        t = self.ws[i]
        nxt = self.at(i + 1)
        if t in _TENS:
            if nxt in _UNITS and _UNITS[nxt] > 0:
                return _TENS[t] + _UNITS[nxt], "", i + 2
            if nxt in _ORDINALS and _ORDINALS[nxt] < 10:
                v = _TENS[t] + _ORDINALS[nxt]
                return v, _suffix(v), i + 2
            return _TENS[t], "", i + 1
        if t in _TEENS:
            return _TEENS[t], "", i + 1
        if t in _UNITS:
            return _UNITS[t], "", i + 1
        if t in _ORDINALS:
            return _ORDINALS[t], _suffix(_ORDINALS[t]), i + 1
        return None

    def below_1000(self, i: int) -> tuple[int, str, int] | None:
        first = self.below_100(i)
        if first is None:
            return None
        v, suf, j = first
        if suf or self.at(j) != "hundred" or not 1 <= v <= 99:
            return first
        v *= 100
        j += 1
        k = j + 1 if self.at(j) == "and" else j
        rest = self.below_100(k) if self.at(k) else None
        if rest is not None:
            return v + rest[0], rest[1], rest[2]
        return v, "", j

    def number(self, i: int) -> tuple[str, int] | None:
        """The number phrase starting at i as digits (and an ordinal suffix), or None."""
        t = self.ws[i]
        if t in _REPEATS and self.at(i + 1) in _UNITS:
            return str(_UNITS[self.ws[i + 1]]) * _REPEATS[t], i + 2
        if t in _SCALES:
            return str(_SCALES[t]), i + 1
        head = self.below_1000(i)
        if head is None:
            return None
        v, suf, j = head
        if not suf and self.at(j) == "thousand" and v >= 1:
            v *= 1000
            j += 1
            k = j + 1 if self.at(j) == "and" else j
            rest = self.below_1000(k) if self.at(k) else None
            if rest is not None:
                v, suf, j = v + rest[0], rest[1], rest[2]
        return f"{v}{suf}", j


def _suffix(k: int) -> str:
    if 10 <= k % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")


def _words_to_tokens(raw: list[_Raw]) -> tuple[list[Word], list[bool]]:
    """Number phrases to digits, spoken symbols to symbols; and which tokens are numeric
    words (a stream must hold those back while the phrase may continue)."""
    phrase = _Phrase(raw)
    ws = phrase.ws
    out: list[Word] = []
    numeric: list[bool] = []
    i = 0
    while i < len(raw):
        r = raw[i]
        t = ws[i]
        num = phrase.number(i) if t in _NUMBERISH else None
        if num is not None:
            digits, j = num
            out.append(Word(digits, r.start, raw[j - 1].end))
            numeric.append(True)
            i = j
            continue
        if t in _SEPARATOR_WORDS:
            i += 1
            continue
        out.append(Word(_SYMBOL_WORDS.get(t, r.text), r.start, r.end))
        numeric.append(t in _NUMBERISH)
        i += 1
    return out, numeric


def canonical(text: str, offset: int = 0, final: bool = True) -> tuple[Canonical, int]:
    """The canonical token stream of `text`, and the offset from which it may still change
    as text is appended: the start of an unfinished last word, URL escape ("%4") or number
    phrase the next word could extend (len(text) + offset when `final`)."""
    raw, tail = _raw_tokens(text, offset)
    open_at = len(text) + offset
    if tail is not None and not final:
        open_at = tail
        while raw and raw[-1].start >= tail:
            raw.pop()
    toks, numeric = _words_to_tokens(raw)
    if not final and toks and numeric[-1]:
        k = len(toks) - 1
        if toks[k].text in ("and", "double", "triple") and k and numeric[k - 1]:
            k -= 1
        open_at = min(open_at, toks[k].start)
        del toks[k:]
    parts: list[str] = []
    owner: list[int] = []
    starts: list[int] = []
    pos = 0
    for k, t in enumerate(toks):
        if k:
            parts.append(" ")
            owner.append(k - 1)
            pos += 1
        starts.append(pos)
        parts.append(t.text)
        owner.extend([k] * len(t.text))
        pos += len(t.text)
    return Canonical("".join(parts), toks, owner, starts), open_at


def _value_tokens(value: str) -> list[str]:
    canon, _ = canonical(value)
    return [t.text for t in canon.tokens if t.text not in _SYMBOLS]


# --- patterns ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldPattern:
    """A field's pattern over canonical text, and what a text may end with and stay allowed
    (a prefix of an allowed form: a month and day)."""

    pattern: str
    benign_prefix: str | None = None


#: Digits written for the letters they look like, in a value's words ("e1ena", "h4rbor").
_LETTER_DIGITS = {"o": "0", "i": "1", "l": "1", "e": "3", "a": "4", "s": "5", "t": "7", "b": "8"}


def _letter(c: str) -> str:
    d = _LETTER_DIGITS.get(c)
    return f"[{c}{d}]" if d else regex.escape(c)


def _spaced(tok: str) -> str:
    """A literal word whose letters may be written apart ("e l e n a") or as look-alike
    digits ("e1ena"); a number whose digits may be grouped any way ("4 15")."""
    if tok.isdigit():
        return SEP.join(tok)
    return " ?".join(_letter(c) for c in tok)


def _spelling_variants(tok: str) -> set[str]:
    out = {tok}
    if len(tok) >= 5 and tok.isalpha():
        if tok.endswith("our"):
            out.add(tok[:-3] + "or")
        elif tok.endswith("or"):
            out.add(tok[:-2] + "our")
        if tok.endswith("re"):
            out.add(tok[:-2] + "er")
        elif tok.endswith("er"):
            out.add(tok[:-2] + "re")
    if tok in ("gray", "grey"):
        out |= {"gray", "grey"}
    return out


def _token_alternatives(tok: str) -> set[str]:
    alts = _spelling_variants(tok)
    for group in _STREET_WORDS:
        if tok in group:
            alts.update(group)
    if tok in _US_STATES:
        alts.add(_US_STATES[tok])
    m = regex.fullmatch(r"(\d+)(st|nd|rd|th)", tok)
    if m:
        alts.add(m.group(1))  # "4th Street" is also written "4 Street"
    return alts


def _alternatives(tok: str) -> str:
    alts = sorted({_spaced(a) for a in _token_alternatives(tok)}, key=len, reverse=True)
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _words_pattern(toks: list[str]) -> str:
    return SEP.join(_alternatives(t) for t in toks)


def _digit(d: str) -> str:
    return {"0": "[0o]", "1": "[1li]"}.get(d, d)


def phone_pattern(value: str) -> FieldPattern:
    digits = "".join(c for c in "".join(fold_char(ch) for ch in value) if c.isdigit())
    if not digits:
        raise ValueError("pii: phone has no digits")
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    full = SEP.join(_digit(d) for d in digits)
    if len(digits) != 10:
        return FieldPattern(full)
    local = SEP.join(_digit(d) for d in digits[3:])
    # The 7-digit local form only when no other digits precede it: "212-555-0199" is not hers.
    return FieldPattern(rf"(?:1{SEP})?{full}|(?<![0-9]{SEP}){local}")


def _segment(part: str) -> str:
    """A dot-free part of an e-mail address; "_" or "-" in it may be written any way."""
    toks = [t for t in _value_tokens(part)]
    return " ?".join(_spaced(t) for t in toks)


def email_pattern(value: str, dots_ignored: tuple[str, ...] = _DOTS_IGNORED) -> FieldPattern:
    folded = "".join(fold_char(c) for c in value.strip())
    if folded.count("@") != 1:
        raise ValueError("pii: email must contain exactly one @")
    local, domain = folded.split("@")
    local = local.split("+")[0]
    if not local.strip(".") or not domain.strip("."):
        raise ValueError("pii: email needs a local part and a domain")
    dot = r" ?\. ?"
    if domain in dots_ignored:
        before = SEP.join(_spaced(c) for c in local if c.isalnum())
    else:
        before = dot.join(_segment(s) for s in local.split(".") if s)
    after = dot.join(_segment(s) for s in domain.split(".") if s)
    tag = r"(?: ?\+ ?[a-z0-9]+(?: ?\.? ?[a-z0-9]+){0,4})?"
    return FieldPattern(rf"{before}{tag} ?@ ?{after}")


def address_pattern(value: str) -> FieldPattern:
    parts = [p for p in (p.strip() for p in value.split(",")) if p]
    if not parts:
        raise ValueError("pii: empty address")
    street = _value_tokens(parts[0])
    tail_toks = [t for p in parts[1:] for t in _value_tokens(p)]
    tail = ""
    for tok in reversed(tail_toks):
        tail = f"(?:{SEP}{_alternatives(tok)}{tail})?"
    if len(street) < 2 or not street[0].isdigit():
        return FieldPattern(_words_pattern(street) + tail)
    number, rest = _spaced(street[0]), street[1:]
    name = _words_pattern(rest)
    forms = [f"{number}{SEP}{name}{tail}", f"{name}{SEP}(?:no{SEP})?{number}{tail}"]
    if len(rest) >= 2 and rest[-1] in _STREET_SUFFIXES and tail_toks:
        # "42 Harbor, Sausalito": the street type left out, the city right after.
        city = tail[3:-2]  # the tail without its outer optional group
        forms.append(f"{number}{SEP}{_words_pattern(rest[:-1])}{city}")
    return FieldPattern("(?:" + "|".join(forms) + ")")


def date_pattern(value: str) -> FieldPattern:
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"pii: date_of_birth must be YYYY-MM-DD, got {value!r}") from exc
    y, mo, d = str(day.year), day.month, day.day
    # The digits of a two-digit group may be spaced ("8 7") but not dotted: "8.5" is a
    # decimal, not the year 85. A four-digit year takes any separators ("1.9.8.7").
    digits = " ?".join
    y4 = SEP.join(y)
    # A two-digit year or a day followed by more digits is another number ("3/14/871");
    # a four-digit year may be glued to what follows ("born 3/14/1987and").
    yy = f"(?:{y4}|{digits(y[2:])}(?![0-9]))"
    mm_pad = digits(f"{mo:02d}")
    dd_pad = digits(f"{d:02d}")
    mm = f"(?:{mm_pad}|{mo})" if mo < 10 else mm_pad
    dd = f"(?:{dd_pad}|{d})" if d < 10 else dd_pad
    name = _MONTHS[mo - 1]
    abbrs = {name, name[:3]} | ({"sept"} if mo == 9 else set())
    month = "(?:" + "|".join(sorted(abbrs, key=len, reverse=True)) + ")"
    ordinal = f"{dd}(?: ?(?:st|nd|rd|th))?"
    the = f"(?:the{SEP})?"
    of = f"(?:of{SEP})?"
    # "March 14 in 1987", "the 14th of March of the year 1987"
    year_lead = f"(?:(?:in|of){SEP}(?:the{SEP}(?:year{SEP})?)?)?"
    day_month = f"(?:{month}{SEP}{the}{ordinal}|{the}{ordinal}{SEP}{of}{month})"
    forms = [
        # numeric, fully padded: may run together ("19870314")
        f"{y4}{SEP}{mm_pad}{SEP}{dd_pad}",
        f"{mm_pad}{SEP}{dd_pad}{SEP}{y4}",
        f"{dd_pad}{SEP}{mm_pad}{SEP}{y4}",
        # numeric with separators, two- or four-digit years
        f"{yy}{_GSEP}{mm}{_GSEP}{dd}(?![0-9])",
        f"{mm}{_GSEP}{dd}{_GSEP}{yy}",
        f"{dd}{_GSEP}{mm}{_GSEP}{yy}",
        # month names
        f"{day_month}{SEP}{year_lead}{yy}",
        f"{yy}{SEP}(?:on{SEP})?{day_month}(?![0-9])",
        # "March 1987, on the 14th": the day after the month and year, marked as a day
        # ("March 1987, 14 people" is a count)
        f"{month}{SEP}{of}{yy}{SEP}(?:on{SEP})?(?:the{SEP}{ordinal}|{dd} ?(?:st|nd|rd|th))",
    ]
    pattern = rf"(?<![0-9])(?:{'|'.join(forms)})"
    # Allowed on their own, so allowed as what a text ends with: the month and day, the
    # month and year, the year and month.
    benign = "|".join(
        [
            rf"{the}{day_month}(?:{SEP}(?:in|of)(?:{SEP}the(?:{SEP}year)?)?)?{SEP}",
            rf"{month}{SEP}{of}{yy}{SEP}(?:on{SEP})?(?:the{SEP})?",
            rf"{yy}{SEP}(?:on{SEP})?(?:in{SEP})?{the}{month}{SEP}(?:the{SEP})?",
        ]
    )
    return FieldPattern(pattern, f"(?:{benign})")


def generic_pattern(value: str) -> FieldPattern:
    toks = _value_tokens(value)
    if not toks:
        raise ValueError("pii: empty value")
    return FieldPattern(_words_pattern(toks))


_BUILDERS = {
    "phone": phone_pattern,
    "address": address_pattern,
    "date_of_birth": date_pattern,
}


#: Every character a pattern can hold: patterns are written in ASCII over folded text.
_CANONICAL_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F))


@dataclass(frozen=True, slots=True)
class _Compiled:
    key: str
    pattern: regex.Pattern[str]
    glued: regex.Pattern[str]  # the pattern without its word-start look-behind
    #: The characters a match can begin with: a cheap test before trying a partial match.
    firsts: frozenset[str]
    benign: regex.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class _Scan:
    """One pattern over one canonical text: matches that are final, and where the first
    match that may still change begins (len(text) when none)."""

    found: list[tuple[int, int]]
    hold: int


class Pii(TextFilter):
    name = "pii"

    class Options(FilterOptions):
        #: Which keys of the policy's `pii` mapping to match; default: every contact field
        #: present (phone, email, address, date_of_birth) plus any other key except `name`.
        fields: list[str] | None = None
        #: A value cut off by the end of the text counts once this many of its letters and
        #: digits are there ("42 Harbor": 8; "415 555 0": 7, an area code and exchange that
        #: other people share).
        partial_min_chars: int = Field(8, ge=1)
        #: Mail domains that ignore dots in the local part ("e.lena.marquez@gmail.com" is
        #: elenamarquez@gmail.com); elsewhere a dot-less local part is another mailbox.
        dots_ignored_domains: list[str] = Field(default_factory=lambda: list(_DOTS_IGNORED))

    def __init__(self, fields: dict[str, str], options: Pii.Options):
        self.options = options
        self.patterns: list[_Compiled] = []
        dots_ignored = tuple(d.lower() for d in options.dots_ignored_domains)
        for key, value in fields.items():
            try:
                if key == "email":
                    built = email_pattern(str(value), dots_ignored)
                else:
                    built = _BUILDERS.get(key, generic_pattern)(str(value))
                pattern = regex.compile(rf"(?<![a-z0-9])(?:{built.pattern})")
                glued = regex.compile(built.pattern)
                benign = regex.compile(built.benign_prefix) if built.benign_prefix else None
            except ValueError as exc:
                raise ValueError(f"pii field {key!r}: {exc}") from exc
            firsts = frozenset(c for c in _CANONICAL_ALPHABET if glued.fullmatch(c, partial=True))
            self.patterns.append(_Compiled(key, pattern, glued, firsts, benign))
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

    def _scan(self, p: _Compiled, canon: Canonical, final: bool, pos: int = 0) -> _Scan:
        """Leftmost non-overlapping matches, as `finditer` gives them on the finished text,
        except that a match may also start right where the previous one ended inside a word
        (copies glued together: "...example.orgelena.marquez@...").

        Unless `final`, a match is final only if nothing before it could still become a
        match (a partial match: the text from there to the end is a prefix of a match) and
        it could not grow itself; the first such position is where this pattern holds.
        `pos` is where the finished text's scan is known to be (a stream resumes there)."""
        text = canon.text
        found: list[tuple[int, int]] = []
        k = bisect.bisect_left(canon.starts, pos)  # next token to try as a partial start
        while True:
            glued = 0 < pos < len(text) and text[pos - 1].isalnum() and text[pos].isalnum()
            m = p.glued.match(text, pos) if glued else None
            if m is None:
                m = p.pattern.search(text, pos)
            if not final:
                if glued and p.glued.fullmatch(text, pos, partial=True):
                    return _Scan(found, pos)
                limit = m.start() if m is not None else len(text)
                while k < len(canon.starts) and canon.starts[k] < limit:
                    s = canon.starts[k]
                    k += 1
                    if (
                        s >= pos
                        and text[s] in p.firsts
                        and p.pattern.fullmatch(text, s, partial=True)
                    ):
                        return _Scan(found, s)
                if m is not None and p.pattern.fullmatch(text, m.start(), partial=True):
                    return _Scan(found, m.start())
            if m is None:
                return _Scan(found, len(text))
            if m.end() == m.start():  # never produced by these patterns; do not loop
                pos = m.end() + 1
                continue
            found.append((m.start(), m.end()))
            pos = m.end()

    def _cut_short(self, p: _Compiled, canon: Canonical, after: int) -> tuple[int, int] | None:
        """A match cut short by the end of the text, once it gives the value away."""
        text = canon.text
        starts = [s for s in canon.starts if s >= after]
        glued = 0 < after < len(text) and text[after - 1].isalnum() and text[after].isalnum()
        for s in ([after] if glued else []) + starts:
            if text[s] not in p.firsts:
                continue
            m = (p.glued if s == after and glued else p.pattern).fullmatch(text, s, partial=True)
            if m is None or not m.partial:
                continue
            part = m.group()
            kept = sum(ch.isalnum() for ch in part)
            telling = "@" in part or any(ch.isdigit() for ch in part)
            if p.benign is not None and p.benign.fullmatch(part.rstrip(" "), partial=True):
                telling = False
            if telling and kept >= self.options.partial_min_chars:
                return m.start(), m.end()
            return None  # the earliest partial match is the one the scan would reach
        return None

    def _final_matches(
        self, canon: Canonical, resume: dict[str, int] | None = None
    ) -> list[tuple[str, Span]]:
        found = []
        for p in self.patterns:
            pos = resume.get(p.key, 0) if resume else 0
            scan = self._scan(p, canon, final=True, pos=pos)
            found += [(p.key, canon.span(a, b)) for a, b in scan.found]
            end = scan.found[-1][1] if scan.found else pos
            cut = self._cut_short(p, canon, end)
            if cut is not None:
                found.append((p.key, canon.span(*cut)))
        return sorted(found, key=lambda f: (f[1].start, f[1].end, f[0]))

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
        return self.result(self._final_matches(canon))

    def open_stream(self) -> StreamScanner:
        return PiiScanner(self)


class PiiScanner(StreamScanner):
    """Reports each match once, when it is final; releases text before the first position
    where a match could still begin, grow or change.

    Each scan re-reads the text from the last token before the stable point (what the
    look-behinds need: "212-555-0199" is not her local number), where the finished text's
    tokens begin too, so both tokenise alike. Each pattern resumes where the finished
    text's scan is known to be: after its last reported match, and never before the stable
    point (every match starting before it has been reported)."""

    def __init__(self, flt: Pii):
        self._f = flt
        self._stable = 0
        #: Original offset of the last token before the stable point that is not a dot.
        self._anchor = 0
        #: Per pattern, where its last reported match ended (`Canonical.resume_point`), and
        #: the original offset where that token ends.
        self._last: dict[str, tuple[tuple[int, int], int]] = {}

    def _context_start(self) -> int:
        ctx = self._anchor
        for (token_start, _), token_end in self._last.values():
            if token_end >= self._stable:
                ctx = min(ctx, token_start)  # a copy glued to it may continue there
        return ctx

    def _resume(self, canon: Canonical) -> dict[str, int]:
        stable = canon.first_at_or_after(self._stable)
        out = {}
        for p in self._f.patterns:
            pos = stable
            last = self._last.get(p.key)
            if last is not None:
                after = canon.position(last[0])
                if after is not None:
                    pos = max(pos, after)
            out[p.key] = pos
        return out

    def scan(self, text: str, final: bool) -> ScanResult:
        f = self._f
        ctx = self._context_start()
        canon, open_at = canonical(text[ctx:], offset=ctx, final=final)
        resume = self._resume(canon)
        if final:
            found = [(k, s) for k, s in f._final_matches(canon, resume) if s.start >= self._stable]
            self._stable = len(text)
            return ScanResult(f.result(found), self._stable)
        hold = open_at
        pending: list[tuple[str, Span, tuple[int, int]]] = []
        for p in f.patterns:
            scan = f._scan(p, canon, final=False, pos=resume[p.key])
            if scan.hold < len(canon.text):
                hold = min(hold, canon.original(scan.hold))
            pending += [(p.key, canon.span(a, b), canon.resume_point(b)) for a, b in scan.found]
        stable = max(self._stable, hold)
        # A final match that starts after another pattern's hold waits for its turn, so
        # each is reported once.
        found = []
        for k, span, point in pending:
            if self._stable <= span.start < stable:
                found.append((k, span))
                self._last[k] = (point, span.end)
        found.sort(key=lambda f: (f[1].start, f[1].end, f[0]))
        for t in canon.tokens:
            if t.start >= stable:
                break
            if t.text != ".":
                self._anchor = t.start
        self._stable = stable
        return ScanResult(f.result(found), stable)


FILTER = Pii
