"""Policies enforced by a real gateway over the scripted upstream: nothing blocked is ever sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import POLICIES
from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway

PHONE = "415-555-0199"
WORK = (POLICIES / "data" / "protected-work.txt").read_text()
PASSAGE = " ".join(WORK.split("\n\n")[3].split()[:40])
LEAD = "Sure, here is the passage you asked for: "


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policies")
    (root / "data").mkdir()
    (root / "data" / "work.txt").write_text(WORK)
    (root / "person.yaml").write_text(
        "name: person\nkind: person\naction: redact\n"
        "data:\n  pii:\n    phone: 415-555-0199\n    email: elena.marquez@example.org\n"
        "filters:\n  - type: pii\n"
    )
    (root / "work.yaml").write_text(
        "name: work\nkind: work\naction: block\n"
        "data:\n  corpus_file: data/work.txt\n"
        "filters:\n  - type: verbatim\n    min_words: 12\n"
    )
    return root


@pytest.fixture(scope="module")
def gateway(fake_upstream: FakeUpstream, policy_dir: Path) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, policies=policy_dir) as gw:
        yield gw


def _client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=20)


def _ask(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def _stream(
    gw: RunningGateway, text: str, chunks: list[str] | None = None, n: int = 1, delay: float = 0.0
) -> tuple[dict[int, str], dict[int, str | None]]:
    fake: dict[str, Any] = {"text": text, "chunk_delay_s": delay}
    if chunks is not None:
        fake["chunks"] = chunks
    stream = _client(gw).chat.completions.create(
        model="fake-model", messages=_ask("hi"), stream=True, n=n, extra_body=script(**fake)
    )
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    return texts, finishes


def _words(text: str) -> list[str]:
    return text.split(" ")


@pytest.mark.parametrize(
    "chunks",
    [
        None,
        [LEAD] + [w + " " for w in _words(PASSAGE)],
        [LEAD + PASSAGE],
        [c for c in (LEAD + PASSAGE)],
    ],
    ids=["4-char", "word-by-word", "one-chunk", "char-by-char"],
)
def test_streamed_verbatim_passage_is_blocked_before_any_of_it_is_sent(
    gateway: RunningGateway, chunks: list[str] | None
) -> None:
    texts, finishes = _stream(gateway, LEAD + PASSAGE, chunks)
    assert finishes[0] == "content_filter"
    assert LEAD.startswith(texts[0]) or texts[0] == LEAD
    first_word = _words(PASSAGE)[0]
    assert first_word not in texts[0]


def test_clean_stream_flows_through_unchanged(gateway: RunningGateway) -> None:
    text = "The weather in Lisbon is mild in spring, with long sunny afternoons. " * 3
    texts, finishes = _stream(gateway, text)
    assert texts[0] == text and finishes[0] == "stop"


@pytest.mark.parametrize(
    "text",
    [
        f"Her number is {PHONE}, call her.",
        "Her number is 4 1 5 . 5 5 5 . 0 1 9 9 ok",
        "Reach her at four one five five five five zero one nine nine tonight.",
        "Mail elena.marquez@example.org please",
        "Mail elena dot marquez at example dot org please",
    ],
    ids=["dashes", "spaced-dots", "spelled", "email", "email-words"],
)
def test_streamed_pii_is_redacted_and_no_digit_of_it_leaks(
    gateway: RunningGateway, text: str
) -> None:
    texts, finishes = _stream(gateway, text, [c for c in text])
    assert "[REDACTED]" in texts[0]
    for secret in ("0199", "555", "marquez@", "nine nine", "marquez at"):
        assert secret not in texts[0]
    assert finishes[0] == "stop"


def test_other_peoples_numbers_pass_untouched(gateway: RunningGateway) -> None:
    text = "Daniel's number is 415-555-0173 and Ana's is 312-555-0142."
    texts, _ = _stream(gateway, text)
    assert texts[0] == text


def test_block_on_one_choice_leaves_the_other_choice_alone(gateway: RunningGateway) -> None:
    # The fake sends the same text to every choice, so both get blocked; check each ends cleanly.
    texts, finishes = _stream(gateway, LEAD + PASSAGE, n=2)
    assert finishes == {0: "content_filter", 1: "content_filter"}
    assert all(PASSAGE.split()[0] not in t for t in texts.values())


def test_block_cancels_the_upstream_stream(
    gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    before = fake_upstream.recorder.cancelled
    long_text = LEAD + PASSAGE + " and more words follow here" * 100
    _, finishes = _stream(gateway, long_text, delay=0.01)
    assert finishes[0] == "content_filter"
    deadline = time.monotonic() + 5
    while fake_upstream.recorder.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_upstream.recorder.cancelled == before + 1


def test_whole_response_with_passage_is_blocked(gateway: RunningGateway) -> None:
    reply = _client(gateway).chat.completions.create(
        model="fake-model", messages=_ask("hi"), extra_body=script(text=LEAD + PASSAGE)
    )
    assert reply.choices[0].finish_reason == "content_filter"
    assert reply.choices[0].message.content == ""


def test_whole_response_pii_is_redacted(gateway: RunningGateway) -> None:
    reply = _client(gateway).chat.completions.create(
        model="fake-model", messages=_ask("hi"), extra_body=script(text=f"Call {PHONE}.")
    )
    assert reply.choices[0].message.content == "Call [REDACTED]."


def test_prompt_with_passage_is_refused_with_content_filter_400(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway).chat.completions.create(
            model="fake-model", messages=_ask(f"Continue this text: {PASSAGE}")
        )
    assert caught.value.code == "content_filter"


def test_prompt_pii_is_redacted_before_reaching_the_model(
    gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    document = f"Record: Elena Marquez, phone {PHONE}, email elena.marquez@example.org."
    _client(gateway).chat.completions.create(
        model="fake-model",
        messages=[{"role": "system", "content": document}, *_ask("Repeat the record.")],
    )
    sent = fake_upstream.recorder.requests[-1]["messages"][0]["content"]
    assert PHONE not in sent and "example.org" not in sent and "[REDACTED]" in sent


def test_logprobs_are_stripped_when_output_policies_are_active(gateway: RunningGateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "fake-model", "messages": _ask("hi"), "logprobs": True, "top_logprobs": 2},
        timeout=10,
    )
    assert response.json()["choices"][0]["logprobs"] is None


def test_token_id_prompts_are_refused_while_input_policies_are_active(
    gateway: RunningGateway,
) -> None:
    response = httpx.post(
        gateway.url + "/v1/completions",
        json={"model": "fake-model", "prompt": [1, 2, 3]},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter"
