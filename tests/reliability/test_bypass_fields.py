"""Request fields that would get around suppression: logit_bias lifting a ban, logprobs and other
side channels of the output, echo of a suppressed prompt, token-id prompts, adapter names, tools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.upstream import FakeUpstream, script
from tests.reliability.conftest import (
    CANARY_PHONE,
    CHAT_PATH,
    COMPLETION_PATH,
    chat,
    fault_policy,
    pii_policy,
    write_policies,
)
from tests.reliability.leaky_upstream import LeakyUpstream
from tests.servers import RunningGateway, run_gateway

BANNED = "4242"


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_policies(tmp_path_factory.mktemp("bypass") / "p", {
        "ban.yaml": fault_policy("ban", "ban", stages="[output]"),
        "person.yaml": pii_policy("person", CANARY_PHONE),
    })


@pytest.fixture(scope="module")
def guarded(fake_upstream: FakeUpstream, policy_dir: Path) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, policies=policy_dir) as gw:
        yield gw


def _sent(gw: RunningGateway, fake: FakeUpstream, body: dict[str, Any],
          path: str = CHAT_PATH) -> dict[str, Any]:
    before = len(fake.recorder.requests)
    response = httpx.post(gw.url + path, json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert len(fake.recorder.requests) == before + 1
    return fake.recorder.requests[-1]


@pytest.mark.parametrize(
    "client_bias",
    [{BANNED: 100}, {"+4242": 100}, {"04242": 100}, {" 4242": 100},
     {BANNED: 0, "+4242": 100}, {"4242 ": 100, BANNED: 50}],
    ids=["same-key", "plus-alias", "zero-alias", "space-alias", "alias-after-key", "two-aliases"],
)
def test_client_logit_bias_cannot_lift_an_operator_ban(
    guarded: RunningGateway, fake_upstream: FakeUpstream, client_bias: dict[str, float]
) -> None:
    sent = _sent(guarded, fake_upstream, chat("hi", logit_bias={**client_bias, "7": 3}))
    assert sent["logit_bias"] == {"7": 3.0, BANNED: -100.0}


def test_non_token_logit_bias_keys_are_a_400(guarded: RunningGateway) -> None:
    response = httpx.post(guarded.url + CHAT_PATH, json=chat("hi", logit_bias={"1_2": 5}))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logit_bias"


def test_allowed_token_ids_lose_banned_tokens(
    guarded: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    sent = _sent(guarded, fake_upstream, chat("hi", allowed_token_ids=[4242, 5, 6]))
    assert sent["allowed_token_ids"] == [5, 6]
    only_banned = httpx.post(guarded.url + CHAT_PATH, json=chat("hi", allowed_token_ids=[4242]))
    assert only_banned.status_code == 400
    assert only_banned.json()["error"]["code"] == "content_filter"


@pytest.mark.parametrize("path, fields", [
    (CHAT_PATH, {"logprobs": True, "top_logprobs": 20, "prompt_logprobs": 5,
                 "return_token_ids": True}),
    (COMPLETION_PATH, {"logprobs": 5, "prompt_logprobs": 5, "echo": True,
                       "return_tokens_as_token_ids": True}),
], ids=["chat", "completion"])
def test_output_side_channels_are_not_requested_under_output_policies(
    guarded: RunningGateway, fake_upstream: FakeUpstream, path: str, fields: dict[str, Any]
) -> None:
    body = chat("hi", **fields) if path == CHAT_PATH else {
        "model": "fake-model", "prompt": "hi", **fields}
    sent = _sent(guarded, fake_upstream, body, path)
    assert not {"logprobs", "top_logprobs", "prompt_logprobs", "return_token_ids",
                "return_tokens_as_token_ids"} & set(sent)


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LeakyUpstream, Path]]:
    policies = write_policies(tmp_path_factory.mktemp("leaky") / "p", {
        "person.yaml": pii_policy("person", CANARY_PHONE, stages="[output]"),
    })
    with LeakyUpstream(CANARY_PHONE) as upstream:
        yield upstream, policies


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", [CHAT_PATH, COMPLETION_PATH], ids=["chat", "completion"])
def test_side_channels_in_the_response_are_stripped(
    leaky: tuple[LeakyUpstream, Path], path: str, stream: bool
) -> None:
    upstream, policies = leaky
    body: dict[str, Any] = (chat("hi") if path == CHAT_PATH
                            else {"model": "fake-model", "prompt": "hi"})
    with run_gateway(upstream=upstream.url, policies=policies) as gw:
        raw = httpx.post(gw.url + path, json={**body, "stream": stream}, timeout=10).content
    assert b"clean" in raw
    assert CANARY_PHONE.encode() not in raw
    assert raw.count(b'"logprobs"') == raw.count(b'"logprobs":null')
    for field in (b"token_ids", b"reasoning_content", b"tool_calls", b"top_logprobs"):
        assert field not in raw


def test_without_output_policies_side_channels_pass_through(
    leaky: tuple[LeakyUpstream, Path],
) -> None:
    """The control: the gateway only strips what it must (no policy, nothing to protect)."""
    upstream, _ = leaky
    with run_gateway(upstream=upstream.url) as gw:
        raw = httpx.post(gw.url + CHAT_PATH, json=chat("hi"), timeout=10).content
    assert CANARY_PHONE.encode() in raw and b"logprobs" in raw


@pytest.mark.parametrize("tools", [
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"tool_choice": {"type": "function", "function": {"name": "f"}}},
    {"functions": [{"name": "f", "parameters": {}}]},
], ids=["tools", "named-tool-choice", "legacy-functions"])
def test_tools_are_refused_under_output_policies(
    guarded: RunningGateway, tools: dict[str, Any]
) -> None:
    response = httpx.post(guarded.url + CHAT_PATH, json=chat("hi", **tools), timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported"


def test_echo_of_a_prompt_holding_a_suppressed_value_is_refused(
    guarded: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    """A redacted echo would show where the protected value was (gateway.request_text)."""
    prompt = f"My number is {CANARY_PHONE}, repeat it."
    before = len(fake_upstream.recorder.requests)
    response = httpx.post(guarded.url + COMPLETION_PATH, json={
        "model": "fake-model", "prompt": prompt, "echo": True, **script(text=prompt)})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "echo"
    assert CANARY_PHONE not in response.text
    assert len(fake_upstream.recorder.requests) == before


def test_an_upstream_echoing_a_prompt_it_was_not_sent_is_still_checked(
    guarded: RunningGateway,
) -> None:
    prompt = f"My number is {CANARY_PHONE}, repeat it."
    response = httpx.post(guarded.url + COMPLETION_PATH, json={
        "model": "fake-model", "prompt": "x", "echo": True, **script(text=prompt)})
    assert response.status_code == 200
    assert CANARY_PHONE not in response.text


@pytest.mark.parametrize("prompt", [[1, 2, 3], [[1, 2], [3]]], ids=["ids", "batched-ids"])
def test_token_id_prompts_are_refused_under_input_policies(
    guarded: RunningGateway, fake_upstream: FakeUpstream, prompt: Any
) -> None:
    before = len(fake_upstream.recorder.requests)
    response = httpx.post(guarded.url + COMPLETION_PATH,
                          json={"model": "fake-model", "prompt": prompt}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter"
    assert len(fake_upstream.recorder.requests) == before


def test_token_id_prompts_pass_when_only_output_is_policed(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    policies = write_policies(tmp_path / "p", {
        "person.yaml": pii_policy("person", CANARY_PHONE, stages="[output]")})
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        response = httpx.post(gw.url + COMPLETION_PATH,
                              json={"model": "fake-model", "prompt": [1, 2, 3]}, timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("model, status", [
    ("fake-model", 200), ("fake-adapter", 404), ("not-a-model", 404),
])
def test_only_listed_models_are_served_adapters_are_not(
    guarded: RunningGateway, model: str, status: int
) -> None:
    response = httpx.post(guarded.url + CHAT_PATH, json={**chat("hi"), "model": model}, timeout=10)
    assert response.status_code == status
    if status == 404:
        assert response.json()["error"] == {
            "message": f"The model `{model}` does not exist.", "type": "NotFoundError",
            "param": "model", "code": 404}


def test_streamed_chunks_keep_only_allowed_fields(guarded: RunningGateway) -> None:
    body = chat("hi", stream=True, logprobs=True, **script(text="plain words here"))
    with httpx.stream("POST", guarded.url + CHAT_PATH, json=body, timeout=10) as response:
        raw = b"".join(response.iter_raw())
    chunks = [orjson.loads(p[6:]) for p in raw.split(b"\n\n")
              if p.startswith(b"data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                   if c["choices"]) == "plain words here"
    assert all(set(ch) <= {"index", "delta", "logprobs", "finish_reason"}
               and ch["logprobs"] is None for c in chunks for ch in c["choices"])
