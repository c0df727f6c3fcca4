"""Nothing holds a connection indefinitely: an upstream that only sends SSE comments is cut
after the idle timeout (comments are not activity), a whole answer trickling in is cut at
the read timeout, and a client trickling its request body (slowloris) gets 408."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.upstream import FakeUpstream, script
from tests.reliability.conftest import (
    CANARY_PHONE,
    CHAT_PATH,
    chat,
    pii_policy,
    sse_payloads,
    write_policies,
)
from tests.servers import RunningGateway, run_gateway

IDLE_S = 1.0
READ_S = 1.0
BODY_TOTAL_S = 1.5
BODY_IDLE_S = 0.5
TIMEOUTS = {
    "upstream_idle_timeout_s": IDLE_S,
    "read_timeout_s": READ_S,
    "first_byte_timeout_s": 5.0,
    "body_read_timeout_s": BODY_TOTAL_S,
    "body_idle_timeout_s": BODY_IDLE_S,
}


@pytest.fixture(scope="module")
def gateways(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningGateway]]:
    policies: Path = write_policies(tmp_path_factory.mktemp("timeouts") / "p", {
        "person.yaml": pii_policy("person", CANARY_PHONE, stages="[output]", action="block"),
    })
    with run_gateway(upstream=fake_upstream.url, **TIMEOUTS) as plain, \
            run_gateway(upstream=fake_upstream.url, policies=policies, **TIMEOUTS) as guarded:
        yield {"plain": plain, "guarded": guarded}


def _timeouts_counted(gw: RunningGateway) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lethe_upstream_errors_total" and sample.labels == {
                "reason": "timeout"
            }:
                return float(sample.value)
    raise AssertionError("lethe_upstream_errors_total{reason=timeout} not exported")


def _text(payloads: list[bytes]) -> str:
    out = []
    for payload in payloads:
        if payload.startswith(b"{"):
            chunk = orjson.loads(payload)
            for choice in chunk.get("choices") or ():
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


PIECES = ["The ", "river ", "runs ", "past ", "the ", "old ", "mill ", "today."]


@pytest.mark.parametrize("kind", ["plain", "guarded"])
@pytest.mark.parametrize("fake, cut", [
    (script(mode="comments", comment_every_s=0.2), True),
    (script(raw_events=[":ping"] * 12, chunk_delay_s=0.2), True),
    # Near-misses: data arriving more often than the idle timeout, for longer than it.
    (script(chunks=PIECES, chunk_delay_s=0.3), False),
    (script(raw_events=[
        {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
         "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        if i % 2 == 0 else ":ping"
        for i, word in enumerate(w for p in PIECES for w in (p, p))
    ] + ["[DONE]"], chunk_delay_s=0.2), False),
], ids=["comments-only", "comments-after-head", "data-every-0.3s", "data-among-comments"])
def test_stream_silence_between_data_events_is_cut_at_the_idle_timeout(
    gateways: dict[str, RunningGateway], kind: str, fake: dict[str, Any], cut: bool
) -> None:
    gw = gateways[kind]
    counted = _timeouts_counted(gw)
    started = time.monotonic()
    with httpx.stream("POST", gw.url + CHAT_PATH, json=chat("hi", stream=True, **fake),
                      timeout=20) as response:
        assert response.status_code == 200
        payloads = sse_payloads(b"".join(response.iter_raw()))
    took = time.monotonic() - started
    assert payloads[-1] == b"[DONE]"
    if cut:
        assert IDLE_S * 0.8 <= took < IDLE_S + 2.0
        error = orjson.loads(payloads[-2])["error"]
        assert "stopped sending" in error["message"]
        assert set(error) == {"message", "type", "param", "code"}
        assert _timeouts_counted(gw) == counted + 1
    else:
        assert took > IDLE_S * 1.5  # lasted past the idle timeout, and was not cut
        assert not any(b'"error"' in p for p in payloads)
        assert _text(payloads).endswith("today.")
        assert _timeouts_counted(gw) == counted


@pytest.mark.parametrize("kind", ["plain", "guarded"])
@pytest.mark.parametrize("delay, status", [(0.3, 504), (0.01, 200)],
                         ids=["trickling-past-read-timeout", "quick"])
def test_a_whole_answer_must_arrive_within_the_read_timeout(
    gateways: dict[str, RunningGateway], kind: str, delay: float, status: int
) -> None:
    gw = gateways[kind]
    body = chat("hi", **script(mode="trickle_whole", text="All is well.", chunk_delay_s=delay))
    started = time.monotonic()
    response = httpx.post(gw.url + CHAT_PATH, json=body, timeout=20)
    assert response.status_code == status
    assert time.monotonic() - started < READ_S + 2.0
    if status == 504:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    else:
        assert response.json()["choices"][0]["message"]["content"] == "All is well."


BODY = orjson.dumps(chat("a slow client", **script(text="ok")))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def _send_slowly(writer: asyncio.StreamWriter, pieces: list[bytes], gap: float) -> None:
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(gap)
    except ConnectionError:
        pass


@pytest.mark.parametrize("pieces, gap, status, bound", [
    # One byte every 0.2 s: never idle long enough, cut by the whole-body deadline.
    ([BODY[i:i + 1] for i in range(len(BODY))], 0.2, 408, BODY_TOTAL_S),
    # Half the body, then nothing: cut by the idle timeout.
    ([BODY[: len(BODY) // 2]], 60.0, 408, BODY_IDLE_S),
    # Near-miss: slow but steady, done well within both limits.
    ([BODY[i:i + len(BODY) // 4 + 1] for i in range(0, len(BODY), len(BODY) // 4 + 1)],
     0.1, 200, 1.0),
], ids=["byte-trickle", "stall", "slow-but-steady"])
async def test_a_slowly_sent_request_body_is_cut_with_408(
    gateways: dict[str, RunningGateway], pieces: list[bytes], gap: float, status: int,
    bound: float,
) -> None:
    gw = gateways["plain"]
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
    head = (
        b"POST %b HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % (CHAT_PATH.encode(), len(BODY))
    )
    writer.write(head)
    sender = asyncio.create_task(_send_slowly(writer, pieces, gap))
    started = time.monotonic()
    try:
        code, headers, body = await asyncio.wait_for(_read_response(reader), 10)
        took = time.monotonic() - started
        assert code == status
        if status == 408:
            assert bound * 0.8 <= took < bound + 1.5
            error = orjson.loads(body)["error"]
            assert error["code"] == "body_timeout" and error["type"] == "invalid_request_error"
            # The connection ends with the answer: the rest of the trickle goes nowhere.
            assert headers.get("connection") == "close"
            assert await asyncio.wait_for(reader.read(), 5) == b""
        else:
            assert orjson.loads(body)["choices"][0]["message"]["content"] == "ok"
    finally:
        sender.cancel()
        writer.close()
