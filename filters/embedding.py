"""Semantic similarity to a policy's exemplars (and its corpus), by MiniLM + FAISS.

Positives: the policy's `exemplars` and its corpus cut into ~40-word chunks (stride 20).
Negatives: its `near_misses` (texts that share names or topic but are allowed). A window hits
when its best cosine to a positive reaches `threshold` and beats its best cosine to a
near-miss by `near_miss_margin` (so "Harry Styles won a Grammy" stays allowed even though it
is close to the Harry Potter exemplars).

Defaults (threshold 0.40, margin 0.03) were tuned on the shipped Harry Potter data with 2-fold
cross-validation (build on half the exemplars and near-misses, judge the other half): held-out
exemplars 80% hit, held-out near-misses 8% hit. Held-out exemplars are *other facts* about the
franchise, so this is a pessimistic recall; raise the threshold for fewer false positives
(0.45: 53% / 5%).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from pydantic import Field

from filters.base import FilterOptions, PolicyData
from filters.cascade import CalibrationSet, text_digest
from filters.normalize import words
from filters.windows import Verdict, WindowedFilter, WindowOptions

CHUNK_WORDS = 40
CHUNK_STRIDE = 20


def corpus_chunks(corpus: str, size: int = CHUNK_WORDS, stride: int = CHUNK_STRIDE) -> list[str]:
    ws = words(corpus)
    if not ws:
        return []
    starts = list(range(0, max(1, len(ws) - size + 1), stride))
    if starts[-1] + size < len(ws):
        starts.append(len(ws) - size)
    return [corpus[ws[s].start : ws[min(s + size, len(ws)) - 1].end] for s in starts]


def flat_index(vectors: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(vectors)
    return index


class Embedding(WindowedFilter):
    name = "embedding"

    class Options(WindowOptions):
        threshold: float = Field(0.40, gt=0.0, le=1.0)
        #: Hit only if best positive cosine >= best near-miss cosine + margin; None: ignore
        #: near-misses.
        near_miss_margin: float | None = 0.03
        use_corpus: bool = True

    options: Embedding.Options

    def __init__(
        self,
        encoder: Any,
        positives: list[str],
        near_misses: list[str],
        options: Embedding.Options,
    ):
        if not positives:
            raise ValueError("embedding: no exemplars or corpus to compare against")
        self.encoder = encoder
        self.options = options
        self.pos_vectors = encoder.encode(positives)
        self.neg_vectors = encoder.encode(near_misses) if near_misses else None
        self.positives = flat_index(self.pos_vectors)
        self.negatives = flat_index(self.neg_vectors) if self.neg_vectors is not None else None

    @classmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: FilterOptions) -> Embedding:
        assert isinstance(options, cls.Options)
        positives = list(data.exemplars)
        if options.use_corpus and data.corpus.strip():
            positives += corpus_chunks(data.corpus)
        if not positives:
            raise ValueError(f"policy {data.name!r}: the embedding filter needs exemplars")
        negatives = list(data.near_misses) if options.near_miss_margin is not None else []
        flt = cls(resources.encoder, positives, negatives, options)
        key = {"positives": text_digest(positives), "near_misses": text_digest(negatives)}
        flt.attach_screen(resources, data.name, positives, negatives, key)
        return flt

    def similarities(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Best cosine to a positive and to a near-miss (-1 without near-misses) per text."""
        vecs = self.encoder.encode(texts)
        pos, _ = self.positives.search(vecs, 1)
        if self.negatives is None:
            return pos[:, 0], np.full(len(texts), -1.0, dtype=np.float32)
        neg, _ = self.negatives.search(vecs, 1)
        return pos[:, 0], neg[:, 0]

    def calibration_flags(self, cal: CalibrationSet) -> np.ndarray:
        vecs = self.encoder.encode(cal.texts)
        pos = _best_leaving_out(vecs, self.pos_vectors, cal.pos)
        margin = self.options.near_miss_margin
        flags = pos >= self.options.threshold
        if margin is not None and self.neg_vectors is not None:
            flags &= pos >= _best_leaving_out(vecs, self.neg_vectors, cal.neg) + margin
        return flags

    def judge(self, texts: list[str]) -> list[Verdict]:
        pos, neg = self.similarities(texts)
        margin = self.options.near_miss_margin
        out = []
        for p, n in zip(pos.tolist(), neg.tolist(), strict=True):
            hit = p >= self.options.threshold and (margin is None or p >= n + margin)
            out.append(Verdict(hit, float(p)))
        return out

    def reason(self, score: float) -> str:
        return f"embedding: cosine {score:.2f} to policy exemplars"


def _best_leaving_out(vecs: np.ndarray, against: np.ndarray, leave_out: list[int]) -> np.ndarray:
    """Best cosine of each row to `against`, without row `leave_out[i]` of it (-1: none)."""
    sims = vecs @ against.T
    rows = np.asarray([i for i, j in enumerate(leave_out) if 0 <= j < len(against)], dtype=int)
    if len(rows):
        sims[rows, np.asarray(leave_out)[rows]] = -np.inf
    best: np.ndarray = sims.max(axis=1) if sims.shape[1] else np.full(len(vecs), -1.0)
    return best


FILTER = Embedding
