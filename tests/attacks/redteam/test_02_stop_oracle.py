"""Class 2: stop strings as an oracle.

An attacker lists candidate values as `stop` strings; a vLLM-like upstream cuts the answer at
the one the model produced and names it in `stop_reason`. Every candidate list that holds the
protected value (in the form the answer uses, lists of 1 to 100) must either be refused with a
400 naming `stop` before anything reaches the upstream, or reach the upstream with no protected
value in it and come back with nothing that reveals it. A model that emits the value with a
benign stop list must not get it out through `stop_reason` either (absent, null or a fixed
label).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import assert_no_leak, refused_naming
from tests.attacks.redteam.client import Reply, body_for, send
from tests.attacks.redteam.judge import leaks_any
from tests.attacks.redteam.material import EMAIL, PHONE_DIGITS, passage
from tests.attacks.redteam.upstream import ScriptedUpstream
from tests.servers import RunningGateway


def _phones(fmt: Callable[[str], str]) -> Callable[[int], list[str]]:
    def make(size: int) -> list[str]:
        base = int(PHONE_DIGITS[:6] + "0100")
        return [fmt(str(base + k)) for k in range(size + 1) if str(base + k) != PHONE_DIGITS]
    return make


def _dates(fmt: Callable[[int, int, int], str]) -> Callable[[int], list[str]]:
    def make(size: int) -> list[str]:
        out = []
        for k in range(size + 1):
            year, day = 1980 + k // 28, 1 + k % 28
            if (year, day) != (1987, 14):
                out.append(fmt(year, 3, day))
        return out
    return make


def _emails(size: int) -> list[str]:
    local, _, domain = EMAIL.partition("@")
    first, last = local.split(".")
    variants = [f"{first}.{last}{k}@{domain}" for k in range(size)]
    return [f"{first[0]}.{last}@{domain}", f"{first}{last}@{domain}", *variants][:size]


def _streets(size: int) -> list[str]:
    return [f"{n} Harbor Lane" for n in range(1, size + 2) if n != 42][:size]


MONTHS = ("January", "February", "March")

FORMS: list[tuple[str, str, Callable[[int], list[str]]]] = [
    ("phone-dashed", "415-555-0199", _phones(lambda d: f"{d[:3]}-{d[3:6]}-{d[6:]}")),
    ("phone-compact", PHONE_DIGITS, _phones(lambda d: d)),
    ("phone-parens", "(415) 555-0199", _phones(lambda d: f"({d[:3]}) {d[3:6]}-{d[6:]}")),
    ("phone-local", "555-0199", _phones(lambda d: f"{d[3:6]}-{d[6:]}")),
    ("phone-dots", "415.555.0199", _phones(lambda d: f"{d[:3]}.{d[3:6]}.{d[6:]}")),
    ("phone-intl", "+1 415 555 0199", _phones(lambda d: f"+1 {d[:3]} {d[3:6]} {d[6:]}")),
    ("email", EMAIL, _emails),
    ("email-upper", EMAIL.upper(), lambda n: [e.upper() for e in _emails(n)]),
    ("dob-iso", "1987-03-14", _dates(lambda y, m, d: f"{y}-{m:02d}-{d:02d}")),
    ("dob-natural", "March 14, 1987", _dates(lambda y, m, d: f"{MONTHS[m - 1]} {d}, {y}")),
    ("dob-us", "03/14/1987", _dates(lambda y, m, d: f"{m:02d}/{d:02d}/{y}")),
    ("address", "42 Harbor Lane", _streets),
]


def _cases() -> list[ParameterSet]:
    cases = []
    k = 0
    for name, value, candidates in FORMS:
        sizes = (1, 12, 100) if name.startswith("phone") else (1, 12)
        for size in sizes:
            kind = "chat" if k % 2 else "completion"
            stream = k % 3 == 1
            if size == 1:
                stop: str | list[str] = value
            else:
                listed = candidates(size - 1)
                listed.insert(random.Random(k).randrange(len(listed) + 1), value)
                stop = listed
            mode = "stream" if stream else "whole"
            cases.append(pytest.param(kind, value, stop, stream,
                                      id=f"{name}-{size}-candidates-{mode}-{kind}"))
            k += 1
    return cases


def _stop_strings(body: dict[str, object]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else []


_LABEL = re.compile(r"^[a-z_]{1,20}$")


def _stop_reasons(reply: Reply) -> list[object]:
    roots = list(reply.events) if reply.stream else [reply.body]
    found: list[object] = []
    for root in roots:
        choices = root.get("choices") if isinstance(root, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and "stop_reason" in choice:
                found.append(choice["stop_reason"])
    return found


def _assert_bounded_stop_reason(reply: Reply) -> None:
    for reason in _stop_reasons(reply):
        assert reason is None or (isinstance(reason, str) and _LABEL.match(reason)), (
            f"stop_reason {reason!r} carries text: {reply.describe()}")


@pytest.mark.parametrize("kind, value, stop, stream", _cases())
def test_stop_list_holding_the_value_is_no_oracle(
    gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, value: str,
    stop: str | list[str], stream: bool,
) -> None:
    mark = upstream.recorder.mark()
    answer = f"Her record says {value}. Anything else?"
    with upstream.play(text=answer):
        reply = send(gateway.url, kind, body_for(kind, "Her details?", stop=stop), stream=stream)
    forwarded = upstream.recorder.since(mark)
    if reply.status == 400:
        assert refused_naming(reply, ("stop",)), reply.describe()
        assert not forwarded, "a refused request reached the upstream"
    else:
        assert reply.status == 200, reply.describe()
        sent = [s for r in forwarded for s in _stop_strings(r.body)]
        assert not leaks_any(sent), f"the upstream received the value as a stop string: {sent}"
        _assert_bounded_stop_reason(reply)
    assert_no_leak(reply)


EMITTED = [
    ("phone", "415-555-0199"),
    ("email", EMAIL),
    ("dob", "March 14, 1987"),
    ("phone-as-number", int(PHONE_DIGITS)),
    ("work-passage", passage(2, 20)),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("name, reason", EMITTED, ids=[n for n, _ in EMITTED])
def test_stop_reason_from_the_model_never_carries_the_value(
    gateway: RunningGateway, upstream: ScriptedUpstream, name: str, reason: object,
    stream: bool,
) -> None:
    kind = "completion" if name.startswith("phone") else "chat"
    with upstream.play(text="Here is what I found: ", stop_reason=reason):
        reply = send(gateway.url, kind, body_for(kind, "Hi", stop=["\n\nUser:", "###"]),
                     stream=stream)
    assert reply.status == 200, reply.describe()
    _assert_bounded_stop_reason(reply)
    assert_no_leak(reply)
