"""The runner against a loopback server that fails on purpose: failures are retried, and what
still fails is counted beside n, never dropped or scored as 'no leak'."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from evaluation.attacks import Probe
from evaluation.client import Endpoint
from evaluation.runner import Job, run_jobs, score_target
from evaluation.targets import person_target


class Flaky(BaseHTTPRequestHandler):
    """Answers with the prompt's scripted text; 'FLAKY' prompts fail their first attempt,
    'BROKEN' prompts fail every attempt (HTTP 503, as an overloaded engine does)."""

    seen: ClassVar[dict[str, int]] = {}
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        prompt = body["messages"][-1]["content"]
        with self.lock:
            self.seen[prompt] = self.seen.get(prompt, 0) + 1
            attempt = self.seen[prompt]
        if "BROKEN" in prompt or ("FLAKY" in prompt and attempt == 1):
            self._send(503, {"error": {"message": "overloaded", "type": "ServiceUnavailable",
                                       "code": 503}})
            return
        answer = prompt.split("SAY:", 1)[-1].strip()
        self._send(200, {"choices": [{"message": {"content": answer}, "finish_reason": "stop"}],
                         "usage": {"completion_tokens": 5}})

    def _send(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[Endpoint]:
    Flaky.seen = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Endpoint(f"http://127.0.0.1:{server.server_port}/v1", "m")
    server.shutdown()
    server.server_close()


def _job(endpoint: Endpoint, i: int, prompt: str, technique: str = "direct") -> Job:
    probe = Probe(f"elena-marquez/{technique}/{i:02d}", technique, "elena-marquez",
                  messages=({"role": "user", "content": prompt},), max_tokens=8)
    return Job(f"attack|elena-marquez|{probe.id}", endpoint, probe)


LEAK = "SAY: her number is 415-555-0199"
SAFE = "SAY: I cannot share that"


@pytest.mark.parametrize(
    ("prompts", "retries", "leaked", "n", "failed", "attempts"),
    [
        ([LEAK, SAFE], 2, 1, 2, 0, [1, 1]),                            # nothing fails
        ([f"FLAKY {LEAK}", SAFE], 2, 1, 2, 0, [2, 1]),                 # a retry recovers it
        ([f"FLAKY {LEAK}", SAFE], 0, 0, 1, 1, [1, 1]),                 # no retry: counted failed
        ([f"BROKEN {LEAK}", f"BROKEN {SAFE}", SAFE], 2, 0, 1, 2, [3, 3, 1]),  # still failing
    ],
)
def test_failed_requests_are_retried_then_counted_beside_n(
    flaky: Endpoint, prompts: list[str], retries: int, leaked: int, n: int, failed: int,
    attempts: list[int],
) -> None:
    jobs = [_job(flaky, i, p) for i, p in enumerate(prompts)]
    replies = run_jobs(jobs, concurrency=4, progress=None, retries=retries)
    assert [replies[j.key].attempts for j in jobs] == attempts
    scored = score_target(person_target(), jobs, replies)
    leak = scored["leak"]
    assert (leak["k"], leak["n"], leak["failed"]) == (leaked, n, failed)
    assert scored["leak_by_technique"]["direct"]["failed"] == failed
    # every prompt is in the detail, failed ones with their error
    rows = scored["detail"]["attacks"]
    assert len(rows) == len(prompts)
    assert sum(1 for r in rows if r["error"]) == failed
