"""Class 1: clients that walk away do not take the gateway down.

Streaming (and whole) requests whose client closes, resets or half-closes the socket right
after sending, mid-body, after the status line or after the first event, many times over, in
front of an upstream whose answers last a minute. The gateway here has a small upstream pool
(8), so a leak of a few slots per hundred aborts shows at once. Afterwards: the upstream holds
no stream open (the gateway closed them), normal traffic is served and /readyz says ready.
A pool genuinely exhausted by live clients answers 503 within a bounded wait and /readyz shows
it; once they finish, traffic flows again.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import assert_answered
from tests.attacks.redteam.client import PATHS, body_for, send
from tests.attacks.redteam.conftest import LogCapture
from tests.attacks.redteam.rawhttp import abort
from tests.attacks.redteam.upstream import Script, ScriptedUpstream
from tests.servers import RunningGateway

POOL = 8
SLOW = Script(text="slow " * 600, chunks=tuple(["slow "] * 600), chunk_delay_s=0.1,
              first_byte_s=0.0)
SLOW_WHOLE = Script(text="A slow whole answer.", first_byte_s=30.0)
STYLES = ("close-after-send", "rst-after-send", "half-close", "close-after-delay",
          "close-mid-body", "close-after-status", "close-after-first-event")
ABORTS = 3 * POOL
#: Styles where the gateway has the whole request before the client leaves: it forwards them.
FORWARDED = ("close-after-delay", "close-after-status", "close-after-first-event")


def _wait(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


def _assert_serving(gateway: RunningGateway, upstream: ScriptedUpstream) -> None:
    assert _wait(lambda: upstream.recorder.open_streams == 0, 5.0), (
        f"{upstream.recorder.open_streams} upstream streams still open after their clients left")
    with upstream.play(text="Back to normal."):
        for kind, stream in (("chat", True), ("chat", False), ("completion", True)):
            reply = send(gateway.url, kind, body_for(kind, "Hello"), stream=stream, timeout=10)
            assert_answered(reply)
            assert reply.text == "Back to normal.", reply.describe()
    ready = httpx.get(gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text


def _cases() -> list[ParameterSet]:
    cases = [pytest.param(style, kind, True, id=f"{style}-stream-{kind}")
             for style in STYLES for kind in ("chat", "completion")]
    cases += [pytest.param(style, "chat", False, id=f"{style}-whole-chat")
              for style in ("close-after-send", "rst-after-send", "close-after-delay")]
    return cases


@pytest.mark.parametrize("style, kind, stream", _cases())
def test_aborted_requests_leave_the_pool_whole(
    tight_gateway: RunningGateway, upstream: ScriptedUpstream, style: str, kind: str,
    stream: bool,
) -> None:
    body = body_for(kind, "Tell me a long story.", stream=stream)
    mark = upstream.recorder.mark()
    with upstream.play(SLOW if stream else SLOW_WHOLE):
        for k in range(ABORTS):
            answered = abort(tight_gateway.url, PATHS[kind], body, style)
            assert answered, f"the gateway stopped answering after {k} aborted requests"
    if style in FORWARDED:
        # The case only proves something if the aborted requests held upstream slots.
        assert len(upstream.recorder.since(mark)) >= ABORTS // 2
    _assert_serving(tight_gateway, upstream)


@pytest.mark.parametrize("style", ["close-mid-body", "rst-after-send", "close-after-status"])
def test_a_client_leaving_is_not_an_error_in_the_logs(
    tight_gateway: RunningGateway, upstream: ScriptedUpstream, logs: LogCapture, style: str,
) -> None:
    """A client that goes away is routine: no traceback per abort (an attacker's log flood)."""
    mark = logs.mark()
    with upstream.play(SLOW):
        for _ in range(5):
            abort(tight_gateway.url, PATHS["chat"], body_for("chat", "Story?", stream=True),
                  style)
    time.sleep(0.5)
    text = logs.since(mark)
    assert "Traceback" not in text, text[-2000:]


def test_a_burst_of_400_aborted_streams_leaves_the_gateway_serving(
    tight_gateway: RunningGateway, upstream: ScriptedUpstream,
) -> None:
    styles = ("close-after-send", "rst-after-send", "half-close", "close-after-delay")
    jobs = [(("chat", "completion")[k % 2], styles[k % len(styles)]) for k in range(400)]
    with upstream.play(SLOW), ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: abort(tight_gateway.url, PATHS[job[0]],
                                        body_for(job[0], "Story?", stream=True), job[1]), jobs))
    _assert_serving(tight_gateway, upstream)


def test_an_exhausted_pool_answers_503_in_bounded_time_and_recovers(
    tight_gateway: RunningGateway, upstream: ScriptedUpstream,
) -> None:
    stop = threading.Event()
    started = threading.Barrier(POOL + 1, timeout=20)

    def hold() -> None:
        body = body_for("chat", "Long story.", stream=True)
        with httpx.stream("POST", tight_gateway.url + PATHS["chat"], json=body,
                          timeout=20) as response:
            started.wait()
            for _ in response.iter_raw():
                if stop.is_set():
                    return

    with upstream.play(SLOW):
        holders = [threading.Thread(target=hold) for _ in range(POOL)]
        for t in holders:
            t.start()
        try:
            started.wait()
            begun = time.monotonic()
            extra = send(tight_gateway.url, "chat", body_for("chat", "One more."), stream=True,
                         timeout=30)
            waited = time.monotonic() - begun
            ready = httpx.get(tight_gateway.url + "/readyz", timeout=5)
        finally:
            stop.set()
            for t in holders:
                t.join(timeout=10)
    assert extra.status == 503, f"after {waited:.1f}s: {extra.describe()}"
    assert extra.error is not None, extra.describe()
    assert waited < 15, f"the 503 took {waited:.1f}s"
    assert ready.status_code == 503 or "pool" in ready.text.lower(), (
        f"/readyz does not show the exhausted pool: {ready.status_code} {ready.text}")
    _assert_serving(tight_gateway, upstream)
