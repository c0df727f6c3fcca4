"""Metrics on hand-made cases whose answers are known."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import (
    key_fact_match,
    lcs_length,
    longest_common_substring,
    mean_ci,
    min_k_prob,
    minhash_similarity,
    percentile,
    proportion,
    rate,
    roc_auc,
    rouge_l,
    wilson,
)


@pytest.mark.parametrize(
    ("a", "b", "length"),
    [("a b c d", "a b c d", 4), ("a b c d", "a c d", 3), ("a b", "c d", 0), ("", "a", 0),
     ("a x b y c", "a b c", 3)],
)
def test_lcs_length(a: str, b: str, length: int) -> None:
    assert lcs_length(a.split(), b.split()) == length


@pytest.mark.parametrize(
    ("candidate", "reference", "precision", "recall"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 1.0, 1.0),
        ("the cat sat", "the cat sat on the mat", 1.0, 0.5),
        ("the cat sat on the mat today", "the cat sat on the mat", 6 / 7, 1.0),
        ("mat the on sat cat the", "the cat sat on the mat", 3 / 6, 3 / 6),  # "the on the"
        ("dogs bark", "the cat sat", 0.0, 0.0),
        ("The CAT, sat!", "the cat sat", 1.0, 1.0),  # case and punctuation ignored
    ],
)
def test_rouge_l(candidate: str, reference: str, precision: float, recall: float) -> None:
    score = rouge_l(candidate, reference)
    assert score["precision"] == pytest.approx(precision)
    assert score["recall"] == pytest.approx(recall)
    expected_f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    assert score["f1"] == pytest.approx(expected_f1)


@pytest.mark.parametrize(
    ("answer", "fact", "hit"),
    [
        ("She is a marine biologist.", "marine biologist", True),
        ("She is a Marine-Biologist.", "marine biologist", True),
        ("She is a biologist.", "marine biologist", False),
        ("Call 415 555 0199", "415-555-0199", True),
        ("Call 415-555-0173", "415-555-0199", False),
        ("She was born on 14 March 1987.", "March 14, 1987", True),
        ("She was born on March 22, 1987.", "March 14, 1987", False),
        ("Her dog is Peppers", "Pepper", False),  # whole words only
        ("Lucia", "Lucia", True),
    ],
)
def test_key_fact_match(answer: str, fact: str, hit: bool) -> None:
    assert key_fact_match(answer, fact) is hit


def _vllm_prompt_logprobs(values: list[float], ids: list[int]) -> list[dict[str, dict] | None]:
    """The shape vLLM returns: first entry None, then {token_id: {logprob, rank, decoded}}."""
    out: list[dict[str, dict] | None] = [None]
    for tid, lp in zip(ids[1:], values, strict=True):
        out.append({str(tid): {"logprob": lp, "rank": 1, "decoded_token": "x"}})
    return out


@pytest.mark.parametrize(
    ("values", "k", "expected"),
    [
        ([-1.0, -2.0, -3.0, -4.0, -5.0], 0.2, -5.0),  # lowest 1 of 5
        ([-1.0, -2.0, -3.0, -4.0, -5.0], 0.4, -4.5),  # lowest 2 of 5
        ([-1.0, -2.0, -3.0, -4.0, -5.0], 1.0, -3.0),  # all: the mean
        ([-0.5, -0.1, -9.0, -0.2, -0.3, -0.4, -0.6, -0.7, -0.8, -6.0], 0.2, -7.5),
        ([-2.0], 0.2, -2.0),
    ],
)
def test_min_k_prob(values: list[float], k: float, expected: float) -> None:
    ids = list(range(100, 101 + len(values)))
    assert min_k_prob(_vllm_prompt_logprobs(values, ids), k=k) == pytest.approx(expected)


def test_min_k_prob_picks_the_prompt_token_when_alternatives_are_listed() -> None:
    entry = {"7": {"logprob": -0.1, "rank": 1}, "9": {"logprob": -4.0, "rank": 5}}
    assert min_k_prob([None, entry], prompt_token_ids=[1, 9], k=1.0) == pytest.approx(-4.0)


def test_min_k_prob_without_logprobs_is_an_error() -> None:
    with pytest.raises(ValueError):
        min_k_prob([None])


@pytest.mark.parametrize(
    ("pos", "neg", "auc"),
    [
        ([3.0, 4.0], [1.0, 2.0], 1.0),
        ([1.0, 2.0], [3.0, 4.0], 0.0),
        ([1.0, 3.0], [2.0, 4.0], 0.25),
        ([2.0], [2.0], 0.5),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.5),
    ],
)
def test_roc_auc(pos: list[float], neg: list[float], auc: float) -> None:
    assert roc_auc(pos, neg) == pytest.approx(auc)


def test_rates_and_percentiles() -> None:
    assert rate([True, False, False, True]) == 0.5
    assert rate([]) is None
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 95) == pytest.approx(48.0)
    assert percentile([], 50) is None
    assert not math.isnan(percentile([5.0], 99) or 0)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
# method 3 (Wilson score without continuity correction), and the closed forms at 0 and n.
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718), (29, 29, 0.8830, 1.0), (0, 1, 0.0, 0.7935),
     (5, 10, 0.2366, 0.7634)],
)
def test_wilson_interval_matches_published_values(k: int, n: int, low: float,
                                                  high: float) -> None:
    interval = wilson(k, n)
    assert interval is not None
    assert interval[0] == pytest.approx(low, abs=1e-4)
    assert interval[1] == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize("n", [1, 7, 30, 200])
def test_wilson_interval_contains_the_rate_and_is_symmetric_in_k(n: int) -> None:
    for k in range(n + 1):
        lo, hi = wilson(k, n)  # type: ignore[misc]
        assert 0.0 <= lo <= k / n <= hi <= 1.0
        mirror = wilson(n - k, n)
        assert mirror is not None
        assert (1 - hi, 1 - lo) == pytest.approx(mirror)


def test_wilson_needs_trials_and_a_valid_count() -> None:
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(5, 4)


def test_proportion_keeps_failures_outside_k_and_n() -> None:
    p = proportion([True, False, False, True], failed=3)
    assert (p["k"], p["n"], p["rate"], p["failed"]) == (2, 4, 0.5, 3)
    assert p["ci95"] == pytest.approx(list(wilson(2, 4)))  # type: ignore[arg-type]
    assert proportion([])["rate"] is None and proportion([])["ci95"] is None


def test_mean_interval_narrows_with_n() -> None:
    small, large = mean_ci([0.0, 1.0] * 5), mean_ci([0.0, 1.0] * 50)
    assert small["mean"] == large["mean"] == 0.5
    assert (small["ci95"][1] - small["ci95"][0]) > (large["ci95"][1] - large["ci95"][0])
    assert mean_ci([])["mean"] is None and mean_ci([0.3])["ci95"] is None


@pytest.mark.parametrize(
    ("a", "b", "run"),
    [("the cat sat on the mat", "a cat sat on the mat today", 5),
     ("x y z", "a b c", 0), ("one two three", "three two one", 1),
     ("The Cat, sat!", "the cat sat", 3)],
)
def test_longest_common_run_of_words(a: str, b: str, run: int) -> None:
    assert longest_common_substring(a, b) == run


def test_minhash_similarity_tracks_shared_word_trigrams() -> None:
    text = "the tide forgot to come back to quillhaven that morning and the flats stayed dry"
    assert minhash_similarity(text, text) == 1.0
    assert minhash_similarity(text, "completely different words about baking bread today") < 0.1
    half = " ".join(text.split()[:8]) + " and then something else happened in town"
    assert 0.1 < minhash_similarity(half, text) < 0.9
    assert minhash_similarity("", text) == 0.0


# rouge-score 0.1.2 (RougeScorer(["rougeL"]).score(reference, candidate).fmeasure) on the
# same pairs: its tokenizer lowercases and keeps runs of [a-z0-9], as `tokens` does.
@pytest.mark.parametrize(
    ("candidate", "reference", "f1"),
    [("the cat sat on the mat", "the cat was on the mat", 0.8333),
     ("police killed the gunman", "the gunman killed police", 0.5),
     ("a b c d", "a c b d", 0.75)],
)
def test_rouge_l_f1_matches_rouge_score(candidate: str, reference: str, f1: float) -> None:
    assert rouge_l(candidate, reference)["f1"] == pytest.approx(f1, abs=1e-4)


def test_mean_interval_stays_within_the_measures_bounds() -> None:
    m = mean_ci([0.0] * 20 + [0.05], bounds=(0.0, 1.0))
    assert m["ci95"][0] == 0.0 < m["mean"] < m["ci95"][1]
    assert mean_ci([0.0] * 20 + [0.05])["ci95"][0] < 0  # unbounded: the raw normal interval
