from __future__ import annotations

import random

import pytest

from filters import get
from filters.base import Action, PolicyData
from filters.normalize import words
from filters.verbatim import Verbatim
from tests.filters.streaming import feed
from tests.filters.verbatim_cases import (
    CORPUS,
    CW,
    OBFUSCATIONS,
    REVIEWS,
    lines,
    obfuscated,
    passage,
    same_register,
    short_quotes,
)

NEAR_MISSES = lines("protected-work-near-misses.txt")
UNRELATED = "\n".join(lines("harry-potter-near-misses.txt"))


def leet(text: str) -> str:
    return text.replace("e", "3").replace("a", "4").replace("o", "0")


def every_nth_replaced(text: str, n: int) -> str:
    return " ".join("blah" if i % n == n - 1 else w for i, w in enumerate(text.split()))


@pytest.fixture(scope="module")
def flt() -> Verbatim:
    """The shipped policy's filter: policies/protected-work.yaml sets min_words 12."""
    data = PolicyData(name="t", corpus=CORPUS)
    f = get("verbatim").from_policy(data, None, Verbatim.Options(min_words=12))
    assert isinstance(f, Verbatim)
    return f


P = passage(300, 30)
OPENING = "On the morning the tide forgot to come back, Ysolde Harrowick was already awake"

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
    "one word in three replaced": every_nth_replaced(passage(1200, 48), 3),
    # Half the words, in corpus order: 15 corpus words with one dropped between each two.
    "every other word of 30": " ".join(passage(1800, 30).split()[::2]),
    "exactly min_words": passage(2000, 12),
    # The forms of issue 13, class 7, on the opening sentence.
    "homoglyphs (Cyrillic and Greek)": "Оn tһе mоrnіng tһе tіԁе fоrgоt tо соmе bасk, Υѕоlԁе "
    "Ηаrrоwісk wаѕ аlrеаԁу аwаkе",
    "all words joined": "Onthemorningthetideforgottocomeback,YsoldeHarrowickwasalreadyawake",
    "some words joined": "On themorning the tide forgotto come back, YsoldeHarrowick was "
    "alreadyawake",
    "CamelCase": "OnTheMorningTheTideForgotToComeBackYsoldeHarrowickWasAlreadyAwake",
    "filler between words": "On, uh, the morning the, uh, tide — like — forgot to, um, come "
    "back, you know, Ysolde, er, Harrowick was, like, already awake",
    "filler after every word": "on uh the um morning like the so tide well forgot er to hmm come "
    "uh back like ysolde um harrowick so was er already uh awake",
    "joined with filler": "Onthe,uh,morningthetideumforgottocomeback,likeYsoldeHarrowick"
    "wasalreadyawake",
    "emoji between words": " 🌊 ".join(OPENING.split()),
    "every 3rd word dropped": "On the the tide to come Ysolde Harrowick already awake, sitting "
    "cross-legged the roof the chartmaker's with a of bitter tea cooling",
    "every 4th word dropped, filler and joins": "On the, uh, morningthe tide forgot, like, "
    "come back, Ysolde, um, Harrowickwas already, er, sitting cross-legged on roof",
}

ALLOWED = {
    "eleven consecutive words": passage(2000, 11),
    "eight corpus words in other text": "I read somewhere that "
    + passage(700, 8)
    + " but I do not remember the rest of the book or who wrote it, sorry about that.",
    "two short quotes from different pages": f'It opens with "{passage(0, 9)}" and later '
    f'"{passage(1500, 9)}", which I loved.',
    "an eleven-word quote with filler": "so, uh, " + ", um, ".join(passage(2200, 11).split()),
    "a passage's words reversed": " ".join(reversed(P.split())),
    "a passage's words shuffled": " ".join(random.Random(13).sample(P.split(), 30)),
    "unrelated prose": UNRELATED,
    "reviews and summaries of the work": "\n".join(NEAR_MISSES),
    "written reviews": "\n".join(REVIEWS),
    "the same register in other words": "\n\n".join(same_register()[:16]),
}


@pytest.mark.parametrize("text", HITS.values(), ids=HITS.keys())
def test_copies_of_the_corpus_are_blocked(flt: Verbatim, text: str) -> None:
    res = flt.check(text)
    assert res.action is Action.BLOCK
    assert res.spans
    for span in res.spans:
        assert text[span.start : span.end] not in res.reason


STARTS = [0, 777, 1555, 2333, 3050]


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("name", OBFUSCATIONS)
def test_every_obfuscation_of_a_30_word_passage_is_blocked(
    flt: Verbatim, name: str, start: int
) -> None:
    text = obfuscated(name, start, 30)
    assert flt.check(text).action is Action.BLOCK, text


@pytest.mark.parametrize("text", ALLOWED.values(), ids=ALLOWED.keys())
def test_text_that_is_not_a_copy_is_allowed(flt: Verbatim, text: str) -> None:
    assert flt.check(text).action is Action.ALLOW


@pytest.mark.parametrize("line", NEAR_MISSES + REVIEWS)
def test_each_review_and_near_miss_line_is_allowed(flt: Verbatim, line: str) -> None:
    assert flt.check(line).action is Action.ALLOW


@pytest.mark.parametrize("quote", short_quotes(12))
def test_quotes_one_word_short_of_min_words_are_allowed(flt: Verbatim, quote: str) -> None:
    assert flt.check(quote).action is Action.ALLOW


def test_a_quote_of_min_words_is_blocked_where_one_word_shorter_is_not(flt: Verbatim) -> None:
    for start in STARTS:
        assert flt.check(f'He wrote: "{passage(start, 12)}".').hit
        assert not flt.check(f'He wrote: "{passage(start + 1, 10)}".').hit


