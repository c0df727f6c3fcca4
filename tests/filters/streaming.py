"""Feed text to a stream scanner in token-sized pieces and check the no-leak invariants."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from filters.base import FilterResult, StreamScanner
from filters.normalize import words

_PIECE = re.compile(r"\s*[^\s]{1,4}|\s+")


def pieces(text: str) -> list[str]:
    """Roughly BPE-sized pieces: up to 4 characters, a leading space kept with the piece."""
    out = _PIECE.findall(text)
    assert "".join(out) == text
    return out


@dataclass
class Outcome:
    hit: FilterResult | None = None
    released: int = 0  # what had been declared stable before the hit (or at the end)
    held_words: list[int] = field(default_factory=list)  # words held back after each scan
    hits: list[FilterResult] = field(default_factory=list)  # every non-allow result


def feed(scanner: StreamScanner, text: str, stop_on_block: bool = True) -> Outcome:
    out = Outcome()
    so_far = ""
    parts = pieces(text)
    for k, piece in enumerate(parts):
        so_far += piece
        final = k == len(parts) - 1
        res = scanner.scan(so_far, final)
        for span in res.result.spans:
            assert span.start >= out.released, "a hit covers text already declared stable"
            assert span.end <= len(so_far)
        assert res.stable >= out.released, "stable went backwards"
        assert res.stable <= len(so_far)
        if res.result.hit:
            out.hits.append(res.result)
            if out.hit is None:
                out.hit = res.result
            if stop_on_block and res.result.action.value == "block":
                return out
        out.released = res.stable
        out.held_words.append(len(words(so_far[res.stable :])))
    assert out.released == len(text), "a finished stream must release everything"
    return out
