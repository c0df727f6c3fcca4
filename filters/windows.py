"""Shared machinery for filters that score text windows with a model (embedding, classifier).

A long text (a whole conversation) is judged by its most suspicious piece, so `check` scores
every sentence and sliding windows of `window_words` words, and takes the maximum. The stream
scanner scores the window of the last `window_words` words every `stride_words` new words and
releases a word only once `holdback_words` more words have arrived (so every released word
was inside at least one scored window).

Cost: every window and sentence is one encoder input, so `check` on n words encodes about
n * (window_words / stride_words + 1) words. A text that would need more than `max_windows`
sliding windows gets a larger stride instead (never more than `window_words`, so every word
is still inside a window): beyond the cap a check costs about 2n words instead of 5n, and a
short match is caught by its own sentence rather than by a window that starts near it.
Sentences of more than `window_words` words are left to the windows.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass

from pydantic import Field, model_validator

from filters.base import (
    ALLOW,
    Action,
    Filter,
    FilterOptions,
    FilterResult,
    ScanResult,
    Span,
    StreamScanner,
)
from filters.normalize import Word, last_word_open, words

_SENTENCE_END = re.compile(r"[.!?;\n]+")


class WindowOptions(FilterOptions):
    window_words: int = Field(32, ge=4)
    stride_words: int = Field(8, ge=1)
    holdback_words: int = Field(16, ge=1)
    #: Sliding windows per `check` before the stride grows (long prompts; see module doc).
    max_windows: int = Field(32, ge=2)

    @model_validator(mode="after")
    def _consistent(self) -> WindowOptions:
        if self.stride_words > self.holdback_words:
            raise ValueError("stride_words must not exceed holdback_words")
        if self.stride_words > self.window_words:
            raise ValueError("stride_words must not exceed window_words")
        return self


@dataclass(frozen=True, slots=True)
class Verdict:
    hit: bool
    score: float


def sentence_spans(text: str, offset: int = 0) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if text[start : m.end()].strip():
            spans.append((start + offset, m.end() + offset))
        start = m.end()
    if text[start:].strip():
        spans.append((start + offset, len(text) + offset))
    return spans


def capped_stride(n_words: int, size: int, stride: int, max_windows: int) -> int:
    """`stride`, grown (up to `size`) so that n_words need at most max_windows windows."""
    if n_words <= size or -(-(n_words - size) // stride) + 1 <= max_windows:
        return stride
    return min(size, -(-(n_words - size) // (max_windows - 1)))


def word_windows(ws: list[Word], size: int, stride: int) -> list[tuple[int, int]]:
    """Char spans of windows of `size` words every `stride` words (the last one flush)."""
    if not ws:
        return []
    if len(ws) <= size:
        return [(ws[0].start, ws[-1].end)]
    starts = list(range(0, len(ws) - size + 1, stride))
    if starts[-1] != len(ws) - size:
        starts.append(len(ws) - size)
    return [(ws[s].start, ws[s + size - 1].end) for s in starts]


class WindowedFilter(Filter):
    """A filter that judges text windows in batches; subclasses give `judge`."""

    blocking = True
    options: WindowOptions

    @abstractmethod
    def judge(self, texts: list[str]) -> list[Verdict]:
        """One verdict per text window (a model call: batch it)."""

    @abstractmethod
    def reason(self, score: float) -> str:
        """Audit reason for a hit; never the text itself."""

    def windows(self, text: str) -> list[tuple[int, int]]:
        ws = words(text)
        opts = self.options
        stride = capped_stride(len(ws), opts.window_words, opts.stride_words, opts.max_windows)
        spans = set(word_windows(ws, opts.window_words, stride))
        if len(ws) > opts.window_words:
            # Sentences longer than a window are already covered by windows.
            for a, b in sentence_spans(text):
                if 2 < len(words(text[a:b])) <= opts.window_words:
                    spans.add((a, b))
        return sorted(spans)

    def verdict(self, text: str, spans: list[tuple[int, int]], floor: int = 0) -> FilterResult:
        if not spans:
            return ALLOW
        verdicts = self.judge([text[a:b] for a, b in spans])
        best = max(v.score for v in verdicts)
        hits = [(max(a, floor), b) for (a, b), v in zip(spans, verdicts, strict=True) if v.hit]
        if not hits:
            return FilterResult(Action.ALLOW, best)
        return FilterResult(Action.BLOCK, best, self.reason(best), _merge(hits))

    def check(self, text: str) -> FilterResult:
        return self.verdict(text, self.windows(text))

    def open_stream(self) -> StreamScanner:
        return WindowStream(self)


def _merge(spans: list[tuple[int, int]]) -> tuple[Span, ...]:
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return tuple(Span(a, b) for a, b in merged)


class WindowStream(StreamScanner):
    def __init__(self, flt: WindowedFilter):
        self._f = flt
        self._ctx = 0  # a word start; words before it are released and out of every window
        self._stable = 0
        self._scored = 0  # words after _ctx already inside a scored window
        self._hit: FilterResult | None = None

    def scan(self, text: str, final: bool) -> ScanResult:
        if self._hit is not None:
            return ScanResult(self._hit, self._stable)
        opts = self._f.options
        raw = words(text[self._ctx :], offset=self._ctx)
        open_last = not final and last_word_open(text, raw, self._ctx)
        ws = raw[:-1] if open_last else raw
        ends = list(range(self._scored + opts.stride_words, len(ws) + 1, opts.stride_words))
        if final and len(ws) > self._scored and (not ends or ends[-1] < len(ws)):
            ends.append(len(ws))
        res = ALLOW
        if ends:
            spans = [(ws[max(0, e - opts.window_words)].start, ws[e - 1].end) for e in ends]
            res = self._f.verdict(text, spans, self._stable)
            self._scored = ends[-1]
            if res.hit:
                self._hit = res
                return ScanResult(res, self._stable)
        if final:
            self._stable = len(text)
            return ScanResult(res, self._stable)
        release = min(self._scored, len(ws) - opts.holdback_words)
        if release > 0:
            self._stable = max(self._stable, ws[release].start if release < len(ws) else len(text))
        keep = max(0, release - opts.window_words)
        if keep:
            self._ctx = ws[keep].start
            self._scored -= keep
        return ScanResult(res, self._stable)
