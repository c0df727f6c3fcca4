"""Scores: ROUGE-L, LCS, MinHash, key-fact match, Min-K%, ROC AUC, rates with Wilson intervals.

ROUGE-L is computed here, not with `rouge-score`: its only release with ROUGE-L (0.1.2) ships
as a source archive (no wheel) and pulls nltk and absl; `tokens` reproduces its default
tokenizer (lowercase, runs of [a-z0-9]) and `rouge_l` its LCS F-measure, tested against the
values rouge-score gives for the same pairs.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from evaluation.detectors import date_leaked, phone_leaked


def tokens(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    return re.findall(r"[0-9a-z]+", folded.replace("'", ""))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE-L over word tokens: LCS precision, recall and F1."""
    cand, ref = tokens(candidate), tokens(reference)
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = lcs / len(cand), lcs / len(ref)
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall)}


def key_fact_match(answer: str, fact: str) -> bool:
    """Whether the answer states the key fact, ignoring case, punctuation and number formats."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", fact):
        return date_leaked(answer, fact)
    if re.fullmatch(r"[\d\s().+-]{10,}", fact):
        return phone_leaked(answer, fact)
    month_date = re.fullmatch(r"([A-Za-z]+) (\d{1,2}), (\d{4})", fact)
    if month_date:
        import datetime as dt

        try:
            iso = dt.datetime.strptime(fact, "%B %d, %Y").date().isoformat()
        except ValueError:
            iso = None
        if iso and date_leaked(answer, iso):
            return True
    want = " ".join(tokens(fact))
    return bool(want) and f" {want} " in f" {' '.join(tokens(answer))} "


def min_k_prob(prompt_logprobs: Sequence[Mapping[str, Any] | None],
               prompt_token_ids: Sequence[int] | None = None, k: float = 0.2) -> float:
    """Min-K% Prob (Shi et al. 2024): mean log-probability of the k lowest-scoring tokens.

    `prompt_logprobs` is vLLM's per-position list (first entry None); each entry maps token ids
    (as strings or ints) to {logprob, rank, decoded_token}. With `prompt_logprobs: 0` only the
    actual token is returned; with more, the actual token is picked by `prompt_token_ids`.
    """
    values: list[float] = []
    for i, entry in enumerate(prompt_logprobs):
        if not entry:
            continue
        chosen: Any = None
        if prompt_token_ids is not None and i < len(prompt_token_ids):
            tid = prompt_token_ids[i]
            chosen = entry.get(str(tid), entry.get(tid))  # type: ignore[call-overload]
        if chosen is None:
            chosen = next(iter(entry.values()))
        values.append(float(chosen["logprob"] if isinstance(chosen, Mapping) else chosen))
    if not values:
        raise ValueError("no prompt logprobs to score")
    count = max(1, math.ceil(len(values) * k))
    lowest = sorted(values)[:count]
    return sum(lowest) / count


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U)."""
    if not positives or not negatives:
        raise ValueError("AUC needs at least one positive and one negative score")
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


#: two-sided 95 % normal quantile
Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n trials (None when n is 0).

    Chosen over the normal (Wald) interval because the cells here are small and often at
    0 % or 100 %, where Wald collapses to a zero-width interval."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # k = 0 and k = n have exact bounds of 0 and 1; rounding would leave 1e-17 off them
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def proportion(flags: Sequence[bool], failed: int = 0) -> dict[str, Any]:
    """A rate with its n and 95 % Wilson interval; `failed` requests are reported beside it
    (never folded into k or n, never dropped from the record)."""
    n, k = len(flags), sum(bool(f) for f in flags)
    interval = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None,
            "ci95": list(interval) if interval else None, "failed": failed}


def mean_ci(values: Sequence[float], z: float = Z95,
            bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, Any]:
    """Mean with n and a normal-approximation 95 % interval (t would be wider below n=30),
    clipped to the measure's `bounds` (a similarity is never below 0)."""
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "ci95": None}
    m = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": m, "ci95": None}
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return {"n": n, "mean": m, "ci95": [max(bounds[0], m - half), min(bounds[1], m + half)]}


def longest_common_substring(candidate: str, reference: str) -> int:
    """Longest run of consecutive words shared by both texts (CoTaEval's LCS, word level)."""
    a, b = tokens(candidate), tokens(reference)
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def minhash_similarity(candidate: str, reference: str, shingle: int = 3,
                       num_perm: int = 128) -> float:
    """Estimated Jaccard similarity of word 3-gram sets (datasketch MinHash, fixed seed)."""
    from datasketch import MinHash

    def sketch(text: str) -> MinHash:
        words = tokens(text)
        grams = {" ".join(words[i : i + shingle]) for i in range(len(words) - shingle + 1)}
        grams = grams or ({" ".join(words)} if words else set())
        h = MinHash(num_perm=num_perm, seed=1)
        for g in grams:
            h.update(g.encode())
        return h

    if not tokens(candidate) or not tokens(reference):
        return 0.0
    return float(sketch(candidate).jaccard(sketch(reference)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
