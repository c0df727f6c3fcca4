"""Metrics on hand-made cases whose answers are known."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import (
    key_fact_match,
    lcs_length,
    min_k_prob,
    percentile,
    rate,
    roc_auc,
    rouge_l,
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
