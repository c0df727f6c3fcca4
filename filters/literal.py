"""The policy's literal names ("Harry Potter", "Hogwarts") anywhere in a text, however written.

A concept's names are its cheapest tell: an answer that names the franchise inside 140 words of
recipe scores low on embedding similarity (the recipe dominates every window), yet it names
the franchise. This filter reads text after `filters.normalize` (case, accents, TR39
confusables, other scripts' digits, invisible characters, leetspeak) and compares *letters*:
a run of consecutive words whose letters spell a literal is a hit, so "Harry Potter",
"HarryPotter", "H a r r y  P o t t e r", "Hog-warts" and "H0gw4rts" all match, while
"Harry Styles", "Prince Harry" or "pottery" do not (the run must start and end on word
boundaries and spell the whole literal). A trailing "s" (plural or possessive "'s") is allowed.

It decides on the whole text; streams use the default scanner, which holds back the last
`holdback_chars` characters as the filters see them and checks the whole text at the end, so
a streamed verdict is the whole one.
"""

from __future__ import annotations

from pydantic import Field

from filters.base import (
    ALLOW,
    Action,
    FilterOptions,
    FilterResult,
    PolicyData,
    Span,
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


FILTER = Literal
