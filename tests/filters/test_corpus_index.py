"""The large-corpus n-gram index: build, load, look up, confirm; same words as the filters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters import corpus_index
from filters.corpus_index import CorpusIndex, fast_words
from filters.normalize import words
from tests.filters.conftest import DATA

CORPUS = (DATA / "protected-work.txt").read_text(encoding="utf-8")
BENIGN = (DATA / "protected-work-near-misses.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index") / "protected-work"
    corpus_index.build([CORPUS, "A second book: h4rry and the $tone of w1zards."], out)
    return out


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from("abcXYZ0134578 @$.-,'\t\n_!é\u200bА"), max_size=60))
def test_fast_words_are_the_filters_words(text: str) -> None:
    assert fast_words(text) == [w.text for w in words(text, leet=True)]


def test_build_then_load_round_trip_records_what_it_holds(built: Path) -> None:
    index = CorpusIndex(built)
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["n"] == 12
    assert manifest["words"] == len(index.ids) == len(fast_words(CORPUS)) + 9
    assert manifest["content_sha256"] == corpus_index.content_hash(
        [CORPUS, "A second book: h4rry and the $tone of w1zards."]
    )
    assert not index.ids.flags.writeable  # memory-mapped read-only


@pytest.mark.parametrize(
    ("make", "hit"),
    [
        (lambda ws: " ".join(ws[100:112]), True),  # exactly 12 words
        (lambda ws: "As the book says, " + " ".join(ws[40:70]).upper() + " and so on.", True),
        (lambda ws: "Quote: " + " ... ".join(ws[200:212]), True),  # punctuation between words
        (lambda ws: " ".join(ws[100:111]), False),  # 11 words: one short
        (lambda ws: " ".join([*ws[100:106], "banana", *ws[106:112]]), False),  # broken run
        (lambda ws: " ".join(reversed(ws[100:112])), False),  # same words, other order
    ],
    ids=["twelve", "inside-upper", "punctuated", "eleven", "interrupted", "reversed"],
)
def test_a_run_of_corpus_words_is_found_and_confirmed(built: Path, make: object, hit: bool) -> None:
    index = CorpusIndex(built)
    text = make(CORPUS.split())  # type: ignore[operator]
    found = index.find(fast_words(text))
    assert bool(found) == hit
    for h in found:
        assert list(index.ids[h.corpus_position : h.corpus_position + 12]) == list(
            index.to_ids(fast_words(text))[h.word : h.word + 12]
        )


def test_benign_text_is_never_blocked_even_when_the_bloom_filter_passes_a_run(
    built: Path,
) -> None:
    index = CorpusIndex(built)
    rng = random.Random(3)
    vocab = list(index.vocab)
    passes = blocked = 0
    for _ in range(300):  # corpus words in random order: every run is known to the vocabulary
        toks = [rng.choice(vocab) for _ in range(40)]
        passes += int(index.maybe(index.to_ids(toks)).sum())
        blocked += bool(index.find(toks))
    assert blocked == 0
    assert not index.find(fast_words(BENIGN))
    # The Bloom filter alone lets some through (its false-positive rate), confirmation none.
    assert passes < 0.05 * 300 * 29


def test_a_leetspeak_copy_matches_a_leetspeak_corpus(built: Path) -> None:
    index = CorpusIndex(built)
    corpus = fast_words(CORPUS)
    text = " ".join(w.replace("e", "3").replace("a", "@") for w in corpus[300:312])
    assert index.find(fast_words(text))
    assert np.all(index.to_ids(fast_words("zzqx unknownword")) == -1)
