"""What every filter shares: the typed result, the per-stream scanner contract, the base class."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Action(enum.StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    REDACT = "redact"


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character offsets [start, end) into the text that was checked."""

    start: int
    end: int


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


class StreamScanner(ABC):
    """Per-stream, per-choice state. Never shared between streams."""

    @abstractmethod
    def scan(self, text: str, final: bool) -> ScanResult:
        """`text` is the whole output of this choice so far (raw, unredacted)."""


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


class Filter(ABC):
    """A filter is built once per policy at load time and shared by all requests."""

    name: ClassVar[str]
    Options: ClassVar[type[FilterOptions]] = FilterOptions
    #: True when check() does model work that must run off the event loop.
    blocking: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: FilterOptions) -> Filter:
        """Build from a policy's data; `resources` holds the shared heavy objects."""

    @abstractmethod
    def check(self, text: str) -> FilterResult:
        """Judge a whole text (a prompt or a whole non-streamed answer)."""

    def open_stream(self) -> StreamScanner:
        return WindowScanner(self, holdback_chars=self.holdback_chars())

    def holdback_chars(self) -> int:
        """How much trailing text this filter needs held back while streaming."""
        return 200

    def patch_request(self, body: dict[str, Any]) -> None:
        """Change the upstream request (logit bias). Most filters leave it alone."""
        return None


class WindowScanner(StreamScanner):
    """Default scanner: re-checks a trailing window and holds back a fixed tail."""

    def __init__(self, flt: Filter, holdback_chars: int, context_chars: int | None = None):
        self._filter = flt
        self._holdback = holdback_chars
        self._context = context_chars if context_chars is not None else 2 * holdback_chars

    def scan(self, text: str, final: bool) -> ScanResult:
        start = max(0, len(text) - self._holdback - self._context)
        res = self._filter.check(text[start:])
        if res.spans and start:
            res = FilterResult(
                res.action,
                res.score,
                res.reason,
                tuple(Span(s.start + start, s.end + start) for s in res.spans),
            )
        stable = len(text) if final else max(0, len(text) - self._holdback)
        return ScanResult(res, stable)
