"""Class 5: request fields that reach the engine without the input stage seeing them.

The protected value, a passage of the protected work, or a question about the concept is placed
in every other place a request can carry text to the engine: content parts of other types,
`name`, reasoning fields, `documents`, chat templates and their kwargs, `suffix`, `stop`,
guided-decoding choices, regexes, grammars and schemas, `vllm_xargs`, `bad_words`, tool
descriptions, unknown fields. Either the gateway refuses with a 400 whose `param` names the field
(or a content-policy 400), or nothing protected reaches the upstream: the suite reads every
string of every request the scripted upstream received.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import refused_naming
from tests.attacks.redteam.client import Reply, chat_body, completion_body, send
from tests.attacks.redteam.judge import leaks_any
from tests.attacks.redteam.material import CONCEPT_QUESTION, EMAIL, PHONE, passage
from tests.attacks.redteam.upstream import MODEL, ScriptedUpstream
from tests.servers import RunningGateway

NEUTRAL = "A neutral sentence about the weather in spring."
PAYLOADS = {
    "pii": f"Her phone is {PHONE} and her email is {EMAIL}.",
    "work": passage(5, 30),
    "concept": CONCEPT_QUESTION,
}

Build = Callable[[str], tuple[str, dict[str, Any]]]


def _chat(messages: list[dict[str, Any]], **extra: Any) -> tuple[str, dict[str, Any]]:
    return "chat", {"model": MODEL, "messages": messages, **extra}


def _ask(**extra: Any) -> Callable[[str], tuple[str, dict[str, Any]]]:
    return lambda v: ("chat", chat_body("Answer briefly.", **{k: f(v) for k, f in extra.items()}))


def _complete(**extra: Any) -> Callable[[str], tuple[str, dict[str, Any]]]:
    return lambda v: ("completion", completion_body("Write a line:",
                                                    **{k: f(v) for k, f in extra.items()}))


USER = {"role": "user", "content": "Continue."}

PLACEMENTS: list[tuple[str, tuple[str, ...], Build]] = [
    ("part-refusal", ("messages", "content", "refusal"),
     lambda v: _chat([{"role": "assistant", "content": [{"type": "refusal", "refusal": v}]},
                      USER])),
    ("part-thinking", ("messages", "content", "thinking"),
     lambda v: _chat([{"role": "assistant", "content": [{"type": "thinking", "thinking": v}]},
                      USER])),
    ("part-reasoning", ("messages", "content", "reasoning"),
     lambda v: _chat([{"role": "user", "content": [{"type": "reasoning", "reasoning": v},
                                                    {"type": "text", "text": "Go on."}]}])),
    ("part-unknown-type", ("messages", "content"),
     lambda v: _chat([{"role": "user", "content": [{"type": "x-note", "note": v}]}])),
    ("part-text-extra-key", ("messages", "content"),
     lambda v: _chat([{"role": "user", "content": [{"type": "text", "text": "Hi.",
                                                     "input_text": v}]}])),
    ("message-name", ("messages", "name"),
     lambda v: _chat([{"role": "user", "name": v, "content": "Hello."}])),
    ("assistant-reasoning-content", ("messages", "reasoning_content"),
     lambda v: _chat([{"role": "assistant", "content": "Ok.", "reasoning_content": v}, USER])),
    ("assistant-reasoning", ("messages", "reasoning"),
     lambda v: _chat([{"role": "assistant", "content": "Ok.", "reasoning": v}, USER])),
    ("message-unknown-key", ("messages",),
     lambda v: _chat([{"role": "user", "content": "Hi.", "metadata_note": v}])),
    ("documents", ("documents",), _ask(documents=lambda v: [{"title": "note", "text": v}])),
    ("chat-template", ("chat_template",),
     _ask(chat_template=lambda v: "{{ '" + v.replace("'", "") + "' }}{{ messages[0].content }}")),
    ("chat-template-kwargs", ("chat_template_kwargs",),
     _ask(chat_template_kwargs=lambda v: {"system_note": v})),
    ("chat-stop", ("stop",), _ask(stop=lambda v: [v])),
    ("guided-choice", ("guided_choice",), _ask(guided_choice=lambda v: [v, "no"])),
    ("guided-regex", ("guided_regex",), _ask(guided_regex=lambda v: re.escape(v))),
    ("guided-json", ("guided_json",),
     _ask(guided_json=lambda v: {"type": "string", "enum": [v]})),
    ("guided-grammar", ("guided_grammar",),
     _ask(guided_grammar=lambda v: 'root ::= "' + v.replace('"', "") + '"')),
    ("structured-outputs", ("structured_outputs",),
     _ask(structured_outputs=lambda v: {"choice": [v, "no"]})),
    ("response-format-schema", ("response_format",),
     _ask(response_format=lambda v: {"type": "json_schema", "json_schema": {
         "name": "answer", "schema": {"type": "string", "description": v}}})),
    ("vllm-xargs", ("vllm_xargs",), _ask(vllm_xargs=lambda v: {"hint": v})),
    ("bad-words", ("bad_words",), _ask(bad_words=lambda v: [v])),
    ("tool-description", ("tools",),
     _ask(tools=lambda v: [{"type": "function", "function": {
         "name": "lookup", "description": v, "parameters": {"type": "object"}}}])),
    ("unknown-top-level", ("my_notes",), _ask(my_notes=lambda v: v)),
    ("completion-suffix", ("suffix",), _complete(suffix=lambda v: v)),
    ("completion-stop", ("stop",), _complete(stop=lambda v: v)),
    ("completion-guided-choice", ("guided_choice",),
     _complete(guided_choice=lambda v: [v, "no"])),
    ("completion-unknown", ("extra_context",), _complete(extra_context=lambda v: v)),
]


def _cases() -> list[ParameterSet]:
    return [pytest.param(name, names, payload, id=f"{name}-{payload}")
            for name, names, _ in PLACEMENTS for payload in PAYLOADS]


BUILDS = {name: build for name, _, build in PLACEMENTS}


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (str(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [str(node)] if node is not None else []


def _refused(reply: Reply, names: tuple[str, ...]) -> bool:
    if refused_naming(reply, names):
        return True
    return reply.status == 400 and reply.error is not None and \
        reply.error.get("code") == "content_filter"


def _forwarded(gateway: RunningGateway, upstream: ScriptedUpstream, kind: str,
               body: dict[str, Any]) -> tuple[Reply, list[dict[str, Any]]]:
    mark = upstream.recorder.mark()
    with upstream.play(text="A plain answer."):
        reply = send(gateway.url, kind, body, stream=False)
    return reply, [r.body for r in upstream.recorder.since(mark)]


_operator_strings: dict[str, set[str]] = {}


def _added_by_the_gateway(gateway: RunningGateway, upstream: ScriptedUpstream,
                          placement: str) -> set[str]:
    """Strings the gateway itself adds (the policies' request patch: banned words...), read
    off the same request with a neutral text in place of the payload."""
    if placement not in _operator_strings:
        kind, body = BUILDS[placement](NEUTRAL)
        _, sent = _forwarded(gateway, upstream, kind, body)
        client = set(_strings(body))
        _operator_strings[placement] = {s for r in sent for s in _strings(r)} - client
    return _operator_strings[placement]


@pytest.mark.parametrize("placement, names, payload", _cases())
def test_text_in_any_request_part_is_screened_or_refused(
    gateway: RunningGateway, upstream: ScriptedUpstream, placement: str,
    names: tuple[str, ...], payload: str,
) -> None:
    kind, body = BUILDS[placement](PAYLOADS[payload])
    assert leaks_any(_strings(body)), "the case must carry a protected value"
    reply, sent = _forwarded(gateway, upstream, kind, body)
    if _refused(reply, names):
        return
    assert reply.status in (200, 400), reply.describe()
    operator = _added_by_the_gateway(gateway, upstream, placement)
    for request in sent:
        verdict = leaks_any([s for s in _strings(request) if s not in operator])
        assert not verdict, (
            f"{', '.join(verdict.leaks)} reached the upstream unscreened "
            f"(client got {reply.status}): {str(request)[:400]}")
