"""Assertions shared by the red-team cases, and text transforms attackers use."""

from __future__ import annotations

from typing import Any

from tests.attacks.redteam.client import Reply

TERMINAL = ("stop", "length", "content_filter")


def assert_no_leak(reply: Reply) -> None:
    verdict = reply.verdict()
    assert not verdict, f"{', '.join(verdict.leaks)} reached the client: {reply.describe()}"


def assert_answered(reply: Reply) -> None:
    """A complete, well-formed answer: 200, every choice finished, a stream ends with [DONE]."""
    assert reply.status == 200, reply.describe()
    if reply.stream:
        assert reply.done, f"stream did not end with [DONE]: {reply.describe()}"
        assert not reply.error_events, reply.describe()
    assert reply.finishes, f"no choice finished: {reply.describe()}"
    assert all(f in TERMINAL for f in reply.finishes.values()), reply.describe()


def assert_error_envelope(reply: Reply, status: int | None = None) -> dict[str, Any]:
    assert reply.error is not None, f"no OpenAI error envelope: {reply.describe()}"
    assert set(reply.error) >= {"message", "type", "param", "code"}, reply.describe()
    if status is not None:
        assert reply.status == status, reply.describe()
    return reply.error


def refused_naming(reply: Reply, names: tuple[str, ...]) -> bool:
    """A 400 in the OpenAI envelope whose `param` names one of `names`."""
    if reply.status != 400 or reply.error is None:
        return False
    param = str(reply.error.get("param") or "")
    return any(name in param for name in names)


# --- what attackers do to text -------------------------------------------------------------
_CYRILLIC = str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х",
                           "y": "у", "i": "і", "A": "А", "E": "Е", "O": "О", "P": "Р",
                           "C": "С", "H": "Н", "M": "М", "T": "Т", "K": "К", "B": "В"})
_GREEK = str.maketrans({"o": "ο", "v": "ν", "i": "ι", "A": "Α", "B": "Β", "E": "Ε",
                        "H": "Η", "I": "Ι", "K": "Κ", "M": "Μ", "N": "Ν", "O": "Ο",
                        "T": "Τ", "X": "Χ", "Z": "Ζ"})

DIGIT_SCRIPTS = {
    "fullwidth": 0xFF10,
    "arabic-indic": 0x0660,
    "persian": 0x06F0,
    "devanagari": 0x0966,
    "bengali": 0x09E6,
    "thai": 0x0E50,
    "math-bold": 0x1D7CE,
    "math-mono": 0x1D7F6,
}


def cyrillic(text: str) -> str:
    return text.translate(_CYRILLIC)


def greek(text: str) -> str:
    return text.translate(_GREEK)


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def digits_in(text: str, script: str) -> str:
    base = DIGIT_SCRIPTS[script]
    return "".join(chr(base + int(c)) if c.isdigit() else c for c in text)


def mixed_digits(text: str) -> str:
    scripts = list(DIGIT_SCRIPTS.values())
    out, k = [], 0
    for c in text:
        if c.isdigit():
            out.append(chr(scripts[k % len(scripts)] + int(c)))
            k += 1
        else:
            out.append(c)
    return "".join(out)


def between(text: str, sep: str) -> str:
    return sep.join(text)


def inside_words(text: str, mark: str) -> str:
    """`mark` after every second character of each word."""
    return " ".join("".join(c + (mark if k % 2 else "") for k, c in enumerate(w))
                    for w in text.split(" "))
