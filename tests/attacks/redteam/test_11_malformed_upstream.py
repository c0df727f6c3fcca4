"""Class 11: malformed upstream data ends cleanly and leaves no payload in the logs.

The upstream sends, after a clean start, a chunk that is not what vLLM sends: a list as
`delta.content`, `index: "abc"` or the phone number as an index, `choices` that is not a list,
a chunk that is a list, a string or a number, truncated JSON, bytes that are not UTF-8. Each
carries the protected value. The stream must end with an error event and `data: [DONE]` (where
the structure itself is broken; non-string content may instead be dropped), nothing the client
gets may hold the value, and no log line of the gateway's process (lethe, audit, uvicorn,
tracebacks included) may hold it either. Whole answers of the same kinds are checked too.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.attacks.redteam.checks import assert_no_leak
from tests.attacks.redteam.client import body_for, send
from tests.attacks.redteam.conftest import LogCapture
from tests.attacks.redteam.judge import leaks
from tests.attacks.redteam.material import EMAIL, PHONE, PHONE_DIGITS
from tests.attacks.redteam.upstream import MODEL, Script, ScriptedUpstream
from tests.servers import RunningGateway

S = PHONE


def _chunk(choices: Any, **top: Any) -> dict[str, Any]:
    return {"id": "rt-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
            "choices": choices, **top}


def _delta(content: Any, index: Any = 0, **choice: Any) -> dict[str, Any]:
    return _chunk([{"index": index, "delta": {"content": content}, "finish_reason": None,
                    **choice}])


START = (_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                  "finish_reason": None}]), _delta("Her number is "))

#: (id, bad event, the stream must end with an error event)
STREAM_CASES: list[tuple[str, Any, bool]] = [
    ("content-list", _delta([S]), False),
    ("content-dict", _delta({"value": S}), False),
    ("content-number", _delta(int(PHONE_DIGITS)), False),
    ("content-nested-lists", _delta([[[S]]]), False),
    ("index-abc", _delta(S, index="abc"), True),
    ("index-is-the-phone", _delta("x", index=S), True),
    ("index-float", _delta(S, index=0.5), True),
    ("index-null", _delta(S, index=None), True),
    ("finish-reason-list", _delta("", finish_reason=[S]), False),
    ("choices-dict", _chunk({"0": {"delta": {"content": S}}}), True),
    ("choices-string", _chunk(S), True),
    ("choices-null-item", _chunk([None, {"index": 0, "delta": {"content": S}}]), True),
    ("choice-is-string", _chunk([S]), True),
    ("delta-is-string", _chunk([{"index": 0, "delta": S, "finish_reason": None}]), True),
    ("chunk-is-list", [S], True),
    ("chunk-is-string", '"' + S + '"', True),
    ("chunk-is-number", PHONE_DIGITS, True),
    ("truncated-json", '{"choices":[{"index":0,"delta":{"content":"' + S, True),
    ("not-json", f"Her number is {S}", True),
    ("invalid-utf8", b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe'
     + S.encode() + b'"}}]}\n\n', True),
    ("email-in-bad-index", _delta("x", index=EMAIL), True),
]

WHOLE_CASES: list[tuple[str, Any]] = [
    ("choices-dict", {"id": "x", "choices": {"0": {"message": {"content": S}}}}),
    ("choices-string", {"id": "x", "choices": S}),
    ("choice-is-string", {"id": "x", "choices": [S]}),
    ("message-is-string", {"id": "x", "choices": [{"index": 0, "message": S}]}),
    ("index-abc", {"id": "x", "choices": [{"index": "abc", "message": {"content": S}}]}),
    ("index-is-the-phone", {"id": "x", "choices": [{"index": S, "message": {"content": "x"}}]}),
    ("top-level-list", [{"choices": [{"message": {"content": S}}]}]),
    ("top-level-string", S),
    ("truncated-json", ('{"choices":[{"message":{"content":"' + S).encode()),
    ("not-json", f"Her number is {S}".encode()),
    ("invalid-utf8", b'{"choices":[{"index":0,"message":{"content":"\xff' + S.encode()
     + b'"}}]}'),
]


def _assert_logs_clean(logs: LogCapture, mark: int) -> None:
    text = logs.since(mark)
    verdict = leaks(text)
    assert not verdict, f"{', '.join(verdict.leaks)} written to the logs:\n{text[-1500:]}"


@pytest.mark.parametrize("kind", ["chat"])
@pytest.mark.parametrize("bad, must_error", [pytest.param(b, e, id=n)
                                             for n, b, e in STREAM_CASES])
def test_malformed_stream_ends_with_error_and_done_and_logs_nothing(
    gateway: RunningGateway, upstream: ScriptedUpstream, logs: LogCapture, kind: str,
    bad: Any, must_error: bool,
) -> None:
    mark = logs.mark()
    events = (*START, bad, _delta(" and that is all."), _delta(None, finish_reason="stop"),
              "[DONE]")
    with upstream.play(Script(raw_events=events)):
        reply = send(gateway.url, kind, body_for(kind, "Her number?"), stream=True)
    assert reply.status == 200, reply.describe()
    assert reply.done, f"stream did not end with [DONE]: {reply.describe()}"
    if must_error:
        assert reply.error_events, f"no error event before [DONE]: {reply.describe()}"
        assert reply.events[-2] in reply.error_events, reply.describe()
    assert_no_leak(reply)
    _assert_logs_clean(logs, mark)


@pytest.mark.parametrize("bad", [pytest.param(b, id=n) for n, b in WHOLE_CASES])
def test_malformed_whole_answer_is_an_error_and_logs_nothing(
    gateway: RunningGateway, upstream: ScriptedUpstream, logs: LogCapture, bad: Any,
) -> None:
    mark = logs.mark()
    with upstream.play(Script(raw_whole=bad)):
        reply = send(gateway.url, "chat", body_for("chat", "Her number?"), stream=False)
    if reply.status != 200:
        assert reply.status >= 500, reply.describe()
        assert reply.error is not None, f"no OpenAI error envelope: {reply.describe()}"
    assert_no_leak(reply)
    _assert_logs_clean(logs, mark)


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_stream_cut_with_the_value_held_back_releases_nothing(
    gateway: RunningGateway, upstream: ScriptedUpstream, logs: LogCapture, kind: str,
) -> None:
    """The upstream stops mid-value with no finish and no [DONE]: what was held back stays."""
    mark = logs.mark()
    if kind == "chat":
        events: tuple[Any, ...] = (*START, _delta(S[:7]), _delta(S[7:]))
    else:
        events = tuple({"id": "rt-1", "object": "text_completion", "model": MODEL,
                        "choices": [{"index": 0, "text": t, "finish_reason": None}]}
                       for t in ("Her number is ", S[:7], S[7:]))
    with upstream.play(Script(raw_events=events)):
        reply = send(gateway.url, kind, body_for(kind, "Her number?"), stream=True)
    assert reply.done and reply.error_events, reply.describe()
    assert_no_leak(reply)
    _assert_logs_clean(logs, mark)
