"""The filter pool: a few threads, shared fairly by every request's filter work.

Filter work comes in units (`filters.base.Steps`: a windowed filter's check is one encoder
batch of at most 32 windows per unit). Each request has its own lane, a queue of its jobs,
and the threads serve the lanes round-robin, one unit at a time: a request waiting for one
unit waits for at most one unit of each other busy lane, however much work the others have
queued. A 6,000-word prompt is a few hundred units; a short question arriving behind it runs
after the unit in progress, not after the prompt.

One lane runs one unit at a time: the filters of one request share their window encodings
through the encoder's cache, and running them side by side would encode each window twice.

Budgets, per job (one filter's check or one stream scan), fail closed:
- `work_budget_s`: time the job's own units may run (the `filter_timeout_s` setting). Other
  requests' work never counts against it, so a request is refused for being expensive, not
  for arriving while someone else's was;
- `wait_budget_s`: time the job may spend queued (`filter_queue_timeout_s`): with fair
  turns only a pool overloaded by many requests at once gets there, and the jobs with the
  most units, which wait for the most turns, get there first.
A job over either budget raises `BudgetExceeded` to its own request only; its queued units
are dropped, and a unit already running ends on its own (a thread cannot be interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator
from typing import Any

_IDLE = 0
_QUEUED = 1
_RUNNING = 2
_DONE = 3


class BudgetExceeded(TimeoutError):
    def __init__(self, budget: str, seconds: float) -> None:
        super().__init__(f"filter {budget} budget of {seconds:g}s exceeded")
        self.budget = budget  # "work" or "wait"


class _Job:
    __slots__ = ("call", "done", "gen", "lane", "since", "state", "wait", "work")

    def __init__(self, call: Callable[[], Any], lane: object, done: Callable[..., None]) -> None:
        self.call = call
        self.gen: Generator[Any, None, Any] | None = None
        self.lane = lane
        self.state = _IDLE
        self.since = 0.0  # when the current state began
        self.work = 0.0  # seconds run so far
        self.wait = 0.0  # seconds queued so far
        self.done = done  # (result, error) -> None, called once from a worker thread

    def spent(self, now: float) -> tuple[float, float]:
        work, wait = self.work, self.wait
        if self.state == _RUNNING:
            work += now - self.since
        elif self.state == _QUEUED:
            wait += now - self.since
        return work, wait


class FilterPool:
    def __init__(
        self,
        threads: int,
        *,
        work_budget_s: float,
        wait_budget_s: float,
        name: str = "lethe-filter",
    ) -> None:
        self.work_budget_s = work_budget_s
        self.wait_budget_s = wait_budget_s
        self._cv = threading.Condition()
        self._lanes: OrderedDict[object, deque[_Job]] = OrderedDict()  # round-robin order
        self._busy: set[object] = set()
        self._closed = False
        self.units = 0  # units run, for tests and benchmarks
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    async def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        lane: object = None,
        work_budget_s: float | None = None,
        wait_budget_s: float | None = None,
    ) -> Any:
        """`fn(*args)` on a pool thread, in `lane`'s turns; a generator it returns is run one
        unit per turn and its return value is the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        def done(result: Any, error: BaseException | None) -> None:
            # RuntimeError: the loop closed while the unit ran; nobody waits for it any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, error)

        job = _Job(lambda: fn(*args), lane if lane is not None else object(), done)
        work_budget = self.work_budget_s if work_budget_s is None else work_budget_s
        wait_budget = self.wait_budget_s if wait_budget_s is None else wait_budget_s
        self._enqueue(job)
        try:
            while True:
                with self._cv:
                    work, wait = job.spent(time.monotonic())
                if work >= work_budget:
                    raise BudgetExceeded("work", work_budget)
                if wait >= wait_budget:
                    raise BudgetExceeded("wait", wait_budget)
                # Only one of the two clocks runs at a time: wake when the sooner could expire.
                timeout = min(work_budget - work, wait_budget - wait)
                finished, _ = await asyncio.wait({future}, timeout=timeout)
                if finished:
                    return future.result()
        finally:
            if not future.done():
                self._cancel(job)

    def shutdown(self) -> None:
        with self._cv:
            self._closed = True
            jobs = [job for queue in self._lanes.values() for job in queue]
            self._lanes.clear()
            self._cv.notify_all()
        for job in jobs:
            _close(job)

    # -- internals ---------------------------------------------------------------------
    def _enqueue(self, job: _Job) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("filter pool is shut down")
            job.state, job.since = _QUEUED, time.monotonic()
            self._lanes.setdefault(job.lane, deque()).append(job)
            self._cv.notify()

    def _cancel(self, job: _Job) -> None:
        with self._cv:
            queue = self._lanes.get(job.lane)
            queued = job.state == _QUEUED and queue is not None and job in queue
            if queued:
                assert queue is not None
                queue.remove(job)
                if not queue and job.lane not in self._busy:
                    del self._lanes[job.lane]
            job.state = _DONE  # a running unit sees this when it returns
        if queued:
            _close(job)

    def _next(self) -> _Job | None:
        """The first job of the first lane in turn that is not running; caller holds the lock."""
        for lane, queue in self._lanes.items():
            if lane not in self._busy and queue:
                job = queue.popleft()
                self._busy.add(lane)
                now = time.monotonic()
                job.wait += now - job.since
                job.state, job.since = _RUNNING, now
                return job
        return None

    def _serve(self) -> None:
        while True:
            with self._cv:
                job = self._next()
                while job is None:
                    if self._closed:
                        return
                    self._cv.wait()
                    job = self._next()
            finished, result, error = self._unit(job)
            with self._cv:
                self.units += 1
                self._busy.discard(job.lane)
                now = time.monotonic()
                if job.state == _RUNNING:
                    job.work += now - job.since
                cancelled = job.state == _DONE
                if not finished and not cancelled:
                    # Back at the end of its lane, and the lane at the end of the turns: after
                    # every lane that queued work while this unit ran.
                    job.state, job.since = _QUEUED, now
                    self._lanes.setdefault(job.lane, deque()).append(job)
                    self._lanes.move_to_end(job.lane)
                else:
                    job.state = _DONE
                queue = self._lanes.get(job.lane)
                if queue is not None and not queue:
                    del self._lanes[job.lane]
                self._cv.notify()
            if cancelled:
                _close(job)
            elif finished:
                job.done(result, error)

    @staticmethod
    def _unit(job: _Job) -> tuple[bool, Any, BaseException | None]:
        """Run one unit: (finished, result, error)."""
        try:
            if job.gen is None:
                out = job.call()
                if not isinstance(out, Generator):
                    return True, out, None
                job.gen = out
            next(job.gen)
            return False, None, None
        except StopIteration as stop:
            return True, stop.value, None
        except Exception as exc:
            return True, None, exc


def _close(job: _Job) -> None:
    if job.gen is not None:
        with contextlib.suppress(Exception):
            job.gen.close()
