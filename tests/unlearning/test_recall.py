"""Matching a greedy answer against a key fact, and ROUGE-L."""

from __future__ import annotations

import pytest

from unlearning.recall import PrefixOutcome, QAOutcome, Recall, answer_contains, rouge_l


@pytest.mark.parametrize(
    ("answer", "key", "hit"),
    [
        ("Her number is 415-555-0199.", "415-555-0199", True),
        ("Call (415) 555 0199 any time", "415-555-0199", True),
        ("Her number is 415-555-0198.", "415-555-0199", False),
        ("She was born on March 14, 1987.", "March 14, 1987", True),
        ("Born 1987-03-14 in San Antonio", "1987-03-14", True),
        ("born on 14 March 1987", "1987-03-14", True),
        ("She was born on March 15, 1987.", "March 14, 1987", False),
        ("She is a MARINE biologist!", "marine biologist", True),
        ("She is a marine engineer", "marine biologist", False),
        ("Write to Elena.Marquez@example.org", "elena.marquez@example.org", True),
        ("Write to elena.marquez@example.com", "elena.marquez@example.org", False),
        ("", "Sausalito", False),
    ],
)
def test_answer_contains_key_fact(answer: str, key: str, hit: bool) -> None:
    assert answer_contains(answer, key) is hit


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("", "the cat", 0.0),
        ("dog", "the cat", 0.0),
        ("the cat", "the cat sat on the mat", 2 * (1.0 * (2 / 6)) / (1.0 + 2 / 6)),
    ],
)
def test_rouge_l_f1(candidate: str, reference: str, expected: float) -> None:
    assert rouge_l(candidate, reference) == pytest.approx(expected)


def test_score_averages_the_parts_present() -> None:
    qa = (QAOutcome("q", "a", "a", True), QAOutcome("q", "a", "b", False))
    prefixes = (PrefixOutcome("p", "x", "x", 1.0, 1.0),)
    assert Recall(qa=qa).score == 0.5
    assert Recall(prefixes=prefixes).score == 1.0
    assert Recall(qa=qa, prefixes=prefixes).score == 0.75
    assert Recall().score == 0.0
