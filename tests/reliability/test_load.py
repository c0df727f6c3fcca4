"""Load: 10,000 requests at concurrency 64 through `lethe serve` (a real process) in front of the
scripted upstream (another process), mixed streaming and not, some blocked or redacted by
policy. Zero unexpected answers, the planted secrets never in a response, nothing left in
flight, and the gateway's RSS flat between the warm-up and the end."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from stack.processes import free_port
from tests.fakes.upstream import script
from tests.reliability.conftest import (
    CANARY_PHONE,
    CANARY_SENTENCE,
    CHAT_PATH,
    COMPLETION_PATH,
    chat,
)
from tests.servers import wait_ready

ROOT = Path(__file__).resolve().parents[2]
TOTAL = int(os.environ.get("LETHE_LOAD_REQUESTS", "10000"))
CONCURRENCY = 64
WARMUP = TOTAL // 10
#: RSS may grow this much between the end of the warm-up and the end of the run.
RSS_GROWTH_LIMIT = 32 * 1024 * 1024

_FAKE = ("import uvicorn; from tests.fakes.upstream import Recorder, build_app; "
         "uvicorn.run(build_app(Recorder()), host='127.0.0.1', port={port}, "
         "log_level='warning', lifespan='off', access_log=False)")


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          canary_policies_module: Path) -> Iterator[tuple[str, psutil.Process]]:
    upstream_port, gateway_port = free_port(), free_port()
    fake = _spawn([sys.executable, "-c", _FAKE.format(port=upstream_port)], {})
    gateway = _spawn(
        [sys.executable, "-m", "lethe_cli", "serve", "--upstream",
         f"http://127.0.0.1:{upstream_port}", "--policies", str(canary_policies_module),
         "--host", "127.0.0.1", "--port", str(gateway_port)],
        {"LETHE_RELOAD_INTERVAL_S": "0", "LETHE_LOG_LEVEL": "warning",
         "LETHE_AUDIT_LOG": str(tmp_path_factory.mktemp("audit") / "audit.jsonl")},
    )
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_ready(url, timeout=60)
        yield url, psutil.Process(gateway.pid)
    finally:
        for proc in (gateway, fake):
            proc.terminate()
        for proc in (gateway, fake):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def canary_policies_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.reliability.conftest import pii_policy, verbatim_policy, write_policies

    corpus = "Chapter one.\n" + CANARY_SENTENCE.capitalize() + ".\nThe end of the tale.\n"
    return write_policies(tmp_path_factory.mktemp("load") / "p", {
        "canary-person.yaml": pii_policy("canary-person", CANARY_PHONE),
        "canary-work.yaml": verbatim_policy("canary-work", "work.txt"),
        "work.txt": corpus,
    })


#: (name, path, body, expected status, whether the answer must be a block) — one mix cycle.
_CLEAN = "A plain answer about the weather and nothing else at all."
_MIX: list[tuple[str, str, dict[str, Any], int]] = [
    ("chat", CHAT_PATH, chat("hello", **script(text=_CLEAN)), 200),
    ("chat-stream", CHAT_PATH, chat("hello", stream=True, **script(text=_CLEAN)), 200),
    ("completion", COMPLETION_PATH, {"model": "fake-model", "prompt": "hi",
                                     **script(text=_CLEAN)}, 200),
    ("completion-stream", COMPLETION_PATH, {"model": "fake-model", "prompt": "hi", "stream": True,
                                            **script(text=_CLEAN)}, 200),
    ("input-block", CHAT_PATH, chat(f"Continue: {CANARY_SENTENCE}"), 400),
    ("output-redact", CHAT_PATH, chat("number?", **script(text=f"It is {CANARY_PHONE}.")), 200),
    ("output-redact-stream", CHAT_PATH,
     chat("number?", stream=True, **script(text=f"It is {CANARY_PHONE} ok.")), 200),
    ("output-block-stream", CHAT_PATH,
     chat("tell", stream=True, **script(text=f"Sure. {CANARY_SENTENCE}.")), 200),
]
_SECRETS = (CANARY_PHONE.encode(), CANARY_SENTENCE.encode(), b"0143", b"amber lantern")


_GATEWAY_ID = re.compile(rb'"id":"(?:chatcmpl|cmpl)-[0-9a-f]+"')


def _without_ids(raw: bytes) -> bytes:
    """The answer without the ids the gateway makes from random request ids: a random hex id
    holds "0143" about once in 700 requests, which is not a leak."""
    return _GATEWAY_ID.sub(b'"id":""', raw)


async def _run(url: str, start: int, count: int, outcomes: Counter[str],
               unexpected: list[str]) -> None:
    next_index = start
    end = start + count

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < end:
            index = next_index
            next_index += 1
            name, path, body, status = _MIX[index % len(_MIX)]
            try:
                response = await client.post(path, json=body)
                raw = response.content
            except httpx.HTTPError as exc:
                unexpected.append(f"{name}: {exc!r}")
                continue
            if response.status_code != status:
                unexpected.append(f"{name}: {response.status_code} {raw[:200]!r}")
            elif any(s in _without_ids(raw) for s in _SECRETS):
                unexpected.append(f"{name}: LEAK {raw[:300]!r}")
            elif status == 200 and body.get("stream") and not raw.endswith(b"data: [DONE]\n\n"):
                unexpected.append(f"{name}: stream without [DONE]")
            elif status == 200 and b'"error"' in raw:
                unexpected.append(f"{name}: error in body {raw[:200]!r}")
            else:
                outcomes[name] += 1

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))


@pytest.mark.slow
async def test_ten_thousand_mixed_requests_no_errors_no_leak_flat_memory(
    stack: tuple[str, psutil.Process],
) -> None:
    url, process = stack
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    await _run(url, 0, WARMUP, outcomes, unexpected)
    rss_warm = process.memory_info().rss
    started = time.monotonic()
    await _run(url, WARMUP, TOTAL - WARMUP, outcomes, unexpected)
    elapsed = time.monotonic() - started
    rss_end = process.memory_info().rss
    metrics = httpx.get(url + "/metrics").text
    print(f"\nload: {TOTAL} requests, concurrency {CONCURRENCY}, {TOTAL - WARMUP} after warm-up "
          f"in {elapsed:.1f}s ({(TOTAL - WARMUP) / elapsed:.0f} req/s); gateway RSS "
          f"{rss_warm / 2**20:.1f} MiB after warm-up -> {rss_end / 2**20:.1f} MiB at the end; "
          f"mix {dict(outcomes)}")
    assert unexpected == [], unexpected[:10]
    assert sum(outcomes.values()) == TOTAL
    assert "lethe_in_flight_requests 0.0" in metrics
    assert rss_end - rss_warm < RSS_GROWTH_LIMIT
