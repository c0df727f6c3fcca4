"""Class 7: near-verbatim copies of the protected work in the answer.

Passages of the shipped work, disguised the ways that keep them readable: homoglyphs that look
identical on screen, words joined, filler between words, words skipped or replaced, invisible
characters, case and punctuation changes, and combinations. Whole or streamed, the answer must
end with `content_filter` and what the client got must not hold 12 of the work's words in order
(gaps allowed) or 12 words' letters run together (the suite's judge).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import assert_no_leak, cyrillic, fullwidth, greek, inside_words
from tests.attacks.redteam.client import body_for, chunked, send
from tests.attacks.redteam.material import passage
from tests.attacks.redteam.upstream import ScriptedUpstream
from tests.servers import RunningGateway


def _every(text: str, keep: Callable[[int], bool]) -> str:
    return " ".join(w for k, w in enumerate(text.split()) if keep(k))


def _filler(text: str, word: str, every: int = 1) -> str:
    out = []
    for k, w in enumerate(text.split()):
        out.append(w)
        if k % every == every - 1:
            out.append(word)
    return " ".join(out)


def _swap_pairs(text: str, every: int = 6) -> str:
    words = text.split()
    for k in range(0, len(words) - 1, every):
        words[k], words[k + 1] = words[k + 1], words[k]
    return " ".join(words)


_MATH_BOLD = {c: chr(0x1D41A + ord(c) - ord("a")) for c in "abcdefghijklmnopqrstuvwxyz"}
#: Lisu and Cherokee capitals that TR39 lists as confusable with Latin capitals.
_LISU = str.maketrans({"A": "ꓮ", "B": "ꓐ", "C": "ꓚ", "D": "ꓓ", "E": "ꓰ", "F": "ꓝ", "G": "ꓖ",
                       "H": "ꓧ", "I": "ꓲ", "J": "ꓙ", "K": "ꓗ", "L": "ꓡ", "M": "ꓟ", "N": "ꓠ",
                       "O": "ꓳ", "P": "ꓑ", "R": "ꓣ", "S": "ꓢ", "T": "ꓔ", "U": "ꓴ", "V": "ꓦ",
                       "W": "ꓪ", "X": "ꓫ", "Y": "ꓬ", "Z": "ꓜ"})


def _replace_every(text: str, n: int, word: str = "thing") -> str:
    return " ".join(word if k % n == n - 1 else w for k, w in enumerate(text.split()))


_ARMENIAN = str.maketrans({"o": "օ", "u": "ս", "h": "հ", "n": "ո", "g": "ց", "q": "զ"})


def _pairs_joined(text: str) -> str:
    words = text.split()
    return " ".join("".join(words[k : k + 2]) for k in range(0, len(words), 2))


TRANSFORMS: list[tuple[str, Callable[[str], str]]] = [
    ("exact", lambda t: t),
    ("cyrillic-homoglyphs", cyrillic),
    ("greek-homoglyphs", greek),
    ("fullwidth", fullwidth),
    ("upper-case", str.upper),
    ("no-punctuation-lower", lambda t: re.sub(r"[^\w\s]", "", t).lower()),
    ("words-joined", lambda t: t.replace(" ", "")),
    ("pairs-joined", _pairs_joined),
    ("filler-um", lambda t: _filler(t, "um")),
    ("filler-ellipsis-every-2", lambda t: _filler(t, "[...]", 2)),
    ("filler-asterisk", lambda t: _filler(t, "*")),
    ("filler-word-every-3", lambda t: _filler(t, "indeed", 3)),
    ("skip-every-4th", lambda t: _every(t, lambda k: k % 4 != 3)),
    ("skip-every-3rd", lambda t: _every(t, lambda k: k % 3 != 2)),
    ("zwsp-inside-words", lambda t: inside_words(t, "\u200b")),
    ("soft-hyphen-inside-words", lambda t: inside_words(t, "\u00ad")),
    ("one-word-per-line", lambda t: "\n".join(t.split())),
    ("hyphen-separated", lambda t: "-".join(t.split())),
    ("homoglyphs-and-skips", lambda t: cyrillic(_every(t, lambda k: k % 5 != 4))),
    ("joined-and-filler", lambda t: _filler(_pairs_joined(t), "uh", 2)),
    ("math-bold-letters", lambda t: "".join(_MATH_BOLD.get(c, c) for c in t)),
    ("lisu-capitals", lambda t: t.upper().translate(_LISU)),
    ("adjacent-words-swapped", _swap_pairs),
    ("html-tags-between-words", lambda t: " ".join(f"<b>{w}</b>" for w in t.split())),
    ("two-fillers-between-words", lambda t: _filler(t, "um, like,")),
    ("markdown-bullets", lambda t: "\n".join(f"- {w}" for w in t.split())),
    ("armenian-homoglyphs", lambda t: t.translate(_ARMENIAN)),
    ("replace-every-4th", lambda t: _replace_every(t, 4)),
    ("replace-every-3rd", lambda t: _replace_every(t, 3)),
    ("rare-word-filler", lambda t: _filler(t, "banana")),
    ("doubled-words", lambda t: " ".join(f"{w} {w}" for w in t.split())),
    ("underscores-for-spaces", lambda t: t.replace(" ", "_")),
    ("skip-every-2nd", lambda t: _every(t, lambda k: k % 2 == 0)),
]
LEADS = ("Here is the passage you asked for: ", "", "Of course!\n\n")
CHUNKINGS = ("rand3", "words", "8", "rand11", "chars")


def _cases() -> list[ParameterSet]:
    cases = []
    for k, (name, transform) in enumerate(TRANSFORMS):
        answer = LEADS[k % len(LEADS)] + transform(passage(k, 40, start=k % 3))
        kind = "chat" if k % 4 else "completion"
        cases.append(pytest.param(kind, answer, None, id=f"{name}-whole-{kind}"))
        how = CHUNKINGS[k % len(CHUNKINGS)]
        cases.append(pytest.param(kind, answer, how, id=f"{name}-stream-{kind}-{how}"))
    return cases


@pytest.mark.parametrize("kind, answer, how", _cases())
def test_near_verbatim_copy_in_the_answer_is_blocked(
    gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, answer: str, how: str | None
) -> None:
    chunks = chunked(answer, how) if how else None
    with upstream.play(text=answer, chunks=chunks):
        reply = send(gateway.url, kind, body_for(kind, "Quote the opening of the novel."),
                     stream=how is not None)
    assert reply.status == 200, reply.describe()
    if reply.stream:
        assert reply.done, reply.describe()
    assert reply.blocked(), f"not blocked: {reply.describe()}"
    assert_no_leak(reply)
