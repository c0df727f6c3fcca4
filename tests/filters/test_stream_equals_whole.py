"""A streamed answer gets exactly the verdict of the same answer sent whole, for every chunking.

Two levels:
- the windowed scanner scores exactly the spans `check` scores (windows and short sentences of
  the final text) and releases no word before every span that can hold it is scored: checked
  with a recording filter, no model, on many random texts and chunkings;
- every text filter of the shipped policies (pii, verbatim, embedding, classifier, literal;
  logit_bias only bans tokens upstream and sees no text), with the real models: random answers built
  from the policies' own data (exemplars, near-misses, corpus passages, the person's data in
  many forms) and filler, cut at random points, through the gateway's stream guard and
  through its whole-answer check: blocked or not, and the text the client gets, are the same.
And the scores a stream relies on do not depend on what else is in an encoder batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from filters.base import PolicyData, StreamScanner, TextFilter
from filters.classifier import Classifier
from filters.encoder import Encoder
from filters.normalize import words
from filters.resources import Resources
from filters.windows import Verdict, WindowedFilter, WindowOptions
from gateway.policy import load_directory
from gateway.policy.loading import LoadedPolicy, build_policy_set
from tests.filters.conftest import DATA, lines
from tests.gateway.guard_harness import Harness, output_only

POLICIES = DATA.parent
EXEMPLARS = lines("harry-potter-exemplars.txt")
NEAR_MISSES = lines("harry-potter-near-misses.txt") + lines("protected-work-near-misses.txt")
CORPUS = (DATA / "protected-work.txt").read_text().split()
PII_FORMS = [
    "415-555-0199",
    "(415) 555 0199",
    "4 1 5 . 5 5 5 . 0 1 9 9",
    "four one five five five five zero one nine nine",
    "+1 415 555 0199",
    "elena.marquez@example.org",
    "elena dot marquez at example dot org",
    "42 Harbor Lane, Sausalito, CA 94965",
    "42 Harbor Ln",
    "1987-03-14",
    "March 14, 1987",
    "14 March 1987",
    "03/14/1987",
    # other people's values: must pass in both
    "415-555-0173",
    "daniel.okafor@example.org",
    "1987-03-15",
    "Elena Marquez",
]
RECIPE = (
    "Preheat the oven to 180 degrees and butter a round cake tin. Whisk four eggs with a cup "
    "of sugar until pale and thick, then fold in the flour, a pinch of salt and the zest of "
    "one lemon. Melt the butter gently and stir it in with a splash of milk. Pour the batter "
    "into the tin and bake for about forty minutes, until a skewer comes out clean. Let the "
    "cake cool in the tin for ten minutes before turning it out onto a rack. Meanwhile warm "
    "the lemon juice with two spoons of honey. Brush the syrup over the warm cake so that it "
    "soaks in evenly. Serve it with cream or yoghurt and fresh berries; it keeps for three "
    "days in a tin."
)
FILLER = [s.strip() + "." for s in RECIPE.split(".") if s.strip()] + [
    "Yes.",
    "Okay!",
    "Sure;",
    "Next",
    "Thanks for asking.",
]
JOINERS = [" ", ". ", "\n", ", ", "  ", "\n\n", "\u200b ", "; "]


@st.composite
def answers(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["exemplar", "near", "corpus", "pii", "filler", "filler"]))
        if kind == "exemplar":
            parts.append(draw(st.sampled_from(EXEMPLARS)))
        elif kind == "near":
            parts.append(draw(st.sampled_from(NEAR_MISSES)))
        elif kind == "corpus":
            start = draw(st.integers(0, len(CORPUS) - 1))
            parts.append(" ".join(CORPUS[start : start + draw(st.integers(3, 40))]))
        elif kind == "pii":
            parts.append(draw(st.sampled_from(PII_FORMS)))
        else:
            parts.append(draw(st.sampled_from(FILLER)))
        parts.append(draw(st.sampled_from(JOINERS)))
    return "".join(parts)


@st.composite
def chunked(draw: st.DrawFn) -> list[str]:
    text = draw(answers())
    if draw(st.booleans()):  # token-sized pieces
        cuts, pos = [], 0
        while pos < len(text):
            pos += draw(st.integers(1, 6))
            cuts.append(min(pos, len(text)))
    else:  # random cut points, some chunks long
        inner = st.integers(1, max(1, len(text) - 1))
        cuts = [*sorted(set(draw(st.lists(inner, max_size=12)))), len(text)]
    chunks, prev = [], 0
    for cut in cuts:
        if cut > prev:
            chunks.append(text[prev:cut])
            prev = cut
    if draw(st.booleans()):
        chunks.append("")  # the usual last event: finish_reason with no text
    return chunks


# -- the windowed scanner, without a model -----------------------------------------------------
class Recording(WindowedFilter):
    """Scores nothing as a hit; remembers which spans were scored and what was released then."""

    name = "recording"

    def __init__(self, options: WindowOptions) -> None:
        self.options = options
        self.scored: list[tuple[int, int]] = []
        self.early: list[tuple[int, int]] = []
        self.released = 0

    @classmethod
    def from_policy(cls, data: PolicyData, resources: object, options: object) -> Recording:
        raise NotImplementedError

    def judge(self, texts: list[str]) -> list[Verdict]:
        return [Verdict(False, 0.0) for _ in texts]

    def verdict_steps(self, text, spans):  # type: ignore[no-untyped-def]
        self.scored += spans
        self.early += [s for s in spans if s[0] < self.released]
        return (yield from super().verdict_steps(text, spans))

    def reason(self, score: float) -> str:
        return ""


def _drive(scanner: StreamScanner, flt: Recording, chunks: list[str]) -> None:
    text = ""
    for i, chunk in enumerate(chunks):
        text += chunk
        flt.released = scanner.scan(text, i == len(chunks) - 1).stable


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    chunks=chunked(),
    size=st.sampled_from([4, 5, 8, 32]),
    stride=st.sampled_from([1, 2, 3, 4, 8]),
)
def test_stream_scores_exactly_the_spans_of_the_whole_text_and_none_after_release(
    chunks: list[str], size: int, stride: int
) -> None:
    flt = Recording(WindowOptions(window_words=size, stride_words=min(stride, size)))
    text = "".join(chunks)
    _drive(flt.open_stream(), flt, chunks)
    assert set(flt.scored) == set(flt.spans(text))
    assert flt.early == []


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hermione Granger. " + RECIPE, ["Hermione Granger"]),
        (RECIPE + " Hogwarts!", ["Hogwarts"]),
        ("Fine\nOk\n" + RECIPE, ["Fine", "Ok"]),
    ],
    ids=["two-words-first", "one-word-last", "line-breaks"],
)
def test_one_and_two_word_sentences_are_scored_alone_in_stream_and_whole(
    text: str, sentences: list[str]
) -> None:
    flt = Recording(WindowOptions())
    whole = {text[a:b] for a, b in flt.spans(text)}
    _drive(flt.open_stream(), flt, [text[i : i + 3] for i in range(0, len(text), 3)])
    streamed = {text[a:b] for a, b in flt.scored}
    for sentence in sentences:
        assert sentence in whole and sentence in streamed


def test_hold_back_is_the_last_window_of_words() -> None:
    flt = Recording(WindowOptions(window_words=8, stride_words=4))
    scanner = flt.open_stream()
    text = " ".join(f"w{i}" for i in range(40)) + " "
    stable = scanner.scan(text, False).stable
    assert len(words(text[stable:])) == 8


# -- every shipped filter, real models ---------------------------------------------------------
@pytest.fixture(scope="module")
def shipped(resources: Resources) -> dict[str, LoadedPolicy]:
    if resources.tokenizer_dir is None:
        pytest.skip("served model's tokenizer not bundled (logit_bias needs it)")
    policy_set = build_policy_set(load_directory(POLICIES), resources, max_holdback_chars=1024)
    by_type = {}
    for policy in policy_set.policies:
        for bound in policy.filters:
            by_type[bound.type] = output_only(policy, bound)
    assert set(by_type) == {
        "pii", "verbatim", "embedding", "classifier", "logit_bias", "literal"
    }
    return by_type


@pytest.fixture(scope="module")
def harnesses(
    shipped: dict[str, LoadedPolicy], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Harness]]:
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    made = {kind: Harness([policy], audit) for kind, policy in shipped.items()}
    yield made
    for harness in made.values():
        harness.close()


@pytest.mark.parametrize("kind", ["pii", "verbatim", "embedding", "classifier", "literal"])
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chunks=chunked())
def test_streamed_verdict_equals_whole_verdict_for_every_shipped_filter(
    harnesses: dict[str, Harness], shipped: dict[str, LoadedPolicy], kind: str, chunks: list[str]
) -> None:
    harness = harnesses[kind]
    text = "".join(chunks)
    whole = harness.whole(text)
    streamed = harness.stream(chunks)
    event("blocked" if whole.blocked else "redacted" if whole.text != text else "unchanged")
    assert streamed.blocked == whole.blocked
    if not whole.blocked:
        assert streamed.text == whole.text
    else:
        flt = shipped[kind].filters[0].filter
        assert isinstance(flt, TextFilter)
        spans = flt.check(text).spans
        assert all(len(streamed.text) <= span.start for span in spans)


def test_a_concept_sentence_inside_a_recipe_is_blocked_streamed_as_whole(
    harnesses: dict[str, Harness],
) -> None:
    harness = harnesses["embedding"]
    middle = RECIPE.index("Let the cake")
    text = RECIPE[:middle] + "Harry, Ron and Hermione fight Lord Voldemort. " + RECIPE[middle:]
    assert harness.whole(text).blocked
    for size in (1, 4, 50, len(text)):
        streamed = harness.stream([text[i : i + size] for i in range(0, len(text), size)])
        assert streamed.blocked
        assert "Hermione" not in streamed.text


# -- scores that do not depend on the batch ----------------------------------------------------
BATCH_TEXTS = EXEMPLARS[:6] + NEAR_MISSES[:6] + [" ".join(CORPUS[i : i + 32]) for i in (0, 99)]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_texts_vector_is_the_same_alone_and_in_any_batch(backend: str) -> None:
    model_dir = Resources().encoder.model_dir
    try:
        encoder = Encoder(model_dir, backend=backend, cache_size=0)  # type: ignore[arg-type]
    except FileNotFoundError:
        pytest.skip(f"{backend} model not prepared")
    alone = np.stack([encoder.encode([t])[0] for t in BATCH_TEXTS])
    batched = encoder.encode(BATCH_TEXTS)
    shuffled = encoder.encode(BATCH_TEXTS[::-1])[::-1]
    assert np.array_equal(alone, batched)
    assert np.array_equal(alone, shuffled)


def test_a_windows_classifier_probability_is_the_same_alone_and_in_any_batch(
    resources: Resources,
) -> None:
    data = PolicyData(name="hp", exemplars=tuple(EXEMPLARS), near_misses=tuple(NEAR_MISSES))
    clf = Classifier.from_policy(data, resources, Classifier.Options())
    texts = BATCH_TEXTS * 3  # 42 rows: past the sizes where BLAS switches kernels
    alone = [clf.judge([t])[0].score for t in texts]
    assert [v.score for v in clf.judge(texts)] == alone
