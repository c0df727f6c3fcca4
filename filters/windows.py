"""Shared machinery for filters that score text windows with a model (embedding, classifier).

A text is judged by its most suspicious piece. The pieces ("spans") of a text are, with words
as `filters.normalize.words` cuts them:
- windows of `window_words` words starting at word 0, `stride_words`, 2 x `stride_words`...
  as long as they fit, plus the window of the last `window_words` words (the flush window);
  a text of at most `window_words` words is one window;
- every sentence of 1 to `window_words` words: the words between two sentence ends (`.`, `!`,
  `?`, `;` or a line break in the gap between two words). A longer sentence is covered by
  the windows.
A span is the text from its first word's first character to its last word's last character.

The stream scanner scores exactly the same spans of the same final text, so a stream and a
whole answer get the same verdict for every chunking: a window is scored once its last word
is complete (a later character can no longer change it), a sentence once the sentence end
after it has arrived, the flush window and the last sentence at the end of the stream. A word
is released only when every span that may contain it has been scored: once `window_words`
complete words follow it (no later window, flush window or still-open sentence of at most
`window_words` words can reach back that far). So nothing of a hit span is sent before its
verdict, and the hold-back is `window_words` words plus the word being written.

Cost: `check` on n words scores about n / `stride_words` windows plus one input per short
sentence; there is no stride growth on long texts (coverage must not fall where prompts are
long). With the cascade (`screen`, filters.cascade) every span first gets a static score, and
only spans at or above the filter's calibrated screen threshold go to the model, so MiniLM
runs on the few spans that look like the target. The model work comes in units of at most
`BATCH` spans (`check_steps`), so the gateway's filter pool serves other requests in between.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from filters.base import (
    ALLOW,
    Action,
    FilterOptions,
    FilterResult,
    ScanResult,
    Span,
    Steps,
    StreamScanner,
    TextFilter,
    merge_spans,
    run_steps,
)
from filters.cascade import Calibration, CalibrationSet, StaticScreen, calibrate, calibration_set
from filters.normalize import Word, last_word_open, words

log = logging.getLogger("lethe.filters")

_SENTENCE_END = re.compile(r"[.!?;\n]")

#: Spans per model call: the unit of work between two yields to the filter pool.
BATCH = 32


class WindowOptions(FilterOptions):
    window_words: int = Field(32, ge=4)
    stride_words: int = Field(8, ge=1)
    #: The cascade: spans whose static score is under the calibrated threshold skip the model.
    #: Off (or no static model prepared): the model scores every span.
    screen: bool = True
    #: Calibrated threshold = lowest static score the model-only filter flags, less this.
    screen_margin: float = Field(0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> WindowOptions:
        if self.stride_words > self.window_words:
            raise ValueError("stride_words must not exceed window_words")
        return self


@dataclass(frozen=True, slots=True)
class Verdict:
    hit: bool
    score: float


def sentence_end_after(text: str, ws: list[Word], i: int, stop: int) -> bool:
    """Whether the gap after word `i` (up to the next word, or `stop`) ends a sentence."""
    end = ws[i + 1].start if i + 1 < len(ws) else stop
    return _SENTENCE_END.search(text, ws[i].end, end) is not None


def sentences(text: str, ws: list[Word], size: int) -> list[tuple[int, int]]:
    """Word index ranges [i, j] (inclusive) of the sentences of 1 to `size` words."""
    out = []
    first = 0
    for i in range(len(ws)):
        if i == len(ws) - 1 or sentence_end_after(text, ws, i, len(text)):
            if i - first + 1 <= size:
                out.append((first, i))
            first = i + 1
    return out


def window_starts(n_words: int, size: int, stride: int) -> list[int]:
    """Word index of each window's first word (the last one flush with the end)."""
    if n_words <= size:
        return [0] if n_words else []
    starts = list(range(0, n_words - size + 1, stride))
    if starts[-1] != n_words - size:
        starts.append(n_words - size)
    return starts


def text_spans(text: str, size: int, stride: int) -> list[tuple[int, int]]:
    """Char spans [start, end) scored for `text`: windows and short sentences (module doc)."""
    ws = words(text)
    starts = window_starts(len(ws), size, stride)
    spans = {(ws[s].start, ws[min(s + size, len(ws)) - 1].end) for s in starts}
    spans.update((ws[i].start, ws[j].end) for i, j in sentences(text, ws, size))
    return sorted(spans)


