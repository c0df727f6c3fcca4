"""The literal filter: a policy's names however they are written, and nothing else."""

from __future__ import annotations

import pytest

from filters.base import run_steps
from filters.literal import Literal

LITERALS = ["Harry Potter", "Hogwarts", "Dumbledore", "J.K. Rowling", "Muggle", "Snape"]


@pytest.fixture(scope="module")
def literal() -> Literal:
    return Literal(LITERALS, Literal.Options())


@pytest.mark.parametrize(
    "text",
    [
        "Harry Potter fans will recognise this trick.",
        "Stir the sauce. Hogwarts rules. Serve warm.",
        "HarryPotter", "harry-potter", "H a r r y  P o t t e r", "Hog\u200bwarts",
        "H0gw4rts", "DUMBLEDORE", "Dumble-dore", "\u041d\u0430rry \u0420otter",  # Cyrillic
        "\uff28\uff4f\uff47\uff57\uff41\uff52\uff54\uff53",  # fullwidth
        "the muggles", "Snape's potion", "as JK Rowling wrote", "j. k. rowling",
    ],
    ids=["sentence", "two-word-sentence", "joined", "hyphen", "spelled", "zero-width", "leet",
         "caps", "split", "cyrillic", "fullwidth", "plural", "possessive", "initials",
         "dotted-initials"],
)
def test_names_are_found_however_written(literal: Literal, text: str) -> None:
    result = literal.check(text)
    assert result.hit
    assert result.spans


@pytest.mark.parametrize(
    "text",
    [
        "Harry Styles released a new album.", "Prince Harry visited Canada.",
        "The pottery class starts at nine.", "A snap edit of the photo.",
        "Potter's wheel and clay.", "Hog roast with warts and all.",
        "The wizard in Tolkien's books is Gandalf.",
    ],
    ids=["harry-styles", "prince-harry", "pottery", "snap-edit", "potters-wheel",
         "hog-roast", "other-wizard"],
)
def test_near_misses_are_allowed(literal: Literal, text: str) -> None:
    assert not literal.check(text).hit


def test_the_span_covers_the_name_in_the_callers_offsets(literal: Literal) -> None:
    text = "Mix flour. Then H a r r y Potter appears."
    (span,) = literal.check(text).spans
    assert text[span.start : span.end] == "H a r r y Potter"


def test_a_stream_decides_as_the_whole_text(literal: Literal) -> None:
    text = "Whisk two eggs with sugar. Dumbledore would approve. Bake for twenty minutes."
    scanner = literal.open_stream()
    verdicts = [run_steps(scanner.scan_steps(text[:end], end == len(text)))
                for end in range(1, len(text) + 1, 7)] + [scanner.scan(text, True)]
    assert verdicts[-1].result.hit == literal.check(text).hit
    # What the gateway released before the first hit stops short of the name.
    first_hit = next(i for i, v in enumerate(verdicts) if v.result.hit)
    released = max((v.stable for v in verdicts[:first_hit]), default=0)
    assert released <= text.index("Dumbledore")


def test_short_literals_are_ignored_and_none_left_is_an_error() -> None:
    with pytest.raises(ValueError, match="no literal long enough"):
        Literal(["Ron", "Tom"], Literal.Options())
