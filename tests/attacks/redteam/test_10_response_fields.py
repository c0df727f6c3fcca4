"""Class 10: allow-list holes in responses.

The upstream puts the protected value everywhere except the text the output stage checks: a
chat choice's `text`, a completion choice's `message`, content that is not a string, reasoning,
refusal and tool fields, `finish_reason`, `stop_reason`, `index`, `usage`, `id`, `model`,
`system_fingerprint`, `created`, unknown keys, error chunks, and the messages of upstream HTTP
errors. Whole and streamed, chat and completions: no key or value the client receives may hold
it (each scalar is judged on its own and all strings together).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import assert_no_leak
from tests.attacks.redteam.client import body_for, send
from tests.attacks.redteam.material import CONCEPT_QUESTION, EMAIL, PHONE, PHONE_DIGITS, passage
from tests.attacks.redteam.upstream import MODEL, Script, ScriptedUpstream
from tests.servers import RunningGateway

S = PHONE
N = int(PHONE_DIGITS)
CLEAN = "A clean answer."

Mutate = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutate:
    """Set a dotted path (`choices.0.message.role`) in a response or chunk."""
    def mutate(node: dict[str, Any]) -> None:
        keys = path.split(".")
        target: Any = node
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        last = keys[-1]
        if isinstance(target, list) and int(last) == len(target):
            target.append(value)
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def _whole(kind: str, mutate: Mutate) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": CLEAN}
    else:
        choice["text"] = CLEAN
    data = {"id": "rt-1", "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": 1, "model": MODEL, "choices": [choice],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    mutate(data)
    return data


def _chunk(kind: str, text: str | None, finish: str | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if kind == "chat":
        choice["delta"] = {} if text is None else {"content": text}
    else:
        choice["text"] = text or ""
    return {"id": "rt-1", "object": "chat.completion.chunk" if kind == "chat" else
            "text_completion", "created": 1, "model": MODEL, "choices": [choice]}


def _events(kind: str, mutate: Mutate, at: str = "middle") -> tuple[Any, ...]:
    """A clean stream with one chunk mutated: the first, a middle one, or the final one."""
    chunks = [_chunk(kind, "A clean ", None), _chunk(kind, "answer.", None),
              _chunk(kind, None, "stop")]
    target = {"first": 0, "middle": 1, "last": 2}[at]
    chunks[target] = copy.deepcopy(chunks[target])
    mutate(chunks[target])
    return (*chunks, "[DONE]")


WHOLE_CHAT: list[tuple[str, Mutate]] = [
    ("choice-text", _set("choices.0.text", S)),
    ("content-list", _set("choices.0.message.content", [{"type": "text", "text": S}])),
    ("content-dict", _set("choices.0.message.content", {"text": S})),
    ("content-number", _set("choices.0.message.content", N)),
    ("reasoning-content", _set("choices.0.message.reasoning_content", S)),
    ("reasoning", _set("choices.0.message.reasoning", S)),
    ("refusal", _set("choices.0.message.refusal", EMAIL)),
    ("role", _set("choices.0.message.role", S)),
    ("message-name", _set("choices.0.message.name", S)),
    ("annotations", _set("choices.0.message.annotations",
                         [{"type": "url_citation", "url_citation": {"title": S}}])),
    ("tool-calls", _set("choices.0.message.tool_calls", [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": S}}])),
    ("audio-transcript", _set("choices.0.message.audio", {"transcript": S})),
    ("finish-reason", _set("choices.0.finish_reason", S)),
    ("stop-reason", _set("choices.0.stop_reason", S)),
    ("stop-reason-number", _set("choices.0.stop_reason", N)),
    ("choice-index", _set("choices.0.index", N)),
    ("logprobs", _set("choices.0.logprobs", {"content": [{"token": S, "logprob": -0.1}]})),
    ("usage-extra-key", _set("usage.note", S)),
    ("usage-number", _set("usage.completion_tokens", N)),
    ("usage-details", _set("usage.prompt_tokens_details", {"cached": S})),
    ("id", _set("id", S)),
    ("model", _set("model", S)),
    ("system-fingerprint", _set("system_fingerprint", S)),
    ("object", _set("object", S)),
    ("created", _set("created", N)),
    ("service-tier", _set("service_tier", S)),
    ("unknown-top-key", _set("kv_transfer_params", {"note": S})),
    ("prompt-logprobs", _set("prompt_logprobs", [None, {"1": {"decoded_token": S}}])),
    ("error-beside-choices", _set("error", {"message": S})),
    ("extra-choice", _set("choices.1", {"index": 1, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": S}})),
    ("reasoning-passage", _set("choices.0.message.reasoning_content", passage(3, 30))),
    ("text-field-concept", _set("choices.0.text", CONCEPT_QUESTION)),
]
WHOLE_COMPLETION: list[tuple[str, Mutate]] = [
    ("choice-message", _set("choices.0.message", {"role": "assistant", "content": S})),
    ("text-list", _set("choices.0.text", [S])),
    ("text-number", _set("choices.0.text", N)),
    ("finish-reason", _set("choices.0.finish_reason", S)),
    ("stop-reason", _set("choices.0.stop_reason", S)),
    ("logprobs", _set("choices.0.logprobs", {"tokens": [S], "top_logprobs": [{S: -0.1}]})),
    ("id", _set("id", S)),
    ("model", _set("model", EMAIL)),
    ("prompt-token-ids", _set("choices.0.prompt_token_ids", [ord(c) for c in S])),
    ("choice-message-passage", _set("choices.0.message", {"content": passage(4, 30)})),
]
STREAM_CHAT: list[tuple[str, Mutate, str]] = [
    ("delta-text-key", _set("choices.0.delta.text", S), "middle"),
    ("choice-text", _set("choices.0.text", S), "middle"),
    ("delta-content-list", _set("choices.0.delta.content", [{"type": "text", "text": S}]),
     "middle"),
    ("delta-content-dict", _set("choices.0.delta.content", {"text": S}), "middle"),
    ("delta-content-number", _set("choices.0.delta.content", N), "middle"),
    ("delta-role", _set("choices.0.delta.role", S), "first"),
    ("delta-reasoning-content", _set("choices.0.delta.reasoning_content", S), "middle"),
    ("delta-reasoning", _set("choices.0.delta.reasoning", EMAIL), "middle"),
    ("delta-refusal", _set("choices.0.delta.refusal", S), "middle"),
    ("delta-tool-calls", _set("choices.0.delta.tool_calls", [
        {"index": 0, "id": "c1", "type": "function",
         "function": {"name": "f", "arguments": S}}]), "middle"),
    ("finish-reason", _set("choices.0.finish_reason", S), "last"),
    ("stop-reason", _set("choices.0.stop_reason", S), "last"),
    ("choice-index", _set("choices.0.index", N), "middle"),
    ("logprobs", _set("choices.0.logprobs", {"content": [{"token": S}]}), "middle"),
    ("usage", _set("usage", {"prompt_tokens": 1, "note": S}), "last"),
    ("usage-number", _set("usage", {"prompt_tokens": N}), "last"),
    ("id", _set("id", S), "middle"),
    ("model", _set("model", S), "first"),
    ("system-fingerprint", _set("system_fingerprint", S), "middle"),
    ("object", _set("object", S), "middle"),
    ("created", _set("created", N), "middle"),
    ("unknown-top-key", _set("prompt_token_ids", [ord(c) for c in S]), "first"),
    ("error-key-nested", _set("error", {"message": S, "type": "x", "code": 500}), "middle"),
    ("error-key-flat", lambda c: c.update({"object": "error", "message": S}), "middle"),
    ("delta-reasoning-passage", _set("choices.0.delta.reasoning_content", passage(6, 30)),
     "middle"),
]
STREAM_COMPLETION: list[tuple[str, Mutate, str]] = [
    ("choice-message", _set("choices.0.message", {"content": S}), "middle"),
    ("choice-delta", _set("choices.0.delta", {"content": S}), "middle"),
    ("text-list", _set("choices.0.text", [S]), "middle"),
    ("finish-reason", _set("choices.0.finish_reason", S), "last"),
    ("stop-reason", _set("choices.0.stop_reason", S), "last"),
    ("logprobs", _set("choices.0.logprobs", {"tokens": [S]}), "middle"),
    ("id", _set("id", EMAIL), "middle"),
]
ERRORS: list[tuple[str, int, Any]] = [
    ("400-nested-message", 400, {"error": {"message": f"Invalid stop string: {S}",
                                           "type": "BadRequestError", "param": None,
                                           "code": 400}}),
    ("500-nested-message", 500, {"error": {"message": S, "type": "InternalServerError",
                                           "param": None, "code": 500}}),
    ("422-flat", 422, {"object": "error", "message": EMAIL, "type": "BadRequestError",
                       "param": None, "code": 422}),
    ("400-detail", 400, {"detail": f"bad prompt {S}"}),
    ("400-param-type-code", 400, {"error": {"message": "bad", "type": S, "param": S,
                                            "code": S}}),
    ("503-plain-text", 503, f"upstream overloaded while writing {S}".encode()),
    ("404-message-passage", 404, {"error": {"message": passage(7, 30), "type": "NotFound",
                                            "param": None, "code": 404}}),
]


def _cases() -> list[ParameterSet]:
    cases = []
    for name, mutate in WHOLE_CHAT:
        cases.append(pytest.param("chat", Script(raw_whole=_whole("chat", mutate)), False,
                                  id=f"whole-chat-{name}"))
    for name, mutate in WHOLE_COMPLETION:
        cases.append(pytest.param("completion", Script(raw_whole=_whole("completion", mutate)),
                                  False, id=f"whole-completion-{name}"))
    for name, mutate, at in STREAM_CHAT:
        cases.append(pytest.param("chat", Script(raw_events=_events("chat", mutate, at)), True,
                                  id=f"stream-chat-{name}"))
    for name, mutate, at in STREAM_COMPLETION:
        cases.append(pytest.param("completion",
                                  Script(raw_events=_events("completion", mutate, at)), True,
                                  id=f"stream-completion-{name}"))
    for k, (name, status, body) in enumerate(ERRORS):
        for stream in (False, True):
            kind = "chat" if k % 2 else "completion"
            mode = "stream" if stream else "whole"
            cases.append(pytest.param(kind, Script(status=status, error_body=body), stream,
                                      id=f"upstream-error-{name}-{mode}-{kind}"))
    return cases


@pytest.mark.parametrize("kind, script, stream", _cases())
def test_value_outside_the_checked_text_never_reaches_the_client(
    gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, script: Script,
    stream: bool,
) -> None:
    with upstream.play(script):
        reply = send(gateway.url, kind, body_for(kind, "Hello"), stream=stream)
    if reply.status == 200 and reply.stream:
        assert reply.done, f"stream did not end with [DONE]: {reply.describe()}"
    assert_no_leak(reply)
