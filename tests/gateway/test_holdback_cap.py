"""The hold-back cap never releases unchecked text: a stream whose filters need more ends with
`content_filter`. The cap counts text as the filters see it (folded words and single spaces),
so padding costs an honest answer nothing; a raw cap bounds the memory padding can take.

Through a real gateway with the shipped policies: a phone number whose digits are spread
over more than `max_holdback_chars` of spaces, zero-width characters or hyphens, in
50-character chunks, never reaches the client. On the guard directly, with a test filter
that holds everything back: the normalised cap, the raw cap, and a policy's own cap; and a
token ban, which never sees text, holds nothing back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from filters.base import (
    ALLOW,
    FilterResult,
    PolicyData,
    RequestPatcher,
    ScanResult,
    StreamScanner,
    TextFilter,
)
from gateway.policy import PolicySpec
from gateway.policy.loading import BoundFilter, LoadedPolicy
from tests.conftest import POLICIES
from tests.fakes.upstream import FakeUpstream, script
from tests.gateway.guard_harness import Harness
from tests.servers import RunningGateway, run_gateway

PHONE_DIGITS = "4155550199"
CAP = 1024  # the gateway's default max_holdback_chars


@pytest.fixture(scope="module")
def gateway(fake_upstream: FakeUpstream) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, policies=POLICIES) as gw:
        yield gw


def _stream(gw: RunningGateway, text: str, size: int = 50) -> tuple[str, str | None]:
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    body: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "What is her number?"}],
        "stream": True,
    }
    body.update(script(text=text, chunks=chunks))
    content, finish = [], None
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in orjson.loads(line[6:]).get("choices", []):
                content.append((choice.get("delta") or {}).get("content") or "")
                finish = choice.get("finish_reason") or finish
    return "".join(content), finish


def _cap_blocks(gw: RunningGateway, cap: str) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    prefix = f'lethe_stream_holdback_cap_blocks_total{{cap="{cap}"}} '
    return next(float(ln[len(prefix) :]) for ln in text.splitlines() if ln.startswith(prefix))


PADDINGS = {
    "spaces": " " * (CAP + 100),
    "zero-width": "\u200b" * (CAP + 100),
    "hyphens": "-" * (CAP + 100),
    "mixed": " \u200b-\u2060" * (CAP // 4 + 30),
}


@pytest.mark.parametrize("padding", list(PADDINGS.values()), ids=list(PADDINGS))
def test_digits_spread_over_more_than_the_cap_are_redacted_not_released(
    gateway: RunningGateway, padding: str
) -> None:
    text = "Her number is " + padding.join(PHONE_DIGITS) + ", call her."
    content, finish = _stream(gateway, text)
    assert not any(c.isdigit() for c in content), "a digit of the number reached the client"
    # The padding does not count against the cap: the number is held whole and redacted.
    assert "[REDACTED]" in content and finish == "stop"


def test_a_hold_back_over_the_raw_cap_ends_the_stream_with_content_filter(
    gateway: RunningGateway,
) -> None:
    before = _cap_blocks(gateway, "raw")
    padding = " " * 2000  # 9 gaps: 18,000 characters held, over the 16,384 raw cap
    content, finish = _stream(gateway, "Her number is " + padding.join(PHONE_DIGITS) + ".")
    assert finish == "content_filter"
    assert not any(c.isdigit() for c in content)
    assert _cap_blocks(gateway, "raw") == before + 1


def test_an_honest_answer_with_heavy_indentation_passes_unchanged(
    gateway: RunningGateway,
) -> None:
    # 32 held words span about 4,000 raw characters here: over the cap in raw characters,
    # far under it as the filters see the text.
    lines = [f"{' ' * 120}total = total + price_{i} * quantity_{i}" for i in range(80)]
    text = "Here is the loop:\n" + "\n".join(lines) + "\nThat is all."
    content, finish = _stream(gateway, text)
    assert content == text and finish == "stop"


# -- the guard on its own, with a filter that holds everything back -----------------------------
class HoldAll(TextFilter):
    """Test-only: allows everything, but its stream scanner releases nothing until the end."""

    name = "hold-all"

    @classmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: Any) -> HoldAll:
        return cls()

    def check(self, text: str) -> FilterResult:
        return ALLOW

    def open_stream(self) -> StreamScanner:
        return _HoldAllScanner()


class _HoldAllScanner(StreamScanner):
    def scan(self, text: str, final: bool) -> ScanResult:
        return ScanResult(ALLOW, len(text) if final else 0)


class BanOnly(RequestPatcher):
    """Test-only: a token ban (like logit_bias); it never sees the text."""

    name = "ban-only"

    @classmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: Any) -> BanOnly:
        return cls()

    def patch_request(self, body: dict[str, Any]) -> None:
        body.setdefault("logit_bias", {})["7"] = -100


def _harness(
    tmp_path: Path,
    policy_cap: int | None = None,
    filters: tuple[TextFilter | RequestPatcher, ...] = (HoldAll(),),
) -> Harness:
    spec = PolicySpec.model_validate(
        {
            "name": "hold",
            "filters": [{"type": f.name} for f in filters],
            "stream": {"holdback_chars": policy_cap},
        }
    )
    bound = tuple(BoundFilter(f.name, f, frozenset({"output"}), "block") for f in filters)
    policy = LoadedPolicy(spec, tmp_path / "hold.yaml", bound)
    return Harness([policy], tmp_path / "audit.jsonl", max_holdback_chars=CAP)


def _words(n: int) -> list[str]:
    return [f"word{i} " for i in range(n)]


def test_held_text_over_the_cap_as_filters_see_it_blocks_and_releases_none_of_it(
    tmp_path: Path,
) -> None:
    harness = _harness(tmp_path)
    try:
        outcome = harness.stream(_words(300))  # about 2,100 normalised characters
    finally:
        harness.close()
    assert outcome.blocked and outcome.text == ""
    blocks = harness.metrics.registry.get_sample_value(
        "lethe_stream_holdback_cap_blocks_total", {"cap": "normalised"}
    )
    assert blocks == 1


@pytest.mark.parametrize(
    "pad", [" ", "\u200b", "-", "\u3000"], ids=["space", "zw", "hyphen", "ideo"]
)
def test_padding_held_back_costs_nothing_below_the_raw_cap(tmp_path: Path, pad: str) -> None:
    harness = _harness(tmp_path)
    chunks = [f"w{i}" + pad * 500 for i in range(20)]  # 10,000 raw characters held
    try:
        outcome = harness.stream(chunks)
    finally:
        harness.close()
    assert not outcome.blocked and outcome.text == "".join(chunks)


def test_a_policy_may_allow_a_larger_hold_back_than_the_gateway(tmp_path: Path) -> None:
    harness = _harness(tmp_path, policy_cap=4096)
    try:
        outcome = harness.stream(_words(300))
    finally:
        harness.close()
    assert not outcome.blocked and outcome.text == "".join(_words(300))


@pytest.mark.parametrize(
    ("filters", "released_early"),
    [((BanOnly(),), True), ((BanOnly(), HoldAll()), False)],
    ids=["ban-alone", "ban-beside-a-holding-filter"],
)
def test_a_token_ban_holds_no_stream_text_back(
    tmp_path: Path, filters: tuple[TextFilter | RequestPatcher, ...], released_early: bool
) -> None:
    harness = _harness(tmp_path, filters=filters)
    chunks = _words(40)

    async def releases() -> list[str]:
        guard = harness.request().choice_guard(0)
        return [(await guard.feed(c, final=False)).text for c in chunks]

    try:
        sent = asyncio.run(releases())
    finally:
        harness.close()
    assert harness.request().output_active  # the ban still closes logprobs and tools
    assert sent == (chunks if released_early else [""] * len(chunks))
