"""The cascade's first stage: a static-embedding screen in front of MiniLM, calibrated per filter.

Every span a windowed filter scores (filters.windows) first gets a static score: its best
cosine, in the distilled static model's space (filters.static_encoder), to the policy's
positives (exemplars and corpus chunks). Only spans scoring at least the filter's screen
threshold go to MiniLM; the others are allowed without a model run.

The threshold is calibrated when the policy loads, so that nothing the MiniLM-only filter
would flag is screened out. Calibration texts: every exemplar and near-miss alone, and the
windows a sentence gets when it sits among benign words ("paraphrase windows": the sentence
inside filler, at two alignments to the stride, windows holding at least half of it). Each is
judged leave-one-out, as a paraphrase the policy does not hold: its static score and the
filter's MiniLM verdict both leave out the exemplar (or near-miss) it was made from (the
classifier is refitted on folds). The threshold is the lowest static score among the texts
MiniLM flags, less `screen_margin`. The result is logged, recorded on the filter
(`WindowedFilter.calibration`) and cached on disk by a hash of everything it depends on, so a
restart or a reload of an unchanged policy does not redo it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from filters.cache import cache_dir

log = logging.getLogger("lethe.filters")

CALIBRATION_VERSION = 2
#: Neutral filler the paraphrase windows are made of (no shared topic with any policy).
_FILLER_TEXT = (
    "The committee met on a Tuesday morning to review the quarterly figures and the plan for "
    "the new warehouse. Most of the discussion was about delivery times, the cost of fuel and "
    "whether the loading bay should be moved closer to the main road. Someone suggested a "
    "second shift for the busy months, and the manager agreed to ask the drivers what they "
    "thought before the next meeting. Afterwards a few people stayed for coffee and talked "
    "about the weather, a football match and the roadworks near the station."
)
FILLER = tuple(_FILLER_TEXT.split(" "))
#: Spans scored per static call while calibrating.
_CHUNK = 512
#: Most positives (and most near-misses) calibration texts are made from.
MAX_SOURCES = 200


#: Span lengths (known static tokens) at which the screen threshold changes: a short span's
#: static vector is noisier (a 6-word fragment of an exemplar can score 0.27 where MiniLM
#: gives 0.68), so each length band has its own threshold.
BANDS = (12, 24)


def band(tokens: int) -> int:
    return sum(tokens > edge for edge in BANDS)


@dataclass(frozen=True)
class Calibration:
    """How a filter's screen thresholds were set (logged and kept on the filter): one per
    span length band (`BANDS`), each the lowest static score of the calibration texts of that
    band (or of any shorter one) that MiniLM flags, less `margin`."""

    thresholds: tuple[float, ...]
    texts: int  # calibration texts judged
    flagged: tuple[int, ...]  # per band, flagged by the MiniLM-only filter (leave-one-out)
    lowest_flagged: tuple[float | None, ...]  # per band
    margin: float
    cached: bool = False

    @property
    def threshold(self) -> float:
        return min(self.thresholds)

    def describe(self) -> str:
        bands = [f"<= {e}" for e in BANDS] + [f"> {BANDS[-1]}"]
        parts = [
            f"{b} tokens {t:.3f} ({n} flagged, lowest {'none' if lo is None else f'{lo:.3f}'})"
            for b, t, n, lo in zip(bands, self.thresholds, self.flagged, self.lowest_flagged,
                                   strict=True)
        ]
        return (
            f"screen thresholds {'; '.join(parts)}, from {self.texts} calibration texts, "
            f"margin {self.margin:g}" + (" [cached]" if self.cached else "")
        )


class StaticScreen:
    """Static vectors of one policy's positives; shared by that policy's windowed filters."""

    def __init__(self, static: Any, positives: Sequence[str]):
        self.static = static
        self.positives = list(positives)
        #: Calibrations of the filters screened by this screen (the filters of a policy).
        self.calibrations: list[Calibration] = []
        self.common = np.asarray(static.common_direction, dtype=np.float64)
        self.vectors = self._project(static.encode(self.positives))

    def _project(self, vecs: np.ndarray) -> np.ndarray:
        """Unit vectors with the common direction projected out, row by row (a row's result
        must not depend on the other rows: BLAS picks other kernels for other sizes)."""
        out = np.zeros((len(vecs), len(self.common)), dtype=np.float64)
        for k, v in enumerate(np.asarray(vecs, dtype=np.float64)):
            w = v - float(v @ self.common) * self.common
            norm = float(np.sqrt(w @ w))
            if norm > 0:
                out[k] = w / norm
        return out

    def scores(self, text: str, spans: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Best static cosine to a positive for each span of `text`, one matrix-vector product
        per span (so a span's score does not depend on the other spans of the call), and each
        span's length band."""
        raw, counts = self.static.span_vectors_counted(text, list(spans))
        vecs = self._project(raw)
        out = np.empty(len(spans), dtype=np.float64)
        for k in range(len(spans)):
            out[k] = (self.vectors @ vecs[k]).max() if len(self.vectors) else -1.0
        return out, np.asarray([band(int(c)) for c in counts], dtype=np.int64)

    def register(self, cal: Calibration) -> None:
        self.calibrations.append(cal)

    @property
    def thresholds(self) -> tuple[float, ...]:
        """Per band, the lowest threshold of the filters sharing this screen: a span any of
        them would send to MiniLM goes to MiniLM for all of them. On the input stage, where
        they all run, that costs nothing (their MiniLM vectors are one cache), and a window
        one filter's calibration sits just under (a sentence glued to technical text, static
        0.315 against 0.318) is still confirmed."""
        return tuple(min(t) for t in zip(*(c.thresholds for c in self.calibrations),
                                         strict=True))

    def passes(self, text: str, spans: Sequence[tuple[int, int]]) -> list[bool]:
        scores, bands = self.scores(text, spans)
        bars = self.thresholds
        return [s >= bars[b] for s, b in zip(scores.tolist(), bands.tolist(), strict=True)]

    def scores_leaving_out(
        self, texts: Sequence[str], leave_out: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best static cosine of each text to the positives other than `leave_out[i]`
        (-1: leave none out), and each text's length band."""
        raw, counts = self.static.encode_counted(list(texts))
        sims = self._project(raw) @ self.vectors.T
        rows = np.arange(len(texts))
        mask = np.asarray(leave_out) >= 0
        sims[rows[mask], np.asarray(leave_out)[mask]] = -np.inf
        best: np.ndarray = sims.max(axis=1) if sims.shape[1] else np.full(len(texts), -1.0)
        return best, np.asarray([band(int(c)) for c in counts], dtype=np.int64)


@dataclass(frozen=True)
class CalibrationSet:
    """Texts to calibrate on; `pos[i]`/`neg[i]`: the positive/near-miss it was made from."""

    texts: list[str]
    pos: list[int]
    neg: list[int]


def calibration_set(
    positives: Sequence[str], near_misses: Sequence[str], window: int, stride: int
) -> CalibrationSet:
    texts: list[str] = []
    pos: list[int] = []
    neg: list[int] = []
    # A large corpus is sampled evenly: calibration runs MiniLM on ~10 texts per source.
    step = max(1, -(-len(positives) // MAX_SOURCES))
    sources = [(positives[i], i, -1) for i in range(0, len(positives), step)]
    step = max(1, -(-len(near_misses) // MAX_SOURCES))
    sources += [(near_misses[j], -1, j) for j in range(0, len(near_misses), step)]
    for n, (sentence, p, q) in enumerate(sources):
        made = [sentence, *paraphrase_windows(sentence, window, stride, seed=n)]
        texts += made
        pos += [p] * len(made)
        neg += [q] * len(made)
        # Fragments of a policy text (a prompt that starts a passage for the model to go on):
        # judged against every positive, their source included, as the filter judges them.
        ws = sentence.split()
        for k in sorted({4, 6, 8, len(ws) // 2} - {0}):
            if k < len(ws):
                texts += [" ".join(ws[:k]), " ".join(ws[-k:])]
                pos += [-1, -1]
                neg += [-1, -1]
    return CalibrationSet(texts, pos, neg)


def paraphrase_windows(sentence: str, window: int, stride: int, seed: int = 0) -> list[str]:
    """Windows of `window` words holding at least half of `sentence`, the sentence set among
    filler words at two alignments to the stride (as a prompt's windows would cut it)."""
    n = len(sentence.split())
    if n == 0:
        return []
    out = []
    for shift in sorted({0, stride // 2}):
        start = window + shift  # filler words before the sentence
        before = [FILLER[(seed * 7 + k) % len(FILLER)] for k in range(start)]
        after = [FILLER[(seed * 7 + start + k) % len(FILLER)] for k in range(window)]
        ws = [*before, *sentence.split(), *after]
        for a in range(0, len(ws) - window + 1, stride):
            inside = min(a + window, start + n) - max(a, start)
            if 2 * inside >= n and (a < start or a + window > start + n):
                out.append(" ".join(ws[a : a + window]))
    return out


def calibrate(
    screen: StaticScreen,
    model_flags: Callable[[CalibrationSet], np.ndarray],
    cal: CalibrationSet,
    margin: float,
    cache_key: dict[str, Any] | None = None,
) -> Calibration:
    """The screen threshold for one filter: see the module doc. `model_flags(cal)` is the
    MiniLM-only filter's leave-one-out verdict on every calibration text."""
    path = _cache_path(cache_key) if cache_key is not None else None
    if path is not None:
        try:
            saved = json.loads(path.read_text())
            return Calibration(
                tuple(saved["thresholds"]), saved["texts"], tuple(saved["flagged"]),
                tuple(saved["lowest_flagged"]), saved["margin"], cached=True,
            )
        except (OSError, ValueError, TypeError, KeyError):
            pass
    parts = [screen.scores_leaving_out(cal.texts[i : i + _CHUNK], cal.pos[i : i + _CHUNK])
             for i in range(0, len(cal.texts), _CHUNK)]
    static = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    bands = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    flags = np.asarray(model_flags(cal), dtype=bool)
    thresholds, counts, lows = [], [], []
    for b in range(len(BANDS) + 1):
        here = flags & (bands == b)
        lows.append(round(float(static[here].min()), 6) if here.any() else None)
        counts.append(int(here.sum()))
        # A band's threshold also covers every longer band's flagged texts: a long span that
        # MiniLM flags with a low static score says nothing good about shorter ones.
        within = flags & (bands >= b)
        # Nothing flagged: no evidence for any threshold, so the screen lets every span through.
        thresholds.append(round(float(static[within].min()) - margin, 6) if within.any() else -1.0)
    result = Calibration(tuple(thresholds), len(cal.texts), tuple(counts), tuple(lows), margin)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({k: v for k, v in asdict(result).items() if k != "cached"}))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("calibration cache not written (%s): %s", path, exc)
    return result


def _cache_path(key: dict[str, Any]) -> Path | None:
    if os.environ.get("LETHE_CALIBRATION_CACHE", "1") == "0":
        return None
    root = cache_dir()
    blob = json.dumps({"version": CALIBRATION_VERSION, **key}, sort_keys=True, default=str)
    return root / "calibration" / f"{hashlib.sha256(blob.encode()).hexdigest()[:32]}.json"


def text_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for t in texts:
        digest.update(t.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()

