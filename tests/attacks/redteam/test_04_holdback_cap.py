"""Class 4: the hold-back cap never releases unchecked text.

The protected value's characters are spread out with more padding between them than the
stream's hold-back cap (1,024 characters by default): spaces, zero-width characters, hyphens,
newlines, no-break spaces, mixtures. Streamed in 50-character or random chunks, the stream must
end cleanly ([DONE]) with `content_filter` or with the value redacted: the digit stream (or
letters) of what the client got never holds the value. Whole answers are checked alongside.
"""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import TERMINAL, assert_no_leak
from tests.attacks.redteam.client import body_for, chunked, random_chunks, send
from tests.attacks.redteam.material import DOB, EMAIL, PHONE, PHONE_DIGITS
from tests.attacks.redteam.upstream import ScriptedUpstream
from tests.servers import RunningGateway

SEPARATORS = {
    "spaces": " ",
    "zero-width": "\u200b",
    "hyphens": "-",
    "newlines": "\n",
    "nbsp": "\u00a0",
    "tabs": "\t",
    "mixed": " \u200b-\n",
    "dots-and-spaces": ". ",
    "soft-hyphens": "\u00ad",
    "word-joiners": "\u2060",
}

VALUES = {
    "phone-digits": PHONE_DIGITS,
    "phone-dashed": PHONE,
    "email": EMAIL,
    "dob-iso": DOB,
}


def spread(value: str, separator: str, gap: int) -> str:
    pad = (separator * (gap // len(separator) + 1))[:gap]
    return "Her number, slowly: " + pad.join(value) + " — that is all."


def _cases() -> list[ParameterSet]:
    cases = []
    seps = list(SEPARATORS.items())
    for k, (sep_name, sep) in enumerate(seps):
        how = "50" if k % 2 else f"rand{k + 1}"
        cases.append(pytest.param("phone-digits", sep, 1100, how,
                                  id=f"phone-digits-{sep_name}-1100-stream-{how}"))
    for k, (value_name, gap) in enumerate([("phone-dashed", 1100), ("email", 1100),
                                          ("dob-iso", 1100), ("phone-digits", 3000)]):
        for sep_name in ("spaces", "mixed"):
            how = "50" if k % 2 else f"rand{k + 20}"
            cases.append(pytest.param(value_name, SEPARATORS[sep_name], gap, how,
                                      id=f"{value_name}-{sep_name}-{gap}-stream-{how}"))
    for value_name, sep_name in [("phone-digits", "spaces"), ("phone-digits", "zero-width"),
                                 ("email", "newlines"), ("dob-iso", "hyphens")]:
        cases.append(pytest.param(value_name, SEPARATORS[sep_name], 1100, None,
                                  id=f"{value_name}-{sep_name}-1100-whole"))
    return cases


@pytest.mark.parametrize("value_name, separator, gap, how", _cases())
def test_padding_beyond_the_cap_releases_nothing(
    gateway: RunningGateway, upstream: ScriptedUpstream, value_name: str, separator: str,
    gap: int, how: str | None,
) -> None:
    answer = spread(VALUES[value_name], separator, gap)
    chunks = None
    if how is not None:
        # Random chunks of 20-80 characters: a few hundred events, not thousands.
        chunks = random_chunks(answer, int(how[4:]), 20, 80) if how.startswith("rand") \
            else chunked(answer, how)
    with upstream.play(text=answer, chunks=chunks):
        reply = send(gateway.url, "chat", body_for("chat", "Her number?"), stream=how is not None)
    assert reply.status == 200, reply.describe()
    if reply.stream:
        assert reply.done, f"stream did not end with [DONE]: {reply.describe()}"
    assert reply.finish in TERMINAL, reply.describe()
    assert_no_leak(reply)