class WindowedFilter(TextFilter):
    """A filter that judges text windows in batches; subclasses give `judge`."""

    blocking = True
    options: WindowOptions
    #: The cascade's first stage and how its threshold was set (None: the model scores all).
    screen: StaticScreen | None = None
    calibration: Calibration | None = None

    @abstractmethod
    def judge(self, texts: list[str]) -> list[Verdict]:
        """One verdict per text window (a model call). A text's verdict must not depend on the
        other texts of the batch: the stream scores other batches than `check`."""

    @abstractmethod
    def reason(self, score: float) -> str:
        """Audit reason for a hit; never the text itself."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        return text_spans(text, self.options.window_words, self.options.stride_words)

    def holdback_chars(self) -> int:
        # `window_words` words of up to 15 characters and a space, as the cap counts them.
        return 16 * self.options.window_words

    def calibration_flags(self, cal: CalibrationSet) -> np.ndarray:
        """The model-only verdict on each calibration text, leaving out the positive and the
        near-miss it was made from (filters.cascade). Filters without one get no screen."""
        raise NotImplementedError

    def attach_screen(
        self,
        resources: Any,
        policy: str,
        positives: Sequence[str],
        near_misses: Sequence[str],
        key: dict[str, Any],
    ) -> None:
        """Put the static screen in front of the model, calibrated on the policy's data."""
        if not self.options.screen:
            return
        static = getattr(resources, "static_encoder", None)
        if static is None:
            log.warning("policy %s: %s: no static model (run `lethe models prepare`): the "
                        "model scores every span", policy, self.name)
            return
        screen = resources.screen(positives)
        opts = self.options
        cal = calibration_set(positives, near_misses, opts.window_words, opts.stride_words)
        key = {**key, "filter": self.name, "options": opts.model_dump(mode="json"),
               "static": str(getattr(static, "identity", "")),
               "model": str(getattr(resources.encoder, "identity", ""))}
        self.calibration = calibrate(screen, self.calibration_flags, cal, opts.screen_margin, key)
        screen.register(self.calibration)
        self.screen = screen
        log.info("policy %s: %s %s", policy, self.name, self.calibration.describe())

    def verdict_steps(self, text: str, spans: list[tuple[int, int]]) -> Steps[FilterResult]:
        if not spans:
            return ALLOW
        todo = spans
        if self.screen is not None and self.calibration is not None:
            passes = self.screen.passes(text, spans)
            todo = [span for span, ok in zip(spans, passes, strict=True) if ok]
        # Spans the screen lets pass get the model's verdict; the others are allowed (score 0).
        scores: list[Verdict] = []
        for i in range(0, len(todo), BATCH):
            if i:
                yield
            scores += self.judge([text[a:b] for a, b in todo[i : i + BATCH]])
        best = max((v.score for v in scores), default=0.0)
        hits = [span for span, v in zip(todo, scores, strict=True) if v.hit]
        if not hits:
            return FilterResult(Action.ALLOW, best)
        merged = merge_spans(Span(a, b) for a, b in hits)
        return FilterResult(Action.BLOCK, best, self.reason(best), merged)

    def check_steps(self, text: str) -> Steps[FilterResult]:
        return self.verdict_steps(text, self.spans(text))

    def check(self, text: str) -> FilterResult:
        return run_steps(self.check_steps(text))

    def open_stream(self) -> StreamScanner:
        return WindowStream(self)


class WindowStream(StreamScanner):
    """Scores each span of `text_spans(final text)` as soon as no later text can change it.

    Word indices are global (word 0 is the first word of the stream); only the words from
    `_base` on are re-tokenised, `_ctx` being the start of word `_base`.
    """

    def __init__(self, flt: WindowedFilter):
        self._f = flt
        self._ctx = 0
        self._base = 0
        self._anchor = 0  # first word of the next window not scored yet
        self._sentence: int | None = 0  # first word of the open sentence; None: too long
        self._gap = 0  # next word whose following gap is not known to be final
        self._stable = 0
        self._hit: FilterResult | None = None

    def scan(self, text: str, final: bool) -> ScanResult:
        return run_steps(self.scan_steps(text, final))

    def scan_steps(self, text: str, final: bool) -> Steps[ScanResult]:
        if self._hit is not None:
            return ScanResult(self._hit, self._stable)
        size, stride = self._f.options.window_words, self._f.options.stride_words
        raw = words(text[self._ctx :], offset=self._ctx)
        open_last = not final and last_word_open(text, raw)  # global offsets
        ws = raw[:-1] if open_last else raw
        base = self._base
        n = base + len(ws)  # complete words so far

        def span(i: int, j: int) -> tuple[int, int]:
            return ws[i - base].start, ws[j - base].end

        todo: list[tuple[int, int]] = []
        if n > size:
            while self._anchor + size <= n:
                todo.append(span(self._anchor, self._anchor + size - 1))
                self._anchor += stride
        # A gap is final once a word follows it (or the stream ends); a sentence end in it is
        # final as soon as it is there.
        stop = raw[-1].start if open_last else len(text)
        for i in range(self._gap, n):
            if sentence_end_after(text, ws, i - base, stop):
                if self._sentence is not None and i - self._sentence + 1 <= size:
                    todo.append(span(self._sentence, i))
                self._sentence = i + 1
            elif i + 1 == n and not final and not open_last:
                break
            self._gap = i + 1
        if self._sentence is not None and n - self._sentence > size:
            self._sentence = None
        if final and n:
            last = window_starts(n, size, stride)[-1]
            if n <= size or (n - size) % stride:
                todo.append(span(last, n - 1))
            if self._sentence is not None and self._sentence < n:
                todo.append(span(self._sentence, n - 1))
        res = ALLOW
        if todo:
            res = yield from self._f.verdict_steps(text, sorted(set(todo)))
            if res.hit:
                self._hit = res
                return ScanResult(res, self._stable)
        if final:
            self._stable = len(text)
            return ScanResult(res, self._stable)
        if n - size >= base:
            self._stable = max(self._stable, ws[n - size - base].start)
        keep = min(self._anchor, n - size, self._gap)
        if self._sentence is not None:
            keep = min(keep, self._sentence)
        if keep > base:
            self._ctx = ws[keep - base].start
            self._base = keep
        return ScanResult(res, self._stable)
