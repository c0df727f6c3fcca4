"""Class 8: one client's long prompt does not starve another client's short one.

A benign 6,000-word prompt (prose, a table of numbers, code) is sent; 0.5 s later another
client asks "What is the capital of France?". The second request must be answered normally:
200, finish "stop", the upstream's answer delivered, whole or streamed. What happens to the long
request is its own business (answered, or refused for overrunning its own budget).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.attacks.redteam.client import Reply, body_for, send
from tests.attacks.redteam.material import benign_words
from tests.attacks.redteam.upstream import ScriptedUpstream
from tests.servers import RunningGateway

ANSWER = "Paris is the capital of France."
QUESTION = "What is the capital of France?"


def _table(words: int) -> str:
    rows = [f"row {k}: {k * 3 % 97} {k * 7 % 89} {k * 11 % 83} units" for k in range(words // 6)]
    return "Summarise this table.\n" + "\n".join(rows)


def _code(words: int) -> str:
    lines = [f"total_{k} = compute(value_{k}, weight={k % 9}) + offset" for k in range(words // 6)]
    return "Review this code.\n" + "\n".join(lines)


LONG_PROMPTS = {
    "prose": benign_words(6000, seed=8),
    "table": _table(6000),
    "code": _code(6000),
}
CASES = [
    pytest.param("prose", "chat", False, id="prose-6000-words-then-short-whole"),
    pytest.param("table", "chat", True, id="table-6000-words-then-short-stream"),
    pytest.param("code", "completion", False, id="code-6000-words-completion-then-short-whole"),
    pytest.param("prose", "completion", True, id="prose-6000-words-completion-then-short-stream"),
]


def _settle(gateway: RunningGateway) -> None:
    """Let the long request's leftover filter work drain before the next case."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = send(gateway.url, "chat", body_for("chat", "ping"), stream=False, timeout=30)
        if probe.finishes == {0: "stop"}:
            return
        time.sleep(0.5)


@pytest.mark.parametrize("long_name, long_kind, stream", CASES)
def test_short_request_is_answered_beside_a_long_prompt(
    gateway: RunningGateway, upstream: ScriptedUpstream, long_name: str, long_kind: str,
    stream: bool,
) -> None:
    replies: dict[str, Reply] = {}

    def long_request() -> None:
        replies["long"] = send(gateway.url, long_kind, body_for(long_kind, LONG_PROMPTS[long_name]),
                               stream=False, timeout=120)

    with upstream.play(text=ANSWER):
        worker = threading.Thread(target=long_request)
        worker.start()
        try:
            time.sleep(0.5)
            short = send(gateway.url, "chat", body_for("chat", QUESTION), stream=stream,
                         timeout=60)
        finally:
            worker.join(timeout=120)
    _settle(gateway)
    assert short.status == 200, short.describe()
    assert short.finishes == {0: "stop"}, f"the short request was refused: {short.describe()}"
    assert short.text == ANSWER, short.describe()
