"""The policy's literal names ("Harry Potter", "Hogwarts") anywhere in a text, however written.

A concept's names are its cheapest tell: an answer that names the franchise inside 140 words of
recipe scores low on embedding similarity (the recipe dominates every window), yet it names
the franchise. This filter reads text after `filters.normalize` (case, accents, TR39
confusables, other scripts' digits, invisible characters, leetspeak) and compares *letters*:
a run of consecutive words whose letters spell a literal is a hit, so "Harry Potter",
"HarryPotter", "H a r r y  P o t t e r", "Hog-warts" and "H0gw4rts" all match, while
"Harry Styles", "Prince Harry" or "pottery" do not (the run must start and end on word
boundaries and spell the whole literal). A trailing "s" (plural or possessive "'s") is allowed.

Streams: `LiteralScanner` re-checks the whole text at every step (a letter comparison, cheap
next to the models) and holds back the trailing words that could still begin a literal, so the
streamed verdict is `check()` on the final text and no letter of a name is released before it.
"""

from __future__ import annotations

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
    merge_spans,
)
from filters.normalize import words


def _letters(text: str) -> str:
    return "".join(w.text for w in words(text, leet=True))


class Literal(TextFilter):
    name = "literal"

    class Options(FilterOptions):
        #: Literals shorter than this (in letters) are ignored: short names collide with
        #: ordinary words once spaces stop counting.
        min_letters: int = Field(4, ge=2)

    def __init__(self, literals: list[str], options: Literal.Options):
        self.options = options
        forms = {_letters(lit) for lit in literals}
        self.forms = frozenset(f for f in forms if len(f) >= options.min_letters)
        if not self.forms:
            raise ValueError("literal: no literal long enough to match")
        self.longest = max(len(f) for f in self.forms) + 1  # + the plural "s"

    @classmethod
    def from_policy(cls, data: PolicyData, resources: object, options: FilterOptions) -> Literal:
        assert isinstance(options, cls.Options)
        if not data.literals:
            raise ValueError(f"policy {data.name!r}: the literal filter needs `literals`")
        return cls(list(data.literals), options)

    def check(self, text: str) -> FilterResult:
        ws = words(text, leet=True)
        spans = []
        for i in range(len(ws)):
            spelled = ""
            for j in range(i, len(ws)):
                spelled += ws[j].text
                if len(spelled) > self.longest:
                    break
                if spelled in self.forms or (
                    spelled.endswith("s") and spelled[:-1] in self.forms
                ):
                    spans.append(Span(ws[i].start, ws[j].end))
                    break
        if not spans:
            return ALLOW
        return FilterResult(Action.BLOCK, 1.0, "literal: a policy name", merge_spans(spans))

    def holdback_chars(self) -> int:
        # A literal spelled one letter per word ("h a r r y") weighs two characters a letter.
        return 2 * self.longest + 16

    def open_stream(self) -> StreamScanner:
        return LiteralScanner(self)


class LiteralScanner(StreamScanner):
    """Per stream: the whole text checked each time; released up to the first of the trailing
    words whose letters, with the word still being written, could begin a literal."""

    def __init__(self, flt: Literal):
        self._f = flt
        self._stable = 0

    def scan(self, text: str, final: bool) -> ScanResult:
        result = self._f.check(text)
        if final:
            self._stable = len(text)
            return ScanResult(result, self._stable)
        hold = len(text)
        letters = 0
        for word in reversed(words(text, leet=True)):
            # Every trailing word is held until, counted from the end, they hold as many
            # letters as the longest literal: a literal still to be completed starts among them.
            hold = word.start
            letters += len(word.text)
            if letters >= self._f.longest:
                break
        self._stable = max(self._stable, hold)
        return ScanResult(result, self._stable)


FILTER = Literal
