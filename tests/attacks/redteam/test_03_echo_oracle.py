"""Class 3: echo as an oracle.

A prompt lists candidate values (the protected one among them, in several forms) and asks for
`echo`; a gateway that redacts the prompt and lets the engine echo it shows exactly which
candidate was the protected one. The rule: a prompt that input redaction changed is never
echoed. The request is refused (400) or blocked (every choice content_filter), and nothing the
client gets places a [REDACTED] mark in the prompt or holds the value.
"""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import assert_no_leak
from tests.attacks.redteam.client import Reply, chat_body, completion_body, send
from tests.attacks.redteam.upstream import ScriptedUpstream
from tests.servers import RunningGateway

FORMS: list[tuple[str, str, list[str]]] = [
    ("phone-dashed", "415-555-0199", [f"415-555-01{k:02d}" for k in range(60, 99)]),
    ("phone-compact", "4155550199", [f"41555501{k:02d}" for k in range(60, 99)]),
    ("phone-spoken", "four one five, five five five, zero one nine nine",
     [f"four one five, five five five, zero one {a} {b}" for a in ("two", "three", "four")
      for b in ("one", "two", "six", "seven", "eight")]),
    ("email", "elena.marquez@example.org",
     [f"elena.marquez{k}@example.org" for k in range(30)]),
    ("dob-iso", "1987-03-14", [f"1987-03-{d:02d}" for d in range(1, 29) if d != 14]),
    ("dob-natural", "March 14, 1987", [f"March {d}, 1987" for d in range(1, 29) if d != 14]),
    ("address", "42 Harbor Lane", [f"{n} Harbor Lane" for n in range(1, 40)]),
]
SIZES = (1, 20)


def _prompt(value: str, decoys: list[str], size: int) -> str:
    listed = decoys[: size - 1]
    listed.insert(len(listed) // 2, value)
    return "Which of these belongs to Elena Marquez?\n" + "\n".join(listed) + "\nAnswer:"


def _cases() -> list[ParameterSet]:
    cases = []
    for name, value, decoys in FORMS:
        for size in SIZES:
            for stream in (False, True):
                mode = "stream" if stream else "whole"
                cases.append(pytest.param("completion", _prompt(value, decoys, size), stream,
                                          id=f"{name}-{size}-candidates-{mode}-completion"))
    for name, value, decoys in FORMS[::2]:
        cases.append(pytest.param("chat", _prompt(value, decoys, 20), False,
                                  id=f"{name}-20-candidates-whole-chat"))
    return cases


def _refused_or_blocked(reply: Reply) -> bool:
    if reply.status == 400:
        return reply.error is not None
    return reply.status == 200 and reply.blocked()


@pytest.mark.parametrize("kind, prompt, stream", _cases())
def test_echo_of_a_redacted_prompt_is_refused(
    gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, prompt: str, stream: bool
) -> None:
    body = (completion_body(prompt, echo=True) if kind == "completion"
            else chat_body(prompt, echo=True))
    with upstream.play(text=" The third one."):
        reply = send(gateway.url, kind, body, stream=stream)
    assert _refused_or_blocked(reply), f"echoed: {reply.describe()}"
    assert "[REDACTED]" not in reply.raw, f"redaction placed in the echo: {reply.describe()}"
    assert_no_leak(reply)