def test_near_copy_reason_names_the_score_not_the_text(flt: Verbatim) -> None:
    text = obfuscated("filler after every word", 400)
    res = flt.check(text)
    assert res.reason.startswith("near-verbatim:")
    assert "threshold 7.5" in res.reason
    (span,) = res.spans
    assert text[span.start : span.end] not in res.reason


def test_span_covers_the_whole_copied_run(flt: Verbatim) -> None:
    text = "Intro words here. " + P + " And my own ending."
    res = flt.check(text)
    assert res.reason == "verbatim: 30 consecutive words of corpus"
    (span,) = res.spans
    assert span.start == text.index(P) and span.end == text.index(P) + len(P)


def test_joined_words_are_read_as_the_corpus_words_they_join(flt: Verbatim) -> None:
    c = flt.corpus
    assert c.segment("thetideforgottocomeback") == ("the", "tide", "forgot", "to", "come", "back")
    assert c.segment("forgotto") == ("forgot", "to")
    # Ambiguous joins read the way the corpus runs ("practising her bearings on the spire
    # of"), not as "heron", when the pieces around tell.
    assert c.segment("practisingherontheof") == ("practising", "her", "on", "the", "of")
    assert c.segment("hea") == ("he", "a")
    assert c.segment("theuhtideumforgot") == ("the", "uh", "tide", "um", "forgot")
    # Not made of corpus words, or only a little: left alone.
    for word in ["xylophone", "therapist", "beautiful", "photosynthesis"]:
        assert c.segment(word) is None, word


def test_min_words_option_sets_the_run_length() -> None:
    strict = Verbatim(CORPUS, Verbatim.Options(min_words=20, near=False))
    assert strict.check(passage(2000, 19)).action is Action.ALLOW
    assert strict.check(passage(2000, 20)).action is Action.BLOCK


def test_near_option_off_leaves_only_exact_runs() -> None:
    exact_only = Verbatim(CORPUS, Verbatim.Options(near=False))
    assert exact_only.check(obfuscated("filler after every word", 400)).action is Action.ALLOW
    assert exact_only.check(passage(400, 12)).action is Action.BLOCK


def test_near_score_option_sets_the_bar() -> None:
    text = obfuscated("every 3rd word dropped", 1000)
    assert Verbatim(CORPUS, Verbatim.Options(near_score=8)).check(text).hit
    assert not Verbatim(CORPUS, Verbatim.Options(near_score=30)).check(text).hit


@pytest.mark.parametrize("bad", [{"min_word": 10}, {"near_window": 24}, {"max_skipped": -1}])
def test_unknown_or_invalid_option_is_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Verbatim.Options.model_validate(bad)


def test_policy_without_corpus_fails_loudly() -> None:
    with pytest.raises(ValueError, match="corpus"):
        Verbatim.from_policy(PolicyData(name="p"), None, Verbatim.Options())


@pytest.mark.parametrize("text", HITS.values(), ids=HITS.keys())
def test_stream_blocks_before_any_copied_text_is_released(flt: Verbatim, text: str) -> None:
    out = feed(flt.open_stream(), "Sure, here you go. " + text + " The end.")
    assert out.hit is not None and out.hit.action is Action.BLOCK
    (span,) = out.hit.spans
    assert span.start >= out.released


@pytest.mark.parametrize("name", OBFUSCATIONS)
def test_stream_blocks_every_obfuscation(flt: Verbatim, name: str) -> None:
    text = "Here is the passage you asked for: " + obfuscated(name, STARTS[1], 30)
    out = feed(flt.open_stream(), text)
    assert out.hit is not None
    assert out.released <= len("Here is the passage you asked for: ")


@pytest.mark.parametrize(
    "text",
    [UNRELATED, "\n".join(NEAR_MISSES), "\n".join(REVIEWS)],
    ids=["unrelated", "near-misses", "reviews"],
)
def test_stream_releases_clean_text_with_bounded_delay(flt: Verbatim, text: str) -> None:
    out = feed(flt.open_stream(), text)
    assert out.hit is None
    # Held: the words a copy completed later could start with (chains of corpus words in
    # corpus order, at most `max_inserted` words old at their end) and any open word.
    assert max(out.held_words) <= 24
    median = sorted(out.held_words)[len(out.held_words) // 2]
    assert median <= 8


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


def test_a_long_joined_word_is_held_until_it_ends(flt: Verbatim) -> None:
    joined = "".join(w.text for w in words(passage(100, 30)))
    scanner = flt.open_stream()
    text = "Sure: " + joined
    for k in range(len("Sure: "), len(text)):
        res = scanner.scan(text[:k], False)
        assert not res.result.hit
        assert res.stable <= len("Sure: ")
    assert scanner.scan(text + " ok", True).result.hit


def test_corpus_words_are_indexed_after_normalisation(flt: Verbatim) -> None:
    assert len(flt.corpus.ids) == len(words(CORPUS, leet=True))
    assert len(CW) <= len(flt.corpus.ids)


def test_a_long_prompt_is_checked_in_units_with_the_same_verdict(flt: Verbatim) -> None:
    prose = " ".join(REVIEWS).split()
    long = " ".join((prose * 12)[:4000]) + " " + obfuscated("filler after every word", 900)
    steps = flt.check_steps(long)
    units = 0
    while True:
        try:
            next(steps)
            units += 1
        except StopIteration as done:
            result = done.value
            break
    assert units >= 8
    assert result == flt.check(long)
    assert result.hit
