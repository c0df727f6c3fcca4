"""Verbatim and near-verbatim copies of a protected corpus, by word shingles.

Both the corpus and the checked text go through `filters.normalize.words` (case, accents,
punctuation and separators, one word per line, leetspeak), so "The tide-forgot_to|COME back"
matches "the tide forgot to come back". Words split by separators ("Har-ry", "H a r r y",
"Dumble\\ndore") are joined back when the joined form is a corpus word and a piece is not.

Two tests:
- exact: `min_words` (default 12) consecutive corpus words, in corpus order;
- near: a window of `near_window` (24) words in which at least `near_fraction` (0.4) of the
  distinct `near_ngram`-grams (3-grams) occur somewhere in the corpus: copies with about
  one word in five swapped, inserted or dropped. Measured on the shipped data: reviews and
  summaries *about* the protected work peak at 0.23 (names and phrases are shared), other
  texts below 0.14; copies with 10% of words replaced score 0.73 or more, 20% mostly 0.41+.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from filters.base import (
    ALLOW,
    Action,
    Filter,
    FilterOptions,
    FilterResult,
    PolicyData,
    ScanResult,
    Span,
    StreamScanner,
)
from filters.normalize import Word, last_word_open, words

#: Longest chain of non-single-character pieces joined back into one word ("Dum-ble-dore").
MAX_PIECES = 4
#: Longest chain of single letters joined back into one word ("H a r r y").
MAX_LETTERS = 24


class _Corpus:
    """Word ids of the corpus, its shingle sets and a position index."""

    def __init__(self, text: str, n: int, m: int, leet: bool):
        toks = [w.text for w in words(text, leet=leet)]
        self.vocab: dict[str, int] = {}
        ids = [self.vocab.setdefault(t, len(self.vocab)) for t in toks]
        self.ids = np.asarray(ids, dtype=np.int32)
        self.exact = {hash(tuple(ids[i : i + n])) for i in range(len(ids) - n + 1)}
        self.near = {hash(tuple(ids[i : i + m])) for i in range(len(ids) - m + 1)}
        order = np.argsort(self.ids, kind="stable")
        bounds = np.searchsorted(self.ids[order], np.arange(len(self.vocab) + 1))
        self.positions = [order[bounds[k] : bounds[k + 1]] for k in range(len(self.vocab))]
        self.prefixes = {w[:k] for w in self.vocab for k in range(1, len(w))}

    def occurs(self, seq: list[int]) -> bool:
        """Whether `seq` appears as consecutive words somewhere in the corpus."""
        if not seq or seq[0] < 0:
            return False
        cand = self.positions[seq[0]]
        cand = cand[cand + len(seq) <= len(self.ids)]
        for t in range(1, len(seq)):
            if seq[t] < 0 or cand.size == 0:
                return False
            cand = cand[self.ids[cand + t] == seq[t]]
        return cand.size > 0

    def resolve(self, raw: list[Word], more: bool) -> tuple[list[Word], int]:
        """Join split words back; returns the words and the index in `raw` of the first piece
        whose joining still depends on words not seen yet (len(raw) when none)."""
        out: list[Word] = []
        i = 0
        while i < len(raw):
            concat = raw[i].text
            letters = len(concat) == 1
            oov = concat not in self.vocab
            best = i
            j = i
            while True:
                if j > i and concat in self.vocab and (oov or letters):
                    best = j
                limit = MAX_LETTERS if letters else MAX_PIECES
                if concat not in self.prefixes or j - i + 1 >= limit:
                    break
                if j + 1 >= len(raw):
                    if more:
                        return out, i
                    break
                j += 1
                piece = raw[j].text
                concat += piece
                letters = letters and len(piece) == 1
                oov = oov or piece not in self.vocab
            if best == i:
                out.append(raw[i])
            else:
                joined = "".join(w.text for w in raw[i : best + 1])
                out.append(Word(joined, raw[i].start, raw[best].end))
            i = best + 1
        return out, len(raw)


@dataclass(frozen=True, slots=True)
class _Hits:
    exact: list[tuple[int, int]]  # word index ranges [i, j)
    near: list[tuple[int, int, float]]
    best_fraction: float


class Verbatim(Filter):
    name = "verbatim"

    class Options(FilterOptions):
        min_words: int = Field(12, ge=3)
        near: bool = True
        near_ngram: int = Field(3, ge=2)
        near_window: int = Field(24, ge=4)
        near_fraction: float = Field(0.4, gt=0.0, le=1.0)
        leet: bool = True

    def __init__(self, corpus: str, options: Verbatim.Options):
        if options.near and options.near_ngram >= options.near_window:
            raise ValueError("verbatim: near_ngram must be smaller than near_window")
        self.options = options
        self.n = options.min_words
        self.m = options.near_ngram
        self.w = options.near_window
        self.need = int(np.ceil(options.near_fraction * (self.w - self.m + 1) - 1e-9))
        self.corpus = _Corpus(corpus, self.n, self.m, options.leet)

    @classmethod
    def from_policy(cls, data: PolicyData, resources: object, options: FilterOptions) -> Verbatim:
        assert isinstance(options, cls.Options)
        if not data.corpus.strip():
            raise ValueError(f"policy {data.name!r}: the verbatim filter needs a corpus")
        return cls(data.corpus, options)

    def words(self, text: str, offset: int = 0) -> list[Word]:
        return words(text, leet=self.options.leet, offset=offset)

    def ids(self, ws: list[Word]) -> list[int]:
        vocab = self.corpus.vocab
        return [vocab.get(w.text, -1) for w in ws]

    def analyse(self, ws: list[Word]) -> _Hits:
        ids = self.ids(ws)
        n, m, w = self.n, self.m, self.w
        exact: list[tuple[int, int]] = []
        for i in range(len(ids) - n + 1):
            if hash(tuple(ids[i : i + n])) in self.corpus.exact:
                if exact and exact[-1][1] >= i + n - 1:
                    exact[-1] = (exact[-1][0], i + n)
                else:
                    exact.append((i, i + n))
        near: list[tuple[int, int, float]] = []
        best = 0.0
        if self.options.near and len(ids) >= w:
            grams = [self._gram(ids, i) for i in range(len(ids) - m + 1)]
            per_window = w - m + 1
            counts: Counter[int] = Counter()
            for i in range(per_window):
                if grams[i] is not None:
                    counts[grams[i]] += 1  # type: ignore[index]
            for s in range(len(ids) - w + 1):
                if s:
                    _drop(counts, grams[s - 1])
                    g = grams[s + per_window - 1]
                    if g is not None:
                        counts[g] += 1
                frac = len(counts) / per_window
                best = max(best, frac)
                if len(counts) >= self.need:
                    hit = [p for p in range(s, s + per_window) if grams[p] is not None]
                    lo, hi = hit[0], hit[-1] + m
                    if near and near[-1][1] >= lo:
                        near[-1] = (near[-1][0], max(hi, near[-1][1]), max(frac, near[-1][2]))
                    else:
                        near.append((lo, hi, frac))
        return _Hits(exact, near, best)

    def _gram(self, ids: list[int], i: int) -> int | None:
        h = hash(tuple(ids[i : i + self.m]))
        return h if h in self.corpus.near else None

    def result(self, ws: list[Word], hits: _Hits) -> FilterResult:
        if hits.exact:
            longest = max(j - i for i, j in hits.exact)
            spans = [(i, j) for i, j in hits.exact] + [(i, j) for i, j, _ in hits.near]
            return FilterResult(
                Action.BLOCK,
                1.0,
                f"verbatim: {longest} consecutive words of corpus",
                _spans(ws, spans),
            )
        if hits.near:
            frac = max(f for _, _, f in hits.near)
            return FilterResult(
                Action.BLOCK,
                frac,
                f"near-verbatim: {frac:.0%} of {self.m}-word shingles in a "
                f"{self.w}-word window occur in corpus",
                _spans(ws, [(i, j) for i, j, _ in hits.near]),
            )
        if hits.best_fraction:
            return FilterResult(Action.ALLOW, hits.best_fraction)
        return ALLOW

    def check(self, text: str) -> FilterResult:
        ws, _ = self.corpus.resolve(self.words(text), more=False)
        return self.result(ws, self.analyse(ws))

    def open_stream(self) -> StreamScanner:
        return VerbatimScanner(self)

    def holdback_words(self, ws: list[Word]) -> int:
        """Index of the first word that a future match could still include."""
        ids = self.ids(ws)
        k = len(ids)
        hold = k
        longest = 0
        while longest < min(self.n - 1, k) and self.corpus.occurs(ids[k - longest - 1 :]):
            longest += 1
        hold = k - longest
        if self.options.near:
            starts = [p for p in range(max(0, k - self.w + 1), k - self.m + 1)]
            grams = {p: self._gram(ids, p) for p in starts}
            for s in range(max(0, k - self.w + 1), k):
                known = {grams[p] for p in range(s, k - self.m + 1) if grams[p] is not None}
                if len(known) + (s + self.w - k) >= self.need:
                    first = next((p for p in range(s, k - self.m + 1) if grams[p] is not None), k)
                    hold = min(hold, first)
        return hold


def _drop(counts: Counter[int], g: int | None) -> None:
    if g is None:
        return
    counts[g] -= 1
    if counts[g] <= 0:
        del counts[g]


def _spans(ws: list[Word], ranges: list[tuple[int, int]]) -> tuple[Span, ...]:
    merged: list[list[int]] = []
    for lo, hi in sorted((ws[i].start, ws[j - 1].end) for i, j in ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple(Span(lo, hi) for lo, hi in merged)


class VerbatimScanner(StreamScanner):
    """Re-reads only the tail that can still matter: the released context a near window
    needs, plus the held-back words."""

    def __init__(self, flt: Verbatim):
        self._f = flt
        self._ctx = 0  # char offset where re-tokenising starts (a word start)
        self._stable = 0
        self._hit: FilterResult | None = None

    def scan(self, text: str, final: bool) -> ScanResult:
        if self._hit is not None:
            return ScanResult(self._hit, self._stable)
        f = self._f
        raw = f.words(text[self._ctx :], offset=self._ctx)
        open_last = not final and last_word_open(text, raw, self._ctx)
        complete = raw[:-1] if open_last else raw
        ws, pending = f.corpus.resolve(complete, more=not final)
        res = f.result(ws, f.analyse(ws))
        if res.hit:
            self._hit = res
            return ScanResult(res, self._stable)
        if final:
            self._stable = len(text)
            return ScanResult(res, self._stable)
        hold = len(text)
        if pending < len(complete):
            hold = complete[pending].start
        elif open_last:
            hold = raw[-1].start
        first = f.holdback_words(ws)
        if first < len(ws):
            hold = min(hold, ws[first].start)
        self._stable = max(self._stable, hold)
        keep = next((i for i, w in enumerate(ws) if w.end > self._stable), len(ws))
        back = max(0, keep - f.w - f.n)
        if back < len(ws):
            self._ctx = ws[back].start
        return ScanResult(res, self._stable)


FILTER = Verbatim
