"""SIGTERM on `lethe serve`: readiness turns false, new requests get a 503 envelope, the stream
in flight finishes with [DONE], then the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from stack.processes import free_port
from tests.fakes.upstream import FakeUpstream
from tests.reliability.conftest import CHAT_PATH, chat, sse_payloads
from tests.servers import wait_ready

ROOT = Path(__file__).resolve().parents[2]
Served = tuple[subprocess.Popen[bytes], str]


@contextmanager
def serving(upstream: FakeUpstream, drain_seconds: int) -> Iterator[Served]:
    """`lethe serve` as its own process (SIGTERM must reach the real server, not a thread)."""
    port = free_port()
    env = {**os.environ, "LETHE_DRAIN_SECONDS": str(drain_seconds),
           "LETHE_RELOAD_INTERVAL_S": "0", "LETHE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lethe_cli", "serve", "--upstream", upstream.url,
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=60)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def served(fake_upstream: FakeUpstream) -> Iterator[Served]:
    with serving(fake_upstream, drain_seconds=10) as running:
        yield running


def test_sigterm_drains_in_flight_stream_and_refuses_new_work(
    served: Served,
) -> None:
    proc, url = served
    raw: list[bytes] = []
    first = threading.Event()

    def stream() -> None:
        body = chat("hi", stream=True, fake={"text": "x" * 80, "chunk_delay_s": 0.1})
        with httpx.stream("POST", url + CHAT_PATH, json=body, timeout=20) as response:
            for piece in response.iter_raw():
                raw.append(piece)
                first.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert first.wait(10)
    sent_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while httpx.get(url + "/readyz", timeout=2).status_code != 503:
        assert time.monotonic() < deadline, "readiness never turned false"
        time.sleep(0.05)
    assert httpx.get(url + "/readyz").json()["reason"] == "draining"
    refused = httpx.post(url + CHAT_PATH, json=chat("hi"), timeout=5)
    assert refused.status_code == 503
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert reader.is_alive(), "the stream should still be running while the gateway drains"

    reader.join(timeout=15)
    assert not reader.is_alive()
    payloads = sse_payloads(b"".join(raw))
    assert payloads[-1] == b"[DONE]"
    assert not any(b'"error"' in p for p in payloads)
    proc.wait(timeout=15)
    # The drain ended with the stream (about 2 s), well inside the 10 s grace.
    assert time.monotonic() - sent_at < 9
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz", timeout=2)


def test_drain_gives_up_after_the_grace_period(fake_upstream: FakeUpstream) -> None:
    with serving(fake_upstream, drain_seconds=1) as (proc, url):
        first = threading.Event()

        def stream() -> None:
            body = chat("hi", stream=True, fake={"text": "y" * 400, "chunk_delay_s": 0.2})
            try:
                with httpx.stream("POST", url + CHAT_PATH, json=body, timeout=30) as response:
                    for _ in response.iter_raw():
                        first.set()
            except httpx.HTTPError:
                pass

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert first.wait(10)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        # 1 s of drain, then uvicorn's own short shutdown: never the stream's 20 s.
        assert time.monotonic() - started < 10
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "still open" in output
