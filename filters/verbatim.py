"""Verbatim and near-verbatim copies of a protected corpus.

Both the corpus and the checked text go through `filters.normalize.words` (case, accents,
TR39 confusables, invisible characters, punctuation and separators, leetspeak), then two
repairs against the corpus vocabulary:
- pieces split by separators ("Har-ry", "H a r r y", "Dumble\\ndore") are joined back when
  the joined form is a corpus word and a piece is not;
- a word the corpus does not know is cut at CamelCase joins and segmented into corpus words
  (word-break over the vocabulary: fewest pieces, a bonus for pieces that follow each other
  in the corpus), so "thetideforgottocomeback", "forgotto" and "TheTideForgot" read as the
  words they join. Linear in the word's length; results cached per filter.

Two tests on the resulting words:
- exact: `min_words` (12 in the shipped policy) consecutive corpus words, in corpus order;
- near: a sparse local alignment of the text against the corpus (a weighted LCS with bounded
  gaps). A chain of words matching corpus words in corpus order, with at most `max_inserted`
  foreign words (filler: "uh", "you know", emoji are no words) and at most `max_skipped`
  dropped corpus words between two matches, scores its words' weights less `GAP_PENALTY` per
  inserted or skipped word. A copy is a chain of at least `near_words` (`min_words` + 2)
  matched words scoring at least `near_score` (7.5). A word weighs ln(N/f)/ln(N) for corpus
  frequency f among N words (seen once: 1.0; "the": 0.29), and chains start only at words
  weighing 0.5 or more, so function words carry a chain but cannot make one.

Neither library suggested for this does the job: rapidfuzz's LCS/Indel compare two given
sequences (or equal-length windows in `partial_ratio`) with neither word weights nor gap
bounds, so it would need a corpus-window candidate stage, a scan of the corpus per text
window, and a restart per stream chunk; datasketch's MinHash estimates Jaccard similarity of
sets, and the sets that would survive filler (word sets) lose word order, which is what
tells a review from a copy, while shingle sets are destroyed by one filler word after every
word. `_Aligner` is about 40 lines, costs O(live chain cells x gap box) per text word (linear
in text length, no corpus scan) and is incremental: a stream feeds each word once it is final,
so the stream decides exactly as `check()` on the same text, whatever the chunking
(tests/filters/test_verbatim_stream_property.py).

Measured with `python -m bench.verbatim_quality` (bench/results/verbatim_quality.json; the
disguises and benign texts are tests/filters/verbatim_cases.py). Recall on 100 random
30-word passages: 1.00 for 17 of 18 disguises (homoglyphs, all/some words joined, CamelCase,
filler after every word, filler with punctuation and emoji, every 3rd or 4th word dropped or
replaced, and combinations), 0.97 for words joined with filler glued in ("theuhtide", where
joins are cut only when corpus words cover half the letters). On 20-word passages 0.80-0.99
where a third or a quarter of the words are dropped (14 corpus words is the floor), on
16-word ones those are missed by design. False positives: 0 of 277 benign texts (the
policy's 25 near-misses, 40 written reviews and summaries, 40 quotes one word short of
min_words in sentences, 134 lines of other prose, 38 texts of the same register in other
words). `check()` of a 4,000-word prompt: 88 ms at load average 8 on this 2-core machine
(52-64 ms at 3.5), in units of 512 words; a stream scan costs 0.04 ms per 16 characters
(p50) and holds back a median of 7 words of benign text (p99 14).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydantic import Field

from filters.base import (
    ALLOW,
    Action,
    FilterOptions,
    FilterResult,
    PolicyData,
    ScanResult,
    Span,
    Steps,
    StreamScanner,
    TextFilter,
    merge_spans,
    run_steps,
)
from filters.normalize import Word, last_word_open, words

#: Longest chain of non-single-character pieces joined back into one word ("Dum-ble-dore").
MAX_PIECES = 4
#: Longest chain of single letters joined back into one word ("H a r r y").
MAX_LETTERS = 24
#: Shortest unknown word that is tried as a join of corpus words ("ofa").
MIN_JOINED = 3
#: Word-break: a piece that follows the previous one within `PAIR_SPAN` corpus words costs
#: this much less (see `_Corpus._segment`).
PAIR_BONUS = 0.5
PAIR_SPAN = 3
#: Word-break: a run of letters that is no corpus word costs this plus one per letter.
UNKNOWN_COST = 2.0
UNKNOWN = "?"
#: Word-break: extra cost of a one- or two-letter corpus word ("a", "s", "he"), which would
#: otherwise cut any unknown word into junk ("therapist": "t her a p is t").
SHORT_PIECE_COST = {1: 1.0, 2: 0.3}
#: Score lost per foreign word inserted, or corpus word skipped, between two matched words.
GAP_PENALTY = 0.1
#: Lightest word a chain can start at: chains begin at a word rarer than the commonest ones
#: (ln(N/f)/ln(N) >= 0.5 means f <= sqrt(N)), which keeps benign text's cells few.
START_WEIGHT = 0.5
#: Words fed per unit of `check_steps`.
UNIT_WORDS = 512
#: Segmentations cached per filter (shared by all streams; the key is one word of at most
#: SEGMENT_CACHE_CHARS characters).
SEGMENT_CACHE = 1 << 16
SEGMENT_CACHE_CHARS = 64


class _Corpus:
    """Word ids of the corpus, its `min_words`-gram set, position indexes, word weights and
    what the word-break needs (prefixes, piece costs, word pairs)."""

    def __init__(self, text: str, n: int, span: int, leet: bool):
        toks = [w.text for w in words(text, leet=leet)]
        self.vocab: dict[str, int] = {}
        ids = [self.vocab.setdefault(t, len(self.vocab)) for t in toks]
        self.ids = np.asarray(ids, dtype=np.int32)
        self.exact = {hash(tuple(ids[i : i + n])) for i in range(len(ids) - n + 1)}
        order = np.argsort(self.ids, kind="stable")
        bounds = np.searchsorted(self.ids[order], np.arange(len(self.vocab) + 1))
        self.positions = [order[bounds[k] : bounds[k + 1]] for k in range(len(self.vocab))]
        #: The ids of the `span` words after each position: where a chain can go next.
        self.after: list[tuple[int, ...]] = [
            tuple(ids[k + 1 : k + 1 + span]) for k in range(len(ids))
        ]
        self.where: list[tuple[int, ...]] = [tuple(int(p) for p in ps) for ps in self.positions]
        self.prefixes = {w[:k] for w in self.vocab for k in range(1, len(w))}
        total = max(len(ids), 2)
        freq = [len(ps) for ps in self.positions]
        self.weight = [math.log(total / f) / math.log(total) if f else 0.0 for f in freq]
        # Word-break cost: one unit per piece, more for a short one, a hair more for a rare one.
        self._piece_cost = {
            w: 1.0 + SHORT_PIECE_COST.get(len(w), 0.0) + 0.01 * math.log(total / freq[i])
            for w, i in self.vocab.items()
        }
        self.pairs = {
            (ids[k], ids[k + b]) for b in range(1, PAIR_SPAN + 1) for k in range(len(ids) - b)
        }
        self._max_len = max((len(w) for w in self.vocab), default=0)
        self._cached_segment = lru_cache(maxsize=SEGMENT_CACHE)(self._segment)

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

    def segment(self, token: str) -> tuple[str, ...] | None:
        """`_segment`, cached for words of ordinary length (a client's long words must not
        fill the shared cache)."""
        if len(token) > SEGMENT_CACHE_CHARS:
            return self._segment(token)
        return self._cached_segment(token)

    def _segment(self, token: str) -> tuple[str, ...] | None:
        """The cheapest split of `token` into corpus words and unknown runs, or None when
        it has unknown runs and fewer than two corpus words of three letters or more, or
        those cover less than half of it.

        A corpus word costs 1 (a short or rare one a little more), less `PAIR_BONUS` when it
        follows the previous one within a few words somewhere in the corpus, so "herontheof"
        reads "her on the of" next to a copy of "her bearings on the spire of", not "heron
        the of". A run of letters that is no corpus word ("uh" in "theuhtide") costs
        `UNKNOWN_COST` plus one per letter. Linear in the token's length.
        """
        if len(token) < MIN_JOINED or not token.isalpha():
            return None
        n = len(token)
        # states[j]: key of the piece ending at j -> (cost, where it starts, previous key).
        # Keys: a corpus word, UNKNOWN (a run of other letters), "" (the start).
        states: list[dict[str, tuple[float, int, str]]] = [{} for _ in range(n + 1)]
        states[0][""] = (0.0, 0, "")
        for i in range(n):
            here = states[i]
            if not here:
                continue
            for j in range(i + 1, min(n, i + self._max_len) + 1):
                piece = token[i:j]
                c = self._piece_cost.get(piece)
                if c is not None:
                    pid = self.vocab[piece]
                    for last, (cost, _, _) in here.items():
                        pair = last in self.vocab and (self.vocab[last], pid) in self.pairs
                        _relax(states[j], piece, cost + c - (PAIR_BONUS if pair else 0.0), i, last)
                if piece not in self.prefixes:
                    break
            for last, (cost, start, prev) in here.items():
                if last == UNKNOWN:  # the run goes on: one more letter
                    _relax(states[i + 1], UNKNOWN, cost + 1.0, start, prev)
                else:
                    _relax(states[i + 1], UNKNOWN, cost + UNKNOWN_COST + 1.0, i, last)
        if not states[n]:
            return None
        key = min(states[n], key=lambda p: states[n][p][0])
        out: list[str] = []
        unknown = False
        solid = words_ = 0  # corpus words of three letters or more: their letters, count
        j = n
        while j:
            _, i, prev = states[j][key]
            out.append(token[i:j])
            unknown = unknown or key == UNKNOWN
            if key != UNKNOWN and j - i >= 3:
                solid += j - i
                words_ += 1
            j, key = i, prev
        if unknown and (words_ < 2 or 2 * solid < n):
            return None  # not words joined ("banana": "b" "an" "an" "a"): left alone
        return tuple(reversed(out))

    def split(self, w: Word, text: str, offset: int, leet: bool) -> list[Word]:
        """A word the corpus does not know, read as the corpus words it joins (or as is)."""
        if w.text in self.vocab:
            return [w]
        original = text[w.start - offset : w.end - offset]
        cuts = _camel_cuts(original)
        if cuts:
            out: list[Word] = []
            for lo, hi in zip([0, *cuts], [*cuts, len(original)], strict=True):
                for piece in words(original[lo:hi], leet=leet, offset=w.start + lo):
                    out.extend(self._split_joined(piece, text, offset))
            return out
        return self._split_joined(w, text, offset)

    def _split_joined(self, w: Word, text: str, offset: int) -> list[Word]:
        if w.text in self.vocab:
            return [w]
        parts = self.segment(w.text)
        if parts is None:
            return [w]
        if w.end - w.start != len(w.text):
            # Folding changed the length (ligatures, invisible characters): the pieces share
            # the word's span rather than guess where each one lies.
            return [Word(p, w.start, w.end) for p in parts]
        out = []
        at = w.start
        for p in parts:
            out.append(Word(p, at, at + len(p)))
            at += len(p)
        return out


@dataclass(frozen=True, slots=True)
class _Match:
    """A detected copy: character offsets into the checked text, and how it was found."""

    start: int
    end: int
    score: float  # near: alignment score; exact: number of words
    exact: bool


class _Aligner:
    """One text's (or one stream's) pass over its words, fed one word at a time.

    Holds only what the next word can depend on: the last `min_words - 1` words for the
    exact test and, for the near test, the alignment cells of the last `max_inserted + 1`
    words (corpus position -> (score, chain start offset)).
    """

    def __init__(self, flt: Verbatim):
        self.f = flt
        self.c = flt.corpus
        opts = flt.options
        self.n = opts.min_words
        self.near = opts.near
        self.need = flt.near_words
        self.bar = opts.near_score
        self.ids: deque[int] = deque(maxlen=self.n)
        self.recent: deque[Word] = deque(maxlen=self.n)
        self.cells: deque[dict[int, tuple[float, int, int]]] = deque(maxlen=opts.max_inserted + 1)
        self.matches: list[_Match] = []
        self.best = 0.0
        self.run = 0  # length of the exact run ending at the last word (0: none)

    def feed(self, w: Word) -> _Match | None:
        """Add one word; returns the copy it completes or extends, if any."""
        c = self.c
        x = c.vocab.get(w.text, -1)
        self.ids.append(x)
        self.recent.append(w)
        found: _Match | None = None
        if x >= 0 and len(self.ids) == self.n and hash(tuple(self.ids)) in c.exact:
            self.run = self.run + 1 if self.run else self.n
            found = self._add(_Match(self.recent[0].start, w.end, self.run, True))
        else:
            self.run = 0
        if not self.near:
            return found
        row: dict[int, tuple[float, int, int]] = {}
        if x >= 0:
            weight = c.weight[x]
            after = c.after
            for g, cells in enumerate(reversed(self.cells)):
                for k0, (score0, start0, count0) in cells.items():
                    nxt = after[k0]
                    if x not in nxt:
                        continue
                    for b, y in enumerate(nxt, 1):
                        if y == x:
                            # A chain goes on only while it is worth more than a fresh start.
                            s = score0 - GAP_PENALTY * (g + b - 1)
                            k = k0 + b
                            if s > 0 and (k not in row or s + weight > row[k][0]):
                                row[k] = (s + weight, start0, count0 + 1)
            if weight >= START_WEIGHT:
                for k in c.where[x]:
                    if k not in row:
                        row[k] = (weight, w.start, 1)
        self.cells.append(row)
        if not row:
            return found
        top, first = 0.0, -1
        for score, start, count in row.values():
            if score > top:
                top = score
            if score >= self.bar and count >= self.need and (first < 0 or start < first):
                first = start
        if top > self.best:
            self.best = top
        if first >= 0:
            near = self._add(_Match(first, w.end, top, False))
            found = found or near
        return found

    def _add(self, m: _Match) -> _Match:
        for i in range(len(self.matches) - 1, -1, -1):
            last = self.matches[i]
            if last.exact == m.exact:
                if m.start <= last.end:
                    m = _Match(min(last.start, m.start), m.end, max(last.score, m.score), m.exact)
                    self.matches[i] = m
                    return m
                break
        self.matches.append(m)
        return m

    def hold(self) -> int | None:
        """The earliest offset a copy completed by future words could start at (None: none)."""
        out: int | None = None
        ids = list(self.ids)
        k = len(ids)
        longest = 0
        while longest < min(self.f.options.min_words - 1, k) and self.c.occurs(
            ids[k - longest - 1 :]
        ):
            longest += 1
        if longest:
            out = self.recent[k - longest].start
        for cells in self.cells:
            for _, start, _ in cells.values():
                if out is None or start < out:
                    out = start
        return out

    def result(self) -> FilterResult:
        exact = [m for m in self.matches if m.exact]
        near = [m for m in self.matches if not m.exact]
        spans = merge_spans(Span(m.start, m.end) for m in self.matches)
        if exact:
            longest = max(int(m.score) for m in exact)
            return FilterResult(
                Action.BLOCK, 1.0, f"verbatim: {longest} consecutive words of corpus", spans
            )
        if near:
            score = max(m.score for m in near)
            return FilterResult(
                Action.BLOCK,
                min(1.0, score / (2 * self.f.options.near_score)),
                f"near-verbatim: corpus words in corpus order, alignment score {score:.1f} "
                f"(threshold {self.f.options.near_score:g})",
                spans,
            )
        if self.best:
            return FilterResult(Action.ALLOW, min(1.0, self.best / (2 * self.f.options.near_score)))
        return ALLOW


def _relax(
    states: dict[str, tuple[float, int, str]], key: str, cost: float, start: int, prev: str
) -> None:
    old = states.get(key)
    if old is None or cost < old[0]:
        states[key] = (cost, start, prev)


def _camel_cuts(s: str) -> list[int]:
    """Where a CamelCase join starts a new word: "TheTide" -> [3], "WouldIOn" -> [5, 6]."""
    return [
        i
        for i in range(1, len(s))
        if s[i].isupper()
        and (s[i - 1].islower() or (s[i - 1].isupper() and i + 1 < len(s) and s[i + 1].islower()))
    ]


class Verbatim(TextFilter):
    name = "verbatim"

    class Options(FilterOptions):
        min_words: int = Field(12, ge=3)
        near: bool = True
        #: Fewest corpus words a near copy holds in corpus order; None: `min_words` + 2, so a
        #: quote one word short of `min_words` stays allowed even when the sentence around
        #: it happens to go on like the corpus for a word or two.
        near_words: int | None = Field(None, ge=3)
        #: Alignment score a near copy reaches besides (matched words' weights less gaps).
        near_score: float = Field(7.5, gt=0.0)
        #: Most foreign words between two matched words (filler after every word: 1).
        max_inserted: int = Field(3, ge=0, le=8)
        #: Most corpus words dropped between two matched words (every 3rd word dropped: 1).
        max_skipped: int = Field(2, ge=0, le=8)
        leet: bool = True

    def __init__(self, corpus: str, options: Verbatim.Options):
        self.options = options
        self.n = options.min_words
        self.near_words = options.near_words or options.min_words + 2
        self.corpus = _Corpus(corpus, self.n, options.max_skipped + 1, options.leet)

    @classmethod
    def from_policy(cls, data: PolicyData, resources: object, options: FilterOptions) -> Verbatim:
        assert isinstance(options, cls.Options)
        if not data.corpus.strip():
            raise ValueError(f"policy {data.name!r}: the verbatim filter needs a corpus")
        return cls(data.corpus, options)

    def words(self, text: str, offset: int = 0) -> list[Word]:
        return words(text, leet=self.options.leet, offset=offset)

    def tokens(self, text: str, offset: int, resolved: list[Word]) -> list[Word]:
        """Resolved words of `text` (which starts at `offset`), unknown ones segmented."""
        out: list[Word] = []
        for w in resolved:
            out.extend(self.corpus.split(w, text, offset, self.options.leet))
        return out

    def check_steps(self, text: str) -> Steps[FilterResult]:
        """`check` in units of `UNIT_WORDS` words (a few milliseconds each), so a long
        prompt yields the filter pool between them."""
        resolved, _ = self.corpus.resolve(self.words(text), more=False)
        run = _Aligner(self)
        for i in range(0, len(resolved), UNIT_WORDS):
            yield
            for w in self.tokens(text, 0, resolved[i : i + UNIT_WORDS]):
                run.feed(w)
        return run.result()

    def check(self, text: str) -> FilterResult:
        return run_steps(self.check_steps(text))

    def open_stream(self) -> StreamScanner:
        return VerbatimScanner(self)


class VerbatimScanner(StreamScanner):
    """Feeds each word to one `_Aligner` once it is final (its text and its joins can no
    longer change), so the verdict is `check()`'s on the same text; holds back from the
    earliest word a copy completed later could include."""

    def __init__(self, flt: Verbatim):
        self._f = flt
        self._run = _Aligner(flt)
        self._ctx = 0  # char offset where re-tokenising starts: the first word not yet final
        self._stable = 0
        self._hit: FilterResult | None = None

    def scan(self, text: str, final: bool) -> ScanResult:
        if self._hit is not None:
            return ScanResult(self._hit, self._stable)
        f = self._f
        tail = text[self._ctx :]
        raw = f.words(tail, offset=self._ctx)
        open_last = not final and last_word_open(tail, raw, self._ctx)
        complete = raw[:-1] if open_last else raw
        resolved, pending = f.corpus.resolve(complete, more=not final)
        hit = False
        for w in f.tokens(tail, self._ctx, resolved):
            hit = self._run.feed(w) is not None or hit
            if hit:
                break
        if hit:
            self._hit = self._run.result()
            return ScanResult(self._hit, self._stable)
        if pending < len(complete):
            self._ctx = complete[pending].start
        elif open_last:
            self._ctx = raw[-1].start
        else:
            self._ctx = len(text)
        if final:
            self._stable = len(text)
            return ScanResult(self._run.result(), self._stable)
        hold = self._run.hold()
        stable = self._ctx if hold is None else min(hold, self._ctx)
        self._stable = max(self._stable, stable)
        return ScanResult(self._run.result(), self._stable)


FILTER = Verbatim
