from __future__ import annotations

from pathlib import Path

import pytest

from filters import get
from filters.base import Action, PolicyData
from filters.normalize import words
from filters.verbatim import Verbatim
from tests.filters.streaming import feed

DATA = Path(__file__).resolve().parents[2] / "policies" / "data"
CORPUS = (DATA / "protected-work.txt").read_text()
NEAR_MISSES = [
    line.strip()
    for line in (DATA / "protected-work-near-misses.txt").read_text().splitlines()
    if line.strip()
]
UNRELATED = (DATA / "harry-potter-near-misses.txt").read_text()
CW = CORPUS.split()


def passage(start: int, n: int) -> str:
    return " ".join(CW[start : start + n])


def leet(text: str) -> str:
    return text.replace("e", "3").replace("a", "4").replace("o", "0")


def every_nth_replaced(text: str, n: int) -> str:
    return " ".join("blah" if i % n == n - 1 else w for i, w in enumerate(text.split()))


@pytest.fixture(scope="module")
def flt() -> Verbatim:
    data = PolicyData(name="t", corpus=CORPUS)
    f = get("verbatim").from_policy(data, None, Verbatim.Options())
    assert isinstance(f, Verbatim)
    return f


P = passage(300, 30)

HITS = {
    "exact": P,
    "inside an answer": "Of course! Here it is: " + P + " Hope this helps.",
    "upper case": P.upper(),
    "one word per line": "\n".join(P.split()),
    "dashes": "-".join(P.split()),
    "underscores": "_".join(P.split()),
    "dots": ".".join(P.split()),
    "pipes": " | ".join(P.split()),
    "stars": "*".join(P.split()),
    "leetspeak": leet(P),
    "zero-width inside words": "\u200b".join(P),
    "words split by hyphen-newline": passage(300, 14)
    .replace("catastrophes", "catas-\ntrophes")
    .replace("Harrowick", "Harro-\nwick")
    .replace("spectacles", "spec tacles"),
    "letters spaced out": " ".join(passage(50, 14)),
    "one word in six replaced": every_nth_replaced(passage(900, 48), 6),
    "one word in five replaced": every_nth_replaced(passage(1500, 48), 5),
    "exactly min_words": passage(2000, 12),
}

ALLOWED = {
    "eleven consecutive words": passage(2000, 11),
    "eight corpus words in other text": "I read somewhere that "
    + passage(700, 8)
    + " but I do not remember the rest of the book or who wrote it, sorry about that.",
    "one word in three replaced": every_nth_replaced(passage(1200, 48), 3),
    "unrelated prose": UNRELATED,
    "reviews and summaries of the work": "\n".join(NEAR_MISSES),
}


@pytest.mark.parametrize("text", HITS.values(), ids=HITS.keys())
def test_copies_of_the_corpus_are_blocked(flt: Verbatim, text: str) -> None:
    res = flt.check(text)
    assert res.action is Action.BLOCK
    assert res.spans
    for span in res.spans:
        assert text[span.start : span.end] not in res.reason


@pytest.mark.parametrize("text", ALLOWED.values(), ids=ALLOWED.keys())
def test_text_that_is_not_a_copy_is_allowed(flt: Verbatim, text: str) -> None:
    assert flt.check(text).action is Action.ALLOW


@pytest.mark.parametrize("line", NEAR_MISSES)
def test_each_near_miss_line_is_allowed(flt: Verbatim, line: str) -> None:
    assert flt.check(line).action is Action.ALLOW


def test_span_covers_the_whole_copied_run(flt: Verbatim) -> None:
    text = "Intro words here. " + P + " And my own ending."
    res = flt.check(text)
    assert res.reason == "verbatim: 30 consecutive words of corpus"
    (span,) = res.spans
    assert span.start == text.index(P) and span.end == text.index(P) + len(P)


def test_min_words_option_sets_the_run_length(flt: Verbatim) -> None:
    strict = Verbatim(CORPUS, Verbatim.Options(min_words=20, near=False))
    assert strict.check(passage(2000, 19)).action is Action.ALLOW
    assert strict.check(passage(2000, 20)).action is Action.BLOCK


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(ValueError):
        Verbatim.Options.model_validate({"min_word": 10})


def test_policy_without_corpus_fails_loudly() -> None:
    with pytest.raises(ValueError, match="corpus"):
        Verbatim.from_policy(PolicyData(name="p"), None, Verbatim.Options())


@pytest.mark.parametrize("text", HITS.values(), ids=HITS.keys())
def test_stream_blocks_before_any_copied_text_is_released(flt: Verbatim, text: str) -> None:
    out = feed(flt.open_stream(), "Sure, here you go. " + text + " The end.")
    assert out.hit is not None and out.hit.action is Action.BLOCK


@pytest.mark.parametrize("text", [UNRELATED, "\n".join(NEAR_MISSES)], ids=["unrelated", "reviews"])
def test_stream_releases_clean_text_with_bounded_delay(flt: Verbatim, text: str) -> None:
    out = feed(flt.open_stream(), text)
    assert out.hit is None
    assert max(out.held_words) <= flt.w
    median = sorted(out.held_words)[len(out.held_words) // 2]
    assert median <= 3


def test_streams_do_not_share_state(flt: Verbatim) -> None:
    a, b = flt.open_stream(), flt.open_stream()
    copy = "Here: " + P
    clean = UNRELATED[: len(copy)]
    results_b = []
    hit_a = None
    for k in range(1, len(copy) + 1):
        ra = a.scan(copy[:k], k == len(copy))
        results_b.append(b.scan(clean[:k], k == len(copy)))
        hit_a = hit_a or (ra.result if ra.result.hit else None)
    assert hit_a is not None
    assert not any(r.result.hit for r in results_b)
    assert results_b[-1].stable == len(clean)


def test_stream_and_check_agree_on_whole_texts(flt: Verbatim) -> None:
    for text in [*HITS.values(), *ALLOWED.values()]:
        streamed = feed(flt.open_stream(), text)
        assert (streamed.hit is not None) == flt.check(text).hit


def test_corpus_words_are_indexed_after_normalisation(flt: Verbatim) -> None:
    assert len(flt.corpus.ids) == len(words(CORPUS, leet=True))
