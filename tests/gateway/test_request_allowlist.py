"""The request allow-list while policies are active (gateway.request_text), through a real
gateway in front of the scripted upstream: every text-bearing field is screened, every field
that cannot be screened is refused with a 400 naming it, stop lists and echo are no oracle,
and with no policy the request passes through untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import POLICIES
from tests.fakes.upstream import FakeUpstream
from tests.servers import RunningGateway, run_gateway

PHONE = "415-555-0199"
EMAIL = "elena.marquez@example.org"
DOB = "1987-03-14"
SECRETS = (PHONE, EMAIL, DOB, "555-0199", "marquez@")
WORK = (POLICIES / "data" / "protected-work.txt").read_text()
PASSAGE = " ".join(WORK.split("\n\n")[3].split()[:30])
CHAT = "/v1/chat/completions"
COMPLETION = "/v1/completions"
MODEL = "fake-model"

Body = dict[str, Any]


def _person(stages: str) -> str:
    return (
        f"name: person\nstages: {stages}\naction: redact\n"
        f"data:\n  pii:\n    phone: {PHONE}\n    email: {EMAIL}\n"
        f"    date_of_birth: \"{DOB}\"\nfilters:\n  - type: pii\n"
    )


def _policies(root: Path, stages: str) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "work.txt").write_text(WORK)
    (root / "person.yaml").write_text(_person(stages))
    (root / "work.yaml").write_text(
        f"name: work\nstages: {stages}\naction: block\ndata:\n  corpus_file: data/work.txt\n"
        "filters:\n  - type: verbatim\n    min_words: 12\n"
    )
    return root


@pytest.fixture(scope="module")
def gateway(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    policies = _policies(tmp_path_factory.mktemp("allow") / "p", "[input, output]")
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        yield gw


@pytest.fixture(scope="module")
def input_only(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    policies = _policies(tmp_path_factory.mktemp("allow-in") / "p", "[input]")
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        yield gw


@pytest.fixture(scope="module")
def output_only(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    policies = _policies(tmp_path_factory.mktemp("allow-out") / "p", "[output]")
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        yield gw


def _chat(*messages: Body, **extra: Any) -> Body:
    return {"model": MODEL, "messages": list(messages), **extra}


def _user(content: Any, **extra: Any) -> Body:
    return {"role": "user", "content": content, **extra}


def _assistant(content: Any = None, **extra: Any) -> Body:
    return {"role": "assistant", "content": content, **extra}


def _completion(prompt: Any = "Say hello.", **extra: Any) -> Body:
    return {"model": MODEL, "prompt": prompt, **extra}


def _post(gw: RunningGateway, path: str, body: Body) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, timeout=20)


def _sent_or_none(
    gw: RunningGateway, fake: FakeUpstream, path: str, body: Body
) -> tuple[httpx.Response, Body | None]:
    before = len(fake.recorder.requests)
    response = _post(gw, path, body)
    after = fake.recorder.requests[before:]
    assert len(after) <= 1
    return response, (after[0] if after else None)


def _call(value: str) -> Body:
    return {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": value}}


# -- prompt text: every place that reaches the engine's prompt is screened and redacted ---------
#: (path, body carrying `v`, where the upstream request holds it).
Location = tuple[str, Callable[[str], Body], Callable[[Body], Any]]
PROMPT_LOCATIONS: dict[str, Location] = {
    "content": (CHAT, lambda v: _chat(_user(v)), lambda s: s["messages"][0]["content"]),
    "text-part": (
        CHAT,
        lambda v: _chat(_user([{"type": "text", "text": v}])),
        lambda s: s["messages"][0]["content"][0]["text"],
    ),
    "input_text-part": (
        CHAT,
        lambda v: _chat(_user([{"type": "text", "text": "hi"}, {"type": "input_text", "text": v}])),
        lambda s: s["messages"][0]["content"][1]["text"],
    ),
    "output_text-part": (
        CHAT,
        lambda v: _chat(_user("hi"), _assistant([{"type": "output_text", "text": v}]), _user("ok")),
        lambda s: s["messages"][1]["content"][0]["text"],
    ),
    "refusal-part": (
        CHAT,
        lambda v: _chat(_user("hi"), _assistant([{"type": "refusal", "refusal": v}]), _user("ok")),
        lambda s: s["messages"][1]["content"][0]["refusal"],
    ),
    "thinking-part": (
        CHAT,
        lambda v: _chat(
            _user("hi"), _assistant([{"type": "thinking", "thinking": v, "closed": True}]),
            _user("ok"),
        ),
        lambda s: s["messages"][1]["content"][0]["thinking"],
    ),
    "name": (CHAT, lambda v: _chat(_user("hi", name=v)), lambda s: s["messages"][0]["name"]),
    "reasoning": (
        CHAT,
        lambda v: _chat(_user("hi"), _assistant("ok", reasoning=v), _user("go on")),
        lambda s: s["messages"][1]["reasoning"],
    ),
    "reasoning_content": (
        CHAT,
        lambda v: _chat(_user("hi"), _assistant("ok", reasoning_content=v), _user("go on")),
        lambda s: s["messages"][1]["reasoning_content"],
    ),
    "message-refusal": (
        CHAT,
        lambda v: _chat(_user("hi"), _assistant(None, refusal=v), _user("go on")),
        lambda s: s["messages"][1]["refusal"],
    ),
    "tool-message": (
        CHAT,
        lambda v: _chat(
            _user("hi"), _assistant(None, tool_calls=[_call("{}")]),
            {"role": "tool", "tool_call_id": "call_1", "content": v},
        ),
        lambda s: s["messages"][2]["content"],
    ),
    "tool-call-arguments": (
        CHAT,
        lambda v: _chat(_user("hi"), _assistant(None, tool_calls=[_call(v)]), _user("go on")),
        lambda s: s["messages"][1]["tool_calls"][0]["function"]["arguments"],
    ),
    "documents-value": (
        CHAT,
        lambda v: _chat(_user("Summarise."), documents=[{"title": "Record", "text": v}]),
        lambda s: s["documents"][0]["text"],
    ),
    "prompt": (COMPLETION, lambda v: _completion(v), lambda s: s["prompt"]),
    "prompt-list": (
        COMPLETION, lambda v: _completion(["Say hello.", v]), lambda s: s["prompt"][1],
    ),
    "suffix": (COMPLETION, lambda v: _completion("Say", suffix=v), lambda s: s["suffix"]),
}

PROTECTED_FORMS = {
    "phone": f"Her number is {PHONE}, call her",
    "phone-dots": "Her number is 415.555.0199 ok",
    "email": f"Write to {EMAIL} today",
    "dob": f"She was born on {DOB}.",
}


@pytest.mark.parametrize("form", list(PROTECTED_FORMS), ids=list(PROTECTED_FORMS))
@pytest.mark.parametrize("where", list(PROMPT_LOCATIONS), ids=list(PROMPT_LOCATIONS))
def test_a_protected_value_anywhere_in_the_prompt_is_redacted_before_the_engine(
    gateway: RunningGateway, fake_upstream: FakeUpstream, where: str, form: str
) -> None:
    path, build, read = PROMPT_LOCATIONS[where]
    response, sent = _sent_or_none(gateway, fake_upstream, path, build(PROTECTED_FORMS[form]))
    assert response.status_code == 200, response.text
    assert sent is not None
    assert "[REDACTED]" in read(sent)
    raw = orjson.dumps(sent).decode()
    assert not any(secret in raw for secret in SECRETS)


@pytest.mark.parametrize("where", list(PROMPT_LOCATIONS), ids=list(PROMPT_LOCATIONS))
def test_a_passage_anywhere_in_the_prompt_is_blocked(
    gateway: RunningGateway, fake_upstream: FakeUpstream, where: str
) -> None:
    path, build, _ = PROMPT_LOCATIONS[where]
    response, sent = _sent_or_none(gateway, fake_upstream, path, build(PASSAGE))
    assert response.status_code == 400 and sent is None
    assert response.json()["error"]["code"] == "content_filter"


BENIGN = "Daniel's number is 415-555-0173; he was born on 1990-07-02."


@pytest.mark.parametrize("where", list(PROMPT_LOCATIONS), ids=list(PROMPT_LOCATIONS))
def test_benign_text_in_every_prompt_field_reaches_the_engine_unchanged(
    gateway: RunningGateway, fake_upstream: FakeUpstream, where: str
) -> None:
    path, build, read = PROMPT_LOCATIONS[where]
    body = build(BENIGN)
    response, sent = _sent_or_none(gateway, fake_upstream, path, body)
    assert response.status_code == 200, response.text
    assert sent is not None and read(sent) == BENIGN
    assert {k: sent[k] for k in body} == body


# -- steering text: screened by every filter, a hit refuses (never redacted, never named) ------
def _schema(leaf: Body) -> Body:
    return {"type": "object", "properties": {"dob": leaf}, "required": ["dob"]}


#: (path, field named in the refusal, body carrying `v`).
STEERING: dict[str, tuple[str, str, Callable[[str], Body]]] = {
    "stop-string": (CHAT, "stop", lambda v: _chat(_user("hi"), stop=v)),
    "stop-list": (COMPLETION, "stop", lambda v: _completion(stop=["\n\n", v])),
    "bad_words": (CHAT, "bad_words", lambda v: _chat(_user("hi"), bad_words=["zzz", v])),
    "response_format-enum": (
        CHAT, "response_format",
        lambda v: _chat(_user("hi"), response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": _schema({"enum": ["1990-01-01", v]})},
        }),
    ),
    "response_format-description": (
        COMPLETION, "response_format",
        lambda v: _completion(response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "description": v, "schema": _schema({})},
        }),
    ),
    "response_format-property-name": (
        CHAT, "response_format",
        lambda v: _chat(_user("hi"), response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object", "properties": {v: {}}}},
        }),
    ),
    "structured_outputs-choice": (
        CHAT, "structured_outputs",
        lambda v: _chat(_user("hi"), structured_outputs={"choice": ["none", v]}),
    ),
    "structured_outputs-regex": (
        COMPLETION, "structured_outputs",
        lambda v: _completion(structured_outputs={"regex": f"({v}|none)"}),
    ),
    "structured_outputs-json-const": (
        CHAT, "structured_outputs",
        lambda v: _chat(_user("hi"), structured_outputs={"json": _schema({"const": v})}),
    ),
    "structured_outputs-grammar": (
        CHAT, "structured_outputs",
        lambda v: _chat(_user("hi"), structured_outputs={"grammar": f'root ::= "{v}"'}),
    ),
    "guided_choice": (CHAT, "guided_choice", lambda v: _chat(_user("hi"), guided_choice=[v])),
    "guided_regex": (COMPLETION, "guided_regex", lambda v: _completion(guided_regex=v)),
    "guided_json-string": (
        CHAT, "guided_json",
        lambda v: _chat(_user("hi"), guided_json=orjson.dumps(_schema({"pattern": v})).decode()),
    ),
    "guided_grammar": (
        COMPLETION, "guided_grammar", lambda v: _completion(guided_grammar=f'root ::= "{v}"'),
    ),
    "documents-key": (
        CHAT, "documents", lambda v: _chat(_user("Summarise."), documents=[{v: "text"}]),
    ),
    "echo-completion": (COMPLETION, "echo", lambda v: _completion(f"Repeat: {v}", echo=True)),
    "echo-chat": (
        CHAT, "echo", lambda v: _chat(_user("hi"), _assistant(f"Noted: {v}"), echo=True),
    ),
}

STEERING_FORMS = {
    "phone": PHONE,
    "phone-plain-digits": "4155550199",
    "phone-parens": "(415) 555-0199",
    "email": EMAIL,
    "dob": DOB,
}


@pytest.mark.parametrize("form", list(STEERING_FORMS), ids=list(STEERING_FORMS))
@pytest.mark.parametrize("where", list(STEERING), ids=list(STEERING))
def test_a_protected_value_in_steering_text_refuses_the_request_naming_only_the_field(
    gateway: RunningGateway, fake_upstream: FakeUpstream, where: str, form: str
) -> None:
    path, field, build = STEERING[where]
    response, sent = _sent_or_none(gateway, fake_upstream, path, build(STEERING_FORMS[form]))
    assert response.status_code == 400, response.text
    assert sent is None
    error = response.json()["error"]
    assert error["param"] == field and error["code"] == "content_filter"
    assert not any(secret in response.text for secret in (*SECRETS, "4155550199"))


@pytest.mark.parametrize("where", list(STEERING), ids=list(STEERING))
def test_benign_steering_text_reaches_the_engine_unchanged(
    gateway: RunningGateway, fake_upstream: FakeUpstream, where: str
) -> None:
    path, _, build = STEERING[where]
    body = build("415-555-0173")
    response, sent = _sent_or_none(gateway, fake_upstream, path, body)
    assert response.status_code == 200, response.text
    assert sent is not None
    assert {k: sent[k] for k in body} == body


def test_tool_definitions_are_screened_while_only_input_policies_run(
    input_only: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    def tools(description: str) -> Body:
        fn = {"name": "lookup", "description": description, "parameters": _schema({})}
        return _chat(_user("hi"), tools=[{"type": "function", "function": fn}])

    refused, sent = _sent_or_none(input_only, fake_upstream, CHAT, tools(f"Returns {PHONE}"))
    assert refused.status_code == 400 and sent is None
    assert refused.json()["error"]["param"] == "tools"
    body = tools("Looks a word up in the dictionary")
    accepted, sent = _sent_or_none(input_only, fake_upstream, CHAT, body)
    assert accepted.status_code == 200 and sent is not None and sent["tools"] == body["tools"]


# -- the stop-list and echo oracles ------------------------------------------------------------
CANDIDATES = [f"415-555-01{n}" for n in range(90, 100)]  # includes the protected 0199
OTHERS = [f"415-555-01{n}" for n in range(70, 80)]


@pytest.mark.parametrize("gw_name", ["gateway", "output_only"])
def test_a_stop_list_of_candidates_holding_the_protected_number_is_refused(
    request: pytest.FixtureRequest, fake_upstream: FakeUpstream, gw_name: str
) -> None:
    gw: RunningGateway = request.getfixturevalue(gw_name)
    body = _completion("Her number is", stop=CANDIDATES)
    response, sent = _sent_or_none(gw, fake_upstream, COMPLETION, body)
    assert response.status_code == 400 and sent is None
    assert response.json()["error"]["param"] == "stop"
    assert "01" not in response.json()["error"]["message"]  # no candidate named


@pytest.mark.parametrize("gw_name", ["gateway", "output_only"])
def test_a_stop_list_of_other_numbers_is_accepted(
    request: pytest.FixtureRequest, fake_upstream: FakeUpstream, gw_name: str
) -> None:
    gw: RunningGateway = request.getfixturevalue(gw_name)
    response, sent = _sent_or_none(gw, fake_upstream, COMPLETION, _completion(stop=OTHERS))
    assert response.status_code == 200, response.text
    assert sent is not None and sent["stop"] == OTHERS


@pytest.mark.parametrize(
    "stop, accepted",
    [(["x"] * 16, True), (["x"] * 17, False), (["y" * 256], True), (["y" * 257], False)],
    ids=["16-strings", "17-strings", "256-chars", "257-chars"],
)
def test_stop_lists_are_bounded_while_policies_run(
    gateway: RunningGateway, fake_upstream: FakeUpstream, stop: list[str], accepted: bool
) -> None:
    response, sent = _sent_or_none(gateway, fake_upstream, CHAT, _chat(_user("hi"), stop=stop))
    assert (response.status_code == 200) is accepted
    assert (sent is not None) is accepted
    if not accepted:
        assert response.json()["error"]["param"] == "stop"


DATES = ["1987-03-10", "1987-03-11", "1987-03-12", "1987-03-13", "1987-03-15", "1987-04-14"]


@pytest.mark.parametrize("gw_name", ["gateway", "input_only", "output_only"])
def test_echo_of_candidate_dates_holding_the_birth_date_is_refused_not_redacted(
    request: pytest.FixtureRequest, fake_upstream: FakeUpstream, gw_name: str
) -> None:
    gw: RunningGateway = request.getfixturevalue(gw_name)
    prompt = "Which is her birthday: " + ", ".join([*DATES[:3], DOB, *DATES[3:]]) + "?"
    response, sent = _sent_or_none(gw, fake_upstream, COMPLETION, _completion(prompt, echo=True))
    assert response.status_code == 400 and sent is None
    assert response.json()["error"]["param"] == "echo"
    assert "[REDACTED]" not in response.text and DOB not in response.text


def test_echo_without_a_protected_value_is_served(
    gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    prompt = "Which is her birthday: " + ", ".join(DATES) + "?"
    body = _completion(prompt, echo=True)
    response, sent = _sent_or_none(gateway, fake_upstream, COMPLETION, body)
    assert response.status_code == 200, response.text
    assert sent is not None and sent["prompt"] == prompt and sent["echo"] is True


def test_without_echo_the_same_prompt_is_redacted_and_served(
    gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    prompt = "Which is her birthday: " + ", ".join([*DATES, DOB]) + "?"
    response, sent = _sent_or_none(gateway, fake_upstream, COMPLETION, _completion(prompt))
    assert response.status_code == 200 and sent is not None
    assert DOB not in sent["prompt"] and "[REDACTED]" in sent["prompt"]


def test_token_id_prompts_cannot_be_echoed_under_output_policies(
    output_only: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    response, sent = _sent_or_none(
        output_only, fake_upstream, COMPLETION, _completion([1, 2, 3], echo=True)
    )
    assert response.status_code == 400 and sent is None
    assert response.json()["error"]["param"] == "echo"


# -- refused fields ----------------------------------------------------------------------------
#: (path, body, param named in the 400, code).
REFUSED: dict[str, tuple[str, Body, str, str | None]] = {
    "unknown-field": (CHAT, _chat(_user("hi"), frobnicate=1), "frobnicate", "unsupported_field"),
    "fake-script-field": (CHAT, _chat(_user("hi"), fake={"text": "x"}), "fake",
                          "unsupported_field"),
    "vllm_xargs": (CHAT, _chat(_user("hi"), vllm_xargs={"a": "b"}), "vllm_xargs",
                   "unsupported_field"),
    "chat_template": (CHAT, _chat(_user("hi"), chat_template="{{ 'x' }}"), "chat_template",
                      "unsupported_field"),
    "chat_template_kwargs": (CHAT, _chat(_user("hi"), chat_template_kwargs={"x": "y"}),
                             "chat_template_kwargs", "unsupported_field"),
    "mm_processor_kwargs": (CHAT, _chat(_user("hi"), mm_processor_kwargs={}),
                            "mm_processor_kwargs", "unsupported_field"),
    "media_io_kwargs": (CHAT, _chat(_user("hi"), media_io_kwargs={}), "media_io_kwargs",
                        "unsupported_field"),
    "kv_transfer_params": (COMPLETION, _completion(kv_transfer_params={"x": 1}),
                           "kv_transfer_params", "unsupported_field"),
    "prompt_embeds": (COMPLETION, _completion(prompt_embeds="AAAA"), "prompt_embeds",
                      "unsupported_field"),
    "stop_token_ids": (COMPLETION, _completion(stop_token_ids=[13]), "stop_token_ids",
                       "unsupported_field"),
    "request_id": (CHAT, _chat(_user("hi"), request_id="mine"), "request_id",
                   "unsupported_field"),
    "suffix-on-chat": (CHAT, _chat(_user("hi"), suffix="x"), "suffix", "unsupported_field"),
    "messages-on-completion": (COMPLETION, _completion(messages=[_user("hi")]), "messages",
                               "unsupported_field"),
    "image_url-part": (
        CHAT, _chat(_user([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}])),
        "messages.0.content.0.type", "unsupported_field",
    ),
    "input_audio-part": (
        CHAT, _chat(_user([{"type": "text", "text": "hi"},
                           {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])),
        "messages.0.content.1.type", "unsupported_field",
    ),
    "file-part": (CHAT, _chat(_user([{"type": "file", "file": {"file_data": "x"}}])),
                  "messages.0.content.0.type", "unsupported_field"),
    "unknown-part-type": (CHAT, _chat(_user([{"type": "x_text", "text": "hi"}])),
                          "messages.0.content.0.type", "unsupported_field"),
    "extra-key-in-text-part": (
        CHAT, _chat(_user([{"type": "text", "text": "hi", "cache_control": {"x": "y"}}])),
        "messages.0.content.0.cache_control", "unsupported_field",
    ),
    "message-task": (CHAT, _chat(_user("hi", task="x")), "messages.0.task", "unsupported_field"),
    "developer-tools": (CHAT, _chat({"role": "developer", "content": "hi", "tools": []}),
                        "messages.0.tools", "unsupported_field"),
    "tool-call-extra-key": (
        CHAT, _chat(_user("hi"), _assistant(None, tool_calls=[{**_call("{}"), "x": "y"}])),
        "messages.1.tool_calls.0.x", "unsupported_field",
    ),
    "stream_options-extra": (CHAT, _chat(_user("hi"), stream_options={"x": True}),
                             "stream_options.x", "unsupported_field"),
    "non-string-name": (CHAT, _chat(_user("hi", name=7)), "messages.0.name", None),
}


@pytest.mark.parametrize("where", list(REFUSED), ids=list(REFUSED))
def test_fields_that_cannot_be_screened_are_refused_with_a_400_naming_them(
    gateway: RunningGateway, fake_upstream: FakeUpstream, where: str
) -> None:
    path, body, param, code = REFUSED[where]
    response, sent = _sent_or_none(gateway, fake_upstream, path, body)
    assert response.status_code == 400, response.text
    assert sent is None
    error = response.json()["error"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
        assert param.split(".")[-1] in error["message"] or "content parts" in error["message"]


@pytest.mark.parametrize("where", list(REFUSED), ids=list(REFUSED))
def test_without_policies_every_field_passes_through_unchanged(
    fake_gateway: RunningGateway, fake_upstream: FakeUpstream, where: str
) -> None:
    path, body, _, _ = REFUSED[where]
    if where == "non-string-name":
        pytest.skip("a schema error, refused with or without policies")
    response, sent = _sent_or_none(fake_gateway, fake_upstream, path, body)
    assert sent is not None, response.text
    assert {k: sent[k] for k in body} == body


def test_parameters_that_carry_no_text_pass_while_policies_run(
    gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    params = {
        "n": 2, "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "top_k": 4, "min_p": 0.1,
        "seed": 3, "repetition_penalty": 1.1, "min_tokens": 1, "ignore_eos": False,
        "skip_special_tokens": True, "spaces_between_special_tokens": True, "priority": 0,
        "stream_options": None, "user": "u-1", "include_stop_str_in_output": False,
        "cache_salt": "salt", "add_generation_prompt": True, "max_completion_tokens": 5,
    }
    body = _chat(_user("hi"), **params)
    response, sent = _sent_or_none(gateway, fake_upstream, CHAT, body)
    assert response.status_code == 200, response.text
    assert sent is not None and {k: sent[k] for k in body} == body


@pytest.mark.parametrize("protected", [True, False], ids=["holding-the-number", "others-only"])
def test_a_long_guided_choice_list_cannot_hide_the_local_number_behind_its_neighbours(
    gateway: RunningGateway, fake_upstream: FakeUpstream, protected: bool
) -> None:
    # More candidates than are screened one by one: the local form 555-0199 follows another
    # candidate's digits when the list is joined, and must still be read on its own.
    choices = [f"555-{n:04d}" for n in range(100, 300) if n != 199]
    if protected:
        choices.insert(150, "555-0199")
    response, sent = _sent_or_none(
        gateway, fake_upstream, CHAT, _chat(_user("Pick one."), guided_choice=choices)
    )
    if protected:
        assert response.status_code == 400 and sent is None
        assert response.json()["error"]["param"] == "guided_choice"
    else:
        assert response.status_code == 200, response.text
        assert sent is not None and sent["guided_choice"] == choices
