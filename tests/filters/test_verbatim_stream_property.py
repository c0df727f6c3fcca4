"""Property: the verbatim stream scanner decides exactly as `check()` on the same final text,
for every chunking, and never reports a copy inside text it already declared stable.

Texts are built from the policy data: corpus passages in every disguise of
tests/filters/verbatim_cases.py (cut anywhere, so partial copies and copies that straddle
benign text occur), reviews and near-miss lines, filler, separators and stray characters
that change how words are cut (zero-width, combining marks, ligatures, leetspeak symbols,
confusables), glued to each other with or without spaces.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.base import PolicyData
from filters.verbatim import Verbatim
from tests.filters.verbatim_cases import (
    CORPUS,
    CW,
    FILLERS,
    OBFUSCATIONS,
    REVIEWS,
    SEPARATORS,
    lines,
    passage_words,
)

BENIGN = REVIEWS + lines("protected-work-near-misses.txt")
ODD = ["\u200b", "\u0301", "ﬁ", "@", "$", "-", "\n", "4", "0", "О", "а", "'", "’", "Ⅻ", "．"]


@st.composite
def copies(draw: st.DrawFn) -> str:
    n = draw(st.integers(3, 40))
    start = draw(st.integers(0, len(CW) - n))
    name = draw(st.sampled_from(sorted(OBFUSCATIONS)))
    seed = draw(st.integers(0, 1 << 16))
    return OBFUSCATIONS[name](passage_words(start, n), random.Random(seed))


parts = st.one_of(
    copies(),
    copies(),
    st.sampled_from(BENIGN),
    st.sampled_from(FILLERS + SEPARATORS),
    st.lists(st.sampled_from([*ODD, "a", "b", "the", " "]), max_size=12).map("".join),
)


@st.composite
def texts(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(parts, min_size=1, max_size=6))
    glue = draw(st.lists(st.sampled_from(["", " ", "\n", " — ", "\u200b"]), min_size=len(pieces)))
    return "".join(p + g for p, g in zip(pieces, glue, strict=False))


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[int]]:
    text = draw(texts())
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=60))
    return text, sorted({c for c in cuts if 0 < c < len(text)} | {len(text)})


FILTERS = {
    "shipped policy": Verbatim(CORPUS, Verbatim.Options(min_words=12)),
    "short runs, tight gaps": Verbatim(
        CORPUS, Verbatim.Options(min_words=6, max_inserted=1, max_skipped=1, near_score=4)
    ),
    "exact only": Verbatim.from_policy(
        PolicyData(name="p", corpus=CORPUS), None, Verbatim.Options(min_words=8, near=False)
    ),
}


@pytest.mark.parametrize("flt", FILTERS.values(), ids=FILTERS.keys())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=chunked())
def test_stream_verdict_is_the_whole_text_verdict(flt: Verbatim, case: tuple[str, list[int]]):
    text, cuts = case
    scanner = flt.open_stream()
    released = 0
    hit = None
    for cut in cuts:
        res = scanner.scan(text[:cut], cut == len(text))
        assert released <= res.stable <= cut
        for span in res.result.spans:
            assert released <= span.start < span.end <= cut, "a copy inside released text"
        if res.result.hit:
            hit = res.result
            break
        released = res.stable
    whole = flt.check(text)
    assert (hit is not None) == whole.hit, (hit, whole)
    if hit is None:
        assert released == len(text)
