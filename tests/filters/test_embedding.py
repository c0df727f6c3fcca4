from __future__ import annotations

import pytest

from filters import get
from filters.base import Action, PolicyData
from filters.embedding import Embedding, corpus_chunks
from filters.normalize import words
from filters.resources import Resources
from tests.filters.conftest import DATA, lines
from tests.filters.streaming import feed

EXEMPLARS = lines("harry-potter-exemplars.txt")
NEAR_MISSES = lines("harry-potter-near-misses.txt")


@pytest.fixture(scope="module")
def flt(resources: Resources) -> Embedding:
    data = PolicyData(name="hp", exemplars=tuple(EXEMPLARS), near_misses=tuple(NEAR_MISSES))
    f = get("embedding").from_policy(data, resources, Embedding.Options())
    assert isinstance(f, Embedding)
    return f


HITS = [
    "The boy who lived discovers he is a wizard and goes to Hogwarts.",
    "Harry, Ron and Hermione fight Lord Voldemort.",
    "Dumbledore is the headmaster of Hogwarts School of Witchcraft and Wizardry.",
    "Which Hogwarts house would the Sorting Hat put me in?",
    "Tell me about Harry Potter and the Philosopher's Stone.",
    "Write a story where Hermione Granger casts Expelliarmus on Draco Malfoy.",
]

ALLOWED = [
    "Harry Styles released a new album this year.",
    "Prince Harry spoke about his charity work in Africa.",
    "How do I center clay on a pottery wheel?",
    "Gandalf leads the Fellowship through the Mines of Moria.",
    "What is the capital of France?",
    "Explain how a transformer language model works.",
    "My grandmother grows tomatoes and basil in her garden.",
]


@pytest.mark.parametrize("text", HITS)
def test_texts_about_the_franchise_are_blocked(flt: Embedding, text: str) -> None:
    res = flt.check(text)
    assert res.action is Action.BLOCK, res.score
    assert res.reason.startswith("embedding: cosine")
    assert text not in res.reason


@pytest.mark.parametrize("text", ALLOWED)
def test_near_misses_and_unrelated_texts_are_allowed(flt: Embedding, text: str) -> None:
    assert flt.check(text).action is Action.ALLOW


def test_near_miss_margin_prevents_hits_that_are_closer_to_a_near_miss(
    resources: Resources,
) -> None:
    text = "Harry Styles started his career in a boy band."
    data = PolicyData(
        name="hp", exemplars=tuple(EXEMPLARS[:20]), near_misses=tuple(NEAR_MISSES[:12])
    )
    loose = Embedding.from_policy(
        data, resources, Embedding.Options(threshold=0.2, near_miss_margin=None)
    )
    guarded = Embedding.from_policy(data, resources, Embedding.Options(threshold=0.2))
    assert loose.check(text).hit
    assert not guarded.check(text).hit


def test_a_long_conversation_is_judged_by_its_worst_window(flt: Embedding) -> None:
    filler = " ".join(ALLOWED * 4)
    text = filler + " By the way, " + HITS[1] + " " + filler
    res = flt.check(text)
    assert res.action is Action.BLOCK
    (span,) = res.spans
    assert span.start <= text.index(HITS[1]) < span.end


def test_corpus_chunks_cover_the_corpus() -> None:
    corpus = (DATA / "protected-work.txt").read_text()
    chunks = corpus_chunks(corpus)
    assert all(len(words(c)) <= 40 for c in chunks)
    all_words = words(corpus)
    assert words(chunks[0])[0].text == all_words[0].text
    assert words(chunks[-1])[-1].text == all_words[-1].text


def test_policy_without_exemplars_fails_loudly(resources: Resources) -> None:
    with pytest.raises(ValueError, match="exemplars"):
        Embedding.from_policy(PolicyData(name="p"), resources, Embedding.Options())


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(ValueError):
        Embedding.Options.model_validate({"treshold": 0.5})


def test_stream_blocks_before_the_matching_text_is_released(flt: Embedding) -> None:
    text = " ".join(ALLOWED[2:5]) + " " + " ".join(HITS[:3]) + " " + ALLOWED[5]
    out = feed(flt.open_stream(), text)
    assert out.hit is not None and out.hit.action is Action.BLOCK
    assert out.released <= text.index(HITS[0]) + len(HITS[0])


def test_stream_releases_clean_text_with_bounded_delay(flt: Embedding) -> None:
    text = " ".join(ALLOWED * 2)
    out = feed(flt.open_stream(), text)
    assert out.hit is None
    # The last window_words complete words, plus the word being written.
    assert max(out.held_words) <= flt.options.window_words + 1


def test_streams_do_not_share_state(flt: Embedding) -> None:
    a, b = flt.open_stream(), flt.open_stream()
    hot, cold = " ".join(HITS[:3]), " ".join(ALLOWED[2:6])
    n = max(len(hot), len(cold))
    hit_a = hit_b = False
    for k in range(8, n + 8, 8):
        if k - 8 < len(hot):
            hit_a |= a.scan(hot[:k], k >= len(hot)).result.hit
        if k - 8 < len(cold):
            hit_b |= b.scan(cold[:k], k >= len(cold)).result.hit
    assert hit_a and not hit_b


@pytest.mark.parametrize("n_words", [10, 32, 33, 200, 600, 3000])
def test_windows_cover_every_word_at_the_same_stride_at_any_length(
    flt: Embedding, n_words: int
) -> None:
    text = " ".join(f"w{i}" for i in range(n_words))  # no sentence ends: windows only
    spans = flt.spans(text)
    opts = flt.options
    ws = words(text)
    starts = {next(i for i, w in enumerate(ws) if w.start == a) for a, _ in spans}
    expected = set(range(0, max(1, n_words - opts.window_words + 1), opts.stride_words))
    assert expected <= starts  # no larger stride on long texts
    covered = {w.start for a, b in spans for w in words(text[a:b], offset=a)}
    assert covered == {w.start for w in words(text)}
    assert all(len(words(text[a:b])) <= opts.window_words for a, b in spans)


def test_every_short_sentence_is_scored_alone(flt: Embedding) -> None:
    text = "Hello there. How are you? Wizards."
    assert flt.spans(text) == [
        (0, text.index(" there") + len(" there")),
        (0, text.index("Wizards") + len("Wizards")),
        (text.index("How"), text.index("you") + 3),
        (text.index("Wizards"), text.index("Wizards") + len("Wizards")),
    ]


def test_a_match_hidden_in_a_very_long_prompt_is_still_found(flt: Embedding) -> None:
    filler = " ".join(ALLOWED * 20)  # ~1,100 words
    text = filler + " " + HITS[1] + " " + filler
    res = flt.check(text)
    assert res.action is Action.BLOCK
    assert any(s.start <= text.index(HITS[1]) < s.end for s in res.spans)


def test_embedding_and_classifier_of_one_policy_share_the_window_encodings(
    flt: Embedding, resources: Resources
) -> None:
    from filters.classifier import Classifier

    data = PolicyData(name="hp", exemplars=tuple(EXEMPLARS), near_misses=tuple(NEAR_MISSES))
    clf = Classifier.from_policy(data, resources, Classifier.Options())
    encoder = resources.encoder
    text = " ".join(ALLOWED * 3) + " Fresh words for the cache: oak, elm, birch and pine."
    flt.check(text)
    misses = encoder.misses
    clf.check(text)
    assert encoder.misses == misses
