"""The upstream client: connection slots come back whatever clients do, a request waits a
bounded time for one (503), the pool shows in /readyz and /metrics, and a stale kept-alive
connection is retried once for reads only (a completion is never sent twice)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.upstream import Upstream, UpstreamError
from tests.fakes.stale_upstream import StaleKeepAliveUpstream
from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway

CHAT_PATH = "/v1/chat/completions"
ABORTS = 1000
#: Small enough that the old leak (one slot per unlucky abort) exhausts it many times over.
LEAK_LIMIT = 32
POOL_WAIT_S = 0.5


def _chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture(scope="module")
def leak_gateway(fake_upstream: FakeUpstream) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, max_upstream_connections=LEAK_LIMIT,
                     upstream_pool_timeout_s=1.0) as gw:
        yield gw


@pytest.fixture(scope="module")
def two_slots(fake_upstream: FakeUpstream) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, max_upstream_connections=2,
                     upstream_pool_timeout_s=POOL_WAIT_S, first_byte_timeout_s=30) as gw:
        yield gw


async def _pool(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/readyz")).json()["upstream_pool"])


async def _metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not exported")


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def _raw_post(body: dict[str, Any]) -> bytes:
    payload = orjson.dumps(body)
    return (
        b"POST %b HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%b" % (CHAT_PATH.encode(), len(payload), payload)
    )


async def _send_and_hang_up(port: int, request: bytes, gate: asyncio.Semaphore) -> None:
    async with gate:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        writer.close()
        await writer.wait_closed()


async def test_a_thousand_aborted_streams_leave_no_slot_behind(
    leak_gateway: RunningGateway,
) -> None:
    # The upstream's first byte comes at different moments relative to the hang-up, so the
    # disconnect lands before, during and after the upstream call is opened.
    requests = [
        _raw_post(_chat(stream=True, **script(text="aborted " * 8, first_byte_s=delay)))
        for delay in (0, 0.001, 0.003, 0.01)
    ]
    gate = asyncio.Semaphore(64)
    await asyncio.gather(*(
        _send_and_hang_up(leak_gateway.settings.port, requests[i % len(requests)], gate)
        for i in range(ABORTS)
    ))
    async with httpx.AsyncClient(base_url=leak_gateway.url, timeout=10) as client:
        async def drained() -> bool:
            return (await _pool(client))["in_use"] == 0

        await _until(drained)
        for _ in range(2 * LEAK_LIMIT):
            async with client.stream(
                "POST", CHAT_PATH, json=_chat(stream=True, **script(text="still served"))
            ) as response:
                assert response.status_code == 200
                assert (await response.aread()).endswith(b"data: [DONE]\n\n")
        assert await _pool(client) == {"in_use": 0, "limit": LEAK_LIMIT, "saturated": False}
        assert await _metric(client, "lethe_upstream_connections_in_use") == 0
        assert await _metric(client, "lethe_in_flight_requests") == 0
        assert await _metric(client, "lethe_upstream_pool_timeouts_total") == 0


async def test_an_exhausted_pool_answers_503_within_the_bounded_wait(
    two_slots: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=two_slots.url, timeout=30) as client:
        holders = [
            asyncio.create_task(
                client.post(CHAT_PATH, json=_chat(stream=True, **script(mode="hang")))
            )
            for _ in range(2)
        ]

        async def full() -> bool:
            return (await _pool(client))["in_use"] == 2

        await _until(full)
        started = time.monotonic()
        refused = await client.post(CHAT_PATH, json=_chat("call 415-555-0123", **script()))
        waited = time.monotonic() - started
        assert refused.status_code == 503
        assert POOL_WAIT_S * 0.8 <= waited < POOL_WAIT_S + 2.0
        error = refused.json()["error"]
        assert error["type"] == "unavailable" and error["code"] == 503
        assert "415" not in error["message"]

        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert ready.json()["upstream_pool"] == {"in_use": 2, "limit": 2, "saturated": True}
        assert await _metric(client, "lethe_upstream_connections_in_use") == 2
        assert await _metric(client, "lethe_upstream_pool_timeouts_total") == 1
        assert await _metric(client, "lethe_upstream_errors_total", reason="pool_timeout") == 1

        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)

        async def free() -> bool:
            return (await _pool(client))["in_use"] == 0

        await _until(free)
        assert (await client.get("/readyz")).status_code == 200
        served = await client.post(CHAT_PATH, json=_chat(**script(text="served again")))
        assert served.status_code == 200


async def _get_models(upstream: Upstream) -> None:
    assert (await upstream.get_json("/v1/models"))["data"][0]["id"] == "fake-model"


async def _get_health(upstream: Upstream) -> None:
    assert (await upstream.exchange("GET", "/health"))[0] == 200


async def _post_whole(upstream: Upstream) -> None:
    data, _ = await upstream.post(CHAT_PATH, _chat())
    assert data["choices"][0]["message"]["content"] == "fresh"


async def _post_stream(upstream: Upstream) -> None:
    response = await upstream.open(CHAT_PATH, _chat())
    try:
        assert response.status == 200
        await response.aread()
    finally:
        await response.close()


@pytest.mark.parametrize("call, method, path, retried", [
    (_get_models, "GET", "/v1/models", True),
    (_get_health, "GET", "/health", True),
    (_post_whole, "POST", CHAT_PATH, False),
    (_post_stream, "POST", CHAT_PATH, False),
], ids=["models", "health", "completion", "completion-stream"])
async def test_a_stale_kept_alive_connection_is_retried_once_for_reads_only(
    call: Callable[[Upstream], Awaitable[None]], method: str, path: str, retried: bool
) -> None:
    with StaleKeepAliveUpstream() as stale:
        upstream = Upstream(stale.url)
        try:
            await call(upstream)  # a fresh connection, answered and kept alive
            if retried:
                await call(upstream)
                # Sent on the stale connection, dropped there, then once more on a new one.
                assert [c for c, _, _ in stale.seen.requests] == [1, 1, 2]
            else:
                with pytest.raises(UpstreamError) as failure:
                    await call(upstream)
                assert failure.value.status == 502 and failure.value.reason == "connect"
                # The completion left once: a generation is never paid for twice.
                assert [c for c, _, _ in stale.seen.requests] == [1, 1]
            assert stale.seen.count(method, path) == (3 if retried else 2)
            assert upstream.pool_stats().in_use == 0
        finally:
            await upstream.aclose()
