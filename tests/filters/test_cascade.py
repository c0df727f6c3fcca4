"""The cascade: a static model distilled from MiniLM screens spans, MiniLM confirms.

- the static model is built by the bundle step and read offline without torch;
- a span's static vector is the span encoded alone, to the last bit, whichever stretch of
  text it was cut from (so a stream and a whole text screen alike);
- the screen loses nothing the MiniLM-only filter catches: held-back paraphrases of the
  target (none of them an exemplar) alone, planted as a sentence at many positions of
  1,500- and 4,000-word benign prompts, and joined into a benign sentence so that only
  sliding windows see them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.benign import benign_prompt
from filters.base import PolicyData
from filters.classifier import Classifier
from filters.embedding import Embedding
from filters.resources import Resources
from filters.static_encoder import StaticEncoder
from filters.windows import WindowedFilter, text_spans
from stack import bundle
from tests.filters.conftest import lines

#: Paraphrases of the target that the policy does not hold (not exemplars, not near-misses).
HELD_BACK = (
    "The boy who survived the killing curse grew up in a cupboard under the stairs at his "
    "relatives' house.",
    "A half-giant arrives on a stormy night to tell the orphan that he has a place at a school "
    "of magic.",
    "Ron, Hermione and Harry hunt for the pieces of the dark lord's soul hidden in enchanted "
    "objects.",
    "New students at the castle are sorted by a talking hat into four houses named after the "
    "founders.",
    "The young wizard with round glasses catches the golden snitch in a match played on "
    "broomsticks.",
    "The potions master who bullied Harry had loved his mother all along.",
    "Which actor played the boy wizard in the films made from Rowling's seven books?",
    "Tell me how the story of the orphan wizard and the dark lord ends in the last book.",
    "Write a scene where the headmaster of the wizarding school gives Harry his father's "
    "invisibility cloak.",
    "Describe the bank run by goblins where the young wizard finds his parents' gold.",
)
#: Where a held-back sentence is planted in a prompt, as a share of its words.
POSITIONS = (0.0, 0.13, 0.31, 0.5, 0.69, 0.87, 1.0)


@pytest.fixture(scope="module")
def static(resources: Resources) -> StaticEncoder:
    enc = resources.static_encoder
    if enc is None:
        pytest.skip("static model not prepared (run `lethe models prepare`)")
    assert isinstance(enc, StaticEncoder)
    return enc


# -- the bundle step and offline use ------------------------------------------------------------
def test_prepare_builds_the_static_model_beside_minilm_and_records_its_teacher() -> None:
    paths = bundle.prepare(verify=False)
    marker = bundle.read_marker(paths.static)
    assert marker is not None
    assert marker["sources"]["distilled_from"] == str(paths.embedder)
    assert marker["sources"]["teacher_sha256"]
    assert marker["files"]["model.safetensors"]["sha256"]
    assert bundle.verify_static(paths.static) > 0.5


def test_static_model_loads_and_encodes_offline_without_torch_or_transformers() -> None:
    code = (
        "import sys\n"
        "for m in ('torch', 'transformers', 'sentence_transformers', 'huggingface_hub'):\n"
        "    sys.modules[m] = None\n"
        "from filters.static_encoder import StaticEncoder\n"
        "v = StaticEncoder().encode(['Paris is the capital of France.'])\n"
        "assert v.shape == (1, 256) and abs(float((v * v).sum()) - 1) < 1e-5\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    if not (bundle.model_paths().static / "model.safetensors").is_file():
        pytest.skip("static model not prepared")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


# -- span vectors are the span alone ------------------------------------------------------------
PIECES = [
    "Harry", "wizard", "don't", "co-operate", "naïve", "Straße", "42", "3.14", "hello,", "(see",
    "below)", "e-mail:", "x@y.org", "日本語", "😀", "unbelievably", "antidisestablishment",
    "\u200b", "H\u200barry", "ﬁne", "re-read", "...", "—", "A.B.C.",
]


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    parts=st.lists(st.sampled_from(PIECES), min_size=1, max_size=40),
    seps=st.lists(st.sampled_from([" ", "  ", "\n", ", ", "", ". "]), min_size=40, max_size=40),
    cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 400)), max_size=6),
)
def test_a_spans_static_vector_is_the_span_encoded_alone(
    static: StaticEncoder, parts: list[str], seps: list[str], cuts: list[tuple[int, int]]
) -> None:
    text = "".join(p + s for p, s in zip(parts, seps, strict=False))
    spans = text_spans(text, 8, 3)
    # Arbitrary character spans too, cutting words anywhere.
    spans += [(min(a, b) % (len(text) + 1), max(a, b) % (len(text) + 1)) for a, b in cuts]
    spans = [(a, b) for a, b in spans if a < b]
    if not spans:
        return
    got = static.span_vectors(text, spans)
    alone = static.encode([text[a:b] for a, b in spans])
    assert np.array_equal(got, alone)


# -- recall kept ---------------------------------------------------------------------------------
def _policy(resources: Resources, screen: bool) -> list[WindowedFilter]:
    data = PolicyData(
        name="harry-potter",
        exemplars=tuple(lines("harry-potter-exemplars.txt")),
        near_misses=tuple(lines("harry-potter-near-misses.txt")),
    )
    emb = Embedding.from_policy(data, resources, Embedding.Options(threshold=0.45, screen=screen))
    clf = Classifier.from_policy(data, resources, Classifier.Options(screen=screen))
    assert isinstance(emb, WindowedFilter) and isinstance(clf, WindowedFilter)
    return [emb, clf]


@pytest.fixture(scope="module")
def cascade(resources: Resources, static: StaticEncoder) -> list[WindowedFilter]:
    filters = _policy(resources, screen=True)
    assert all(f.screen is not None and f.calibration is not None for f in filters)
    return filters


@pytest.fixture(scope="module")
def minilm_only(resources: Resources) -> list[WindowedFilter]:
    return _policy(resources, screen=False)


def _hit(filters: list[WindowedFilter], text: str) -> bool:
    return any(f.check(text).hit for f in filters)


def test_the_screen_sends_few_benign_windows_to_minilm(cascade: list[WindowedFilter]) -> None:
    text = benign_prompt(1500, seed=7)
    for flt in cascade:
        assert flt.screen is not None and flt.calibration is not None
        spans = flt.spans(text)
        passed = np.mean(flt.screen.passes(text, spans))
        assert passed < 0.5, f"{flt.name}: {passed:.0%} of benign windows reach MiniLM"


@pytest.mark.parametrize("sentence", HELD_BACK, ids=[s[:30] for s in HELD_BACK])
def test_a_held_back_paraphrase_alone_gets_the_minilm_only_verdict(
    cascade: list[WindowedFilter], minilm_only: list[WindowedFilter], sentence: str
) -> None:
    for flt, ref in zip(cascade, minilm_only, strict=True):
        assert flt.check(sentence).hit == ref.check(sentence).hit, flt.name


def test_most_held_back_paraphrases_are_caught_alone(cascade: list[WindowedFilter]) -> None:
    caught = [s for s in HELD_BACK if _hit(cascade, s)]
    assert len(caught) >= 8, f"only {len(caught)} of {len(HELD_BACK)} caught"


def _plant(prompt: str, sentence: str, at: float, joined: bool) -> tuple[str, tuple[int, int]]:
    """`sentence` inserted at a word boundary; `joined`: glued into the benign sentence there
    (no sentence end around it), so only sliding windows hold it."""
    ws = prompt.split(" ")
    k = round(at * (len(ws) - 1))
    before = " ".join(ws[:k])
    body = sentence.rstrip(".?!") if joined else sentence
    glue_in, glue_out = (", as in ", ", and ") if joined else (". ", " ")
    head = before + glue_in if before else ""
    text = head + body + glue_out + " ".join(ws[k:])
    return text, (len(head), len(head) + len(body))


def _reference_hit(ref: list[WindowedFilter], text: str, plant: tuple[int, int]) -> bool:
    """The MiniLM-only verdict on the spans that hold part of the planted sentence (the
    others hold only the allowed prompt's words)."""
    a, b = plant
    from filters.base import run_steps

    for flt in ref:
        spans = [s for s in flt.spans(text) if s[0] < b and s[1] > a]
        if run_steps(flt.verdict_steps(text, spans)).hit:
            return True
    return False


def _allowed_prompt(filters: list[WindowedFilter], length: int, seed: int) -> str:
    """The first benign prompt from `seed` on that the policy allows. The MiniLM classifier
    itself flags some technical prompts (a third of the 4,000-word ones here: grammar
    snippets, "Bill's Friends"), a precision problem of its own; a planted sentence must be
    the only thing to catch."""
    for k in range(20):
        prompt = benign_prompt(length, seed=seed + k)
        if not _hit(filters, prompt):
            return prompt
    raise AssertionError(f"no allowed {length}-word benign prompt in 20 seeds")


@pytest.mark.parametrize("length", [1500, 4000])
def test_the_screen_never_adds_a_hit_on_benign_prompts(
    cascade: list[WindowedFilter], minilm_only: list[WindowedFilter], length: int
) -> None:
    for seed in range(3):
        prompt = benign_prompt(length, seed=seed)
        for flt, ref in zip(cascade, minilm_only, strict=True):
            if flt.check(prompt).hit:
                assert ref.check(prompt).hit, (flt.name, seed)


@pytest.mark.parametrize("length", [1500, 4000])
def test_a_planted_sentence_is_caught_at_every_position_as_it_is_alone(
    cascade: list[WindowedFilter], length: int
) -> None:
    prompt = _allowed_prompt(cascade, length, seed=length)
    missed = []
    for sentence in HELD_BACK:
        if not _hit(cascade, sentence):
            continue
        for at in POSITIONS:
            text, _ = _plant(prompt, sentence, at, joined=False)
            if not _hit(cascade, text):
                missed.append((sentence[:40], at))
    assert missed == []


@pytest.mark.parametrize("length", [1500, 4000])
def test_a_sentence_joined_into_benign_text_is_caught_wherever_minilm_alone_catches_it(
    cascade: list[WindowedFilter], minilm_only: list[WindowedFilter], length: int
) -> None:
    prompt = _allowed_prompt(cascade, length, seed=length + 1)
    lost, caught, placements = [], 0, 0
    for sentence in HELD_BACK:
        for at in POSITIONS:
            text, plant = _plant(prompt, sentence, at, joined=True)
            placements += 1
            hit = _hit(cascade, text)
            caught += hit
            if _reference_hit(minilm_only, text, plant) and not hit:
                lost.append((sentence[:40], at))
    assert lost == []
    print(f"{length} words: {caught}/{placements} joined placements caught")
