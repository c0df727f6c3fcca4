"""What every filter shares: the typed verdicts, the per-stream scanner contract, and the two
kinds of filter — a `TextFilter` judges text, a `RequestPatcher` changes the upstream request.

A filter is one module of this package named after its policy `type`, whose `FILTER` is the
class (filters.__init__ finds it); a class may be both kinds."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict

from filters.normalize import Word, normalize, words


class Action(enum.StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    REDACT = "redact"


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character offsets [start, end) into the text that was checked."""

    start: int
    end: int


def merge_spans(spans: Iterable[Span]) -> tuple[Span, ...]:
    """`spans` sorted, overlapping and touching ones joined."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class FilterResult:
    action: Action
    score: float = 0.0
    reason: str = ""
    spans: tuple[Span, ...] = ()

    @property
    def hit(self) -> bool:
        return self.action is not Action.ALLOW


ALLOW = FilterResult(Action.ALLOW)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One look at a growing stream.

    `stable` is the offset before which no future text can turn into a match: the
    gateway may release text up to there once every filter agrees.
    """

    result: FilterResult
    stable: int


T = TypeVar("T")

#: A piece of filter work cut into units: each `next()` runs one unit of bounded cost (one
#: encoder batch, say) and the generator's return value is the result. The gateway's filter
#: pool serves other requests between two units, so a long prompt cannot hold a thread.
Steps = Generator[None, None, T]


def run_steps(steps: Steps[T]) -> T:
    """Run every unit at once (tests, offline tools, filters that are cheap anyway)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def held_size(text: str) -> int:
    """How much held-back text weighs against the stream's cap: its length as the scanners see
    it (folded words joined by single spaces), so padding with spaces, zero-width characters
    or punctuation costs an honest answer nothing."""
    return len(normalize(text))


class StreamScanner(ABC):
    """Per-stream, per-choice state. Never shared between streams."""

    @abstractmethod
    def scan(self, text: str, final: bool) -> ScanResult:
        """`text` is the whole output of this choice so far (raw, unredacted)."""

    def scan_steps(self, text: str, final: bool) -> Steps[ScanResult]:
        """`scan` in units (see `Steps`); by default one unit."""
        yield from ()
        return self.scan(text, final)


class FilterOptions(BaseModel):
    """Per-filter options from policy YAML; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class PolicyData:
    """The data a policy gives its filters, already read from disk."""

    name: str
    exemplars: tuple[str, ...] = ()
    corpus: str = ""
    literals: tuple[str, ...] = ()
    pii: dict[str, str] | None = None
    near_misses: tuple[str, ...] = ()
    base_dir: Path = Path(".")


class _PolicyBuilt(ABC):
    """Built once per policy at load time from its data and options, shared by all requests."""

    name: ClassVar[str]
    Options: ClassVar[type[FilterOptions]] = FilterOptions

    @classmethod
    @abstractmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: FilterOptions) -> Self:
        """Build from a policy's data; `resources` holds the shared heavy objects."""


class TextFilter(_PolicyBuilt):
    """Judges text: a whole prompt or answer (`check`), or a growing stream (`open_stream`)."""

    #: True when check() does model work that must run off the event loop.
    blocking: ClassVar[bool] = False

    @abstractmethod
    def check(self, text: str) -> FilterResult:
        """Judge a whole text (a prompt or a whole non-streamed answer)."""

    def check_steps(self, text: str) -> Steps[FilterResult]:
        """`check` in units (see `Steps`); by default one unit."""
        yield from ()
        return self.check(text)

    def open_stream(self) -> StreamScanner:
        return WindowScanner(self, holdback_chars=self.holdback_chars())

    def holdback_chars(self) -> int:
        """How much trailing text this filter needs held back while streaming."""
        return 200


class RequestPatcher(_PolicyBuilt):
    """Changes the upstream request (token bans). It never sees text, so it never blocks and
    never holds a stream back."""

    @abstractmethod
    def patch_request(self, body: dict[str, Any]) -> None:
        """Change `body` in place before it goes upstream."""


#: What a policy's `filters` entry builds.
Filter: TypeAlias = TextFilter | RequestPatcher


class WindowScanner(StreamScanner):
    """Default scanner for filters without their own.

    It holds back the last `holdback_chars` characters *as the scanners see them* (folded
    words and single spaces, see `held_size`), so padding cannot shrink what is held, and
    re-checks them with `context_chars` more before them. At the end of the stream it checks
    the whole text: the last verdict is exactly `check()` on the final text, and a hit inside
    text already released makes the gateway block the stream rather than pass it.
    """

    def __init__(self, flt: TextFilter, holdback_chars: int, context_chars: int | None = None):
        self._filter = flt
        self._holdback = holdback_chars
        self._context = context_chars if context_chars is not None else 2 * holdback_chars
        self._ctx = 0  # a word start: text before it is out of every future re-check
        self._stable = 0

    def scan(self, text: str, final: bool) -> ScanResult:
        if final:
            self._stable = len(text)
            return ScanResult(self._filter.check(text), self._stable)
        ws = words(text[self._ctx :], offset=self._ctx)
        held = _tail_start(ws, self._holdback)
        if held < len(ws):
            self._stable = max(self._stable, ws[held].start)
        first = next((i for i, w in enumerate(ws) if w.end > self._stable), len(ws))
        ctx = _tail_start(ws[:first], self._context)
        if ctx < len(ws):
            self._ctx = max(self._ctx, ws[ctx].start)
        res = self._filter.check(text[self._ctx :])
        if res.spans and self._ctx:
            res = FilterResult(
                res.action,
                res.score,
                res.reason,
                tuple(Span(s.start + self._ctx, s.end + self._ctx) for s in res.spans),
            )
        return ScanResult(res, self._stable)


def _tail_start(ws: list[Word], size: int) -> int:
    """Index of the first of the last words of `ws` that together weigh at least `size`."""
    weight = 0
    for i in range(len(ws) - 1, -1, -1):
        weight += len(ws[i].text) + 1
        if weight >= size:
            return i
    return 0
