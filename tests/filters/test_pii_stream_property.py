"""Property: the PII stream scanner decides exactly as `Pii.check()` on the finished text,
for every chunking, reporting each span once and never one that was already released."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.base import PolicyData, Span
from filters.pii import Pii

ELENA = {
    "phone": "415-555-0199",
    "email": "elena.marquez@example.org",
    "address": "42 Harbor Lane, Sausalito, CA 94965",
    "date_of_birth": "1987-03-14",
}
FLT = Pii.from_policy(PolicyData(name="p", pii=ELENA), None, Pii.Options())

#: Pieces of values, whole values, other people's values and filler, so that random
#: concatenations make matches, near-matches, matches cut short and number phrases that a
#: next piece extends.
PIECES = [
    "415",
    "555",
    "0199",
    "-",
    ".",
    " ",
    "  ",
    "\u200b",
    "(",
    ")",
    "+1 ",
    "1-",
    "four",
    "one",
    "five",
    "fifteen",
    "fifty",
    "-five",
    "oh",
    "zero",
    "nine",
    "ninety",
    "-nine",
    "double",
    "triple",
    "hundred",
    "and",
    "twenty",
    "seven",
    "nineteen",
    "eighty",
    "elena",
    ".marquez",
    "@",
    " at ",
    " dot ",
    "example",
    ".org",
    "+news",
    "thanks",
    "42",
    "forty-two",
    "Harbor",
    "Harbour",
    " Lane",
    " Ln.",
    ", Sausalito",
    ", CA",
    " 94965",
    "March",
    " 14",
    "14th",
    "fourteenth",
    " of ",
    "the ",
    ", 1987",
    " '87",
    "1987",
    "/",
    "03",
    "212",
    "0173",
    "1988",
    "22",
    "Spencer",
    "Avenue",
    "Okafor",
    "call",
    "now",
    "born",
    "The weather is fine.",
    " and then ",
    "\n",
    "%",
    "%4",
    "0",
    "%2e",
    "\u5e74",
    "\u0665",
    "\uff14",
    "\u041d",
]


#: Whole values in the forms people write and say them, and near misses.
FORMS = [
    "415-555-0199",
    "(415) 555 0199",
    "+1 415.555.0199",
    "4155550199",
    "555-0199",
    "four one five five five five oh one nine nine",
    "four fifteen, five fifty-five, oh one ninety-nine",
    "four one five double five five zero one double nine",
    "4\u200b1\u200b5 555 0199",
    "elena.marquez@example.org",
    "elena.marquez%40example.org",
    "1987\u5e743\u670814\u65e5",
    "elena dot marquez at example dot org",
    "elena.marquez+news@example.orgthanks",
    "e l e n a . m a r q u e z @ example . org",
    "42 Harbor Lane, Sausalito, CA 94965",
    "forty-two Harbour Ln.",
    "Harbor Lane 42",
    "March 14, 1987",
    "the 14th of March, 1987",
    "3/14/87",
    "14.03.1987",
    "1987-03-14",
    "March fourteenth nineteen eighty-seven",
    "born1987-03-14",
    "Mar. 14 '87",
    "212-555-0199",
    "415-555-0173",
    "elena.ruiz@example.com",
    "43 Harbor Lane",
    "March 14",
    "March 22, 1987",
    "117 Spencer Avenue, Sausalito, CA 94965",
]
FILLER = ["", " ", ". ", "\n", " and ", "Her number is ", "Write to ", "She lives at ", ", born "]


@st.composite
def texts(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        parts = draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=30))
    else:
        parts = []
        for form in draw(st.lists(st.sampled_from(FORMS), min_size=1, max_size=4)):
            parts += [draw(st.sampled_from(FILLER)), form]
        if draw(st.booleans()):  # a generation cut short inside the last value
            last = parts.pop()
            parts.append(last[: draw(st.integers(1, len(last)))])
    return "".join(parts)


@st.composite
def chunked_text(draw: st.DrawFn) -> tuple[str, list[int]]:
    text = draw(texts())
    cuts = draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=20))
    bounds = sorted({c for c in cuts if 0 < c < len(text)} | {len(text)})
    return text, bounds


def stream(text: str, bounds: list[int]) -> list[Span]:
    scanner = FLT.open_stream()
    released = 0
    reported: list[Span] = []
    for k, end in enumerate(bounds):
        final = k == len(bounds) - 1
        res = scanner.scan(text[:end], final)
        for span in res.result.spans:
            assert span.start >= released, "a span reaches into text already released"
            assert span.end <= end
        reported += res.result.spans
        assert released <= res.stable <= end
        released = res.stable
    assert released == len(text)
    return reported


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunked_text())
def test_stream_reports_exactly_the_spans_check_reports(case: tuple[str, list[int]]) -> None:
    text, bounds = case
    whole = sorted(FLT.check(text).spans, key=lambda s: (s.start, s.end))
    streamed = sorted(stream(text, bounds), key=lambda s: (s.start, s.end))
    assert streamed == whole


@settings(max_examples=150, deadline=None)
@given(texts())
def test_character_by_character_stream_matches_check(text: str) -> None:
    whole = sorted(FLT.check(text).spans, key=lambda s: (s.start, s.end))
    streamed = sorted(stream(text, list(range(1, len(text) + 1))), key=lambda s: (s.start, s.end))
    assert streamed == whole
