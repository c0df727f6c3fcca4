"""The filter pool is shared fairly: one request's filter work cannot starve another's.

The pool on its own (scripted jobs, no models): turns go round-robin between requests, one
unit at a time; one request never runs two units at once; a job over its own work budget, or
queued past its wait budget, fails for its request only. Then the starvation case through a
real gateway with the shipped policies: a 6,000-word benign prompt, and 0.5 s later another
client's short question, which must be answered (not refused).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.filter_pool import BudgetExceeded, FilterPool
from tests.conftest import POLICIES
from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway


def units(n: int, seconds: float, log: list[str], name: str) -> Generator[None, None, str]:
    for _ in range(n):
        time.sleep(seconds)
        log.append(name)
        yield
    return name


@pytest.fixture
def pool() -> Iterator[FilterPool]:
    p = FilterPool(1, work_budget_s=60, wait_budget_s=60)
    yield p
    p.shutdown()


def test_a_short_job_runs_after_one_unit_of_a_long_one_not_after_all_of_it(
    pool: FilterPool,
) -> None:
    log: list[str] = []

    arrived = 0

    async def main() -> None:
        nonlocal arrived
        long = asyncio.create_task(pool.run(units, 100, 0.01, log, "long", lane="a"))
        await asyncio.sleep(0.1)
        arrived = len(log)
        assert await pool.run(units, 1, 0.0, log, "short", lane="b") == "short"
        assert not long.done()
        await long

    asyncio.run(main())
    assert log.count("long") == 100
    # The short job ran as soon as the unit in progress when it arrived was done.
    assert log.index("short") <= arrived + 1


def test_turns_go_round_robin_between_requests(pool: FilterPool) -> None:
    log: list[str] = []

    async def main() -> None:
        blocker = asyncio.create_task(pool.run(units, 1, 0.2, log, "x", lane="x"))
        await asyncio.sleep(0.05)  # while x runs, three requests queue their work
        jobs = [pool.run(units, 3, 0.0, log, name, lane=name) for name in "abc"]
        await asyncio.gather(blocker, *jobs)

    asyncio.run(main())
    assert log == ["x", "a", "b", "c", "a", "b", "c", "a", "b", "c"]


def test_one_request_runs_one_unit_at_a_time_even_with_threads_free() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def tracked() -> Generator[None, None, None]:
        nonlocal running, most
        for _ in range(5):
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.01)
            with lock:
                running -= 1
            yield

    p = FilterPool(4, work_budget_s=60, wait_budget_s=60)
    try:

        async def main() -> None:
            await asyncio.gather(*(p.run(tracked, lane="one") for _ in range(4)))

        asyncio.run(main())
    finally:
        p.shutdown()
    assert most == 1


def test_a_job_over_its_work_budget_fails_alone_and_others_are_served() -> None:
    p = FilterPool(2, work_budget_s=60, wait_budget_s=60)
    log: list[str] = []
    try:

        async def main() -> tuple[object, object]:
            slow = p.run(units, 1, 1.0, log, "slow", lane="slow", work_budget_s=0.2)
            quick = p.run(units, 2, 0.01, log, "quick", lane="quick", work_budget_s=0.2)
            results = await asyncio.gather(slow, quick, return_exceptions=True)
            return results[0], results[1]

        started = time.monotonic()
        slow, quick = asyncio.run(main())
        elapsed = time.monotonic() - started
    finally:
        p.shutdown()
    assert isinstance(slow, BudgetExceeded) and slow.budget == "work"
    assert quick == "quick"
    assert elapsed < 0.9  # the refusal came at the budget, not when the slow unit ended


def test_a_job_that_waits_past_its_wait_budget_fails(pool: FilterPool) -> None:
    log: list[str] = []

    async def main() -> None:
        busy = asyncio.create_task(pool.run(units, 1, 0.5, log, "busy", lane="a"))
        await asyncio.sleep(0.05)
        with pytest.raises(BudgetExceeded) as caught:
            await pool.run(units, 1, 0.0, log, "late", lane="b", wait_budget_s=0.1)
        assert caught.value.budget == "wait"
        await busy

    asyncio.run(main())
    assert log == ["busy"]  # the late job was dropped, never run


def test_a_cancelled_request_drops_its_queued_units(pool: FilterPool) -> None:
    log: list[str] = []
    closed = threading.Event()

    def watched() -> Generator[None, None, None]:
        try:
            yield from units(50, 0.01, log, "gone")
        finally:
            closed.set()

    async def main() -> None:
        task = asyncio.create_task(pool.run(watched, lane="a"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)

    asyncio.run(main())
    assert closed.wait(2)
    assert 0 < log.count("gone") < 50


def test_a_filter_error_reaches_its_caller(pool: FilterPool) -> None:
    def broken() -> Generator[None, None, None]:
        yield
        raise ValueError("scripted")

    async def main() -> None:
        with pytest.raises(ValueError, match="scripted"):
            await pool.run(broken, lane="a")
        assert await pool.run(lambda: 7) == 7  # plain functions are one unit

    asyncio.run(main())


# -- the starvation case, through a real gateway ---------------------------------------------
VOCAB = str.split(
    "the a of river mountain recipe bake flour sugar butter oven minutes stir bowl gently "
    "until golden brown serve warm with fresh cream and berries garden tomato basil kitchen "
    "table window morning coffee bread salt pepper lemon walk bridge harbour boat"
)
SHORT = "What is the capital of France?"
SHORT_ANSWER = "The capital of France is Paris."


def long_prompt(n_words: int = 6000, seed: int = 0) -> str:
    rng = random.Random(seed)
    sentences, count = [], 0
    while count < n_words:
        k = rng.randint(5, 25)
        count += k
        sentences.append(" ".join(rng.choice(VOCAB) for _ in range(k)).capitalize() + ".")
    return " ".join(sentences)


@pytest.fixture(scope="module")
def shipped_gateway(fake_upstream: FakeUpstream) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, policies=POLICIES) as gw:
        yield gw


def _ask(gw: RunningGateway, content: str, answer: str) -> tuple[httpx.Response, float]:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": content}]}
    body.update(script(text=answer))
    started = time.monotonic()
    response = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=120)
    return response, time.monotonic() - started


def test_a_short_question_is_answered_while_a_long_prompt_is_being_screened(
    shipped_gateway: RunningGateway,
) -> None:
    with ThreadPoolExecutor(2) as clients:
        long = clients.submit(_ask, shipped_gateway, long_prompt(), "Here is a summary.")
        time.sleep(0.5)
        short = clients.submit(_ask, shipped_gateway, SHORT, SHORT_ANSWER)
        (short_response, short_s), (long_response, long_s) = short.result(), long.result()
    print(
        f"\nstarvation case: short question {short_s * 1000:.0f} ms "
        f"(HTTP {short_response.status_code}); 6,000-word prompt {long_s * 1000:.0f} ms "
        f"(HTTP {long_response.status_code})"
    )
    assert short_response.status_code == 200, short_response.text
    choice = short_response.json()["choices"][0]
    assert choice["finish_reason"] != "content_filter"
    assert choice["message"]["content"] == SHORT_ANSWER
