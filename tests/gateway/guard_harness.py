"""One request's output enforcement driven directly, without HTTP: the whole-answer check and
the stream guard of the same policies over the same text, on a real filter pool."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.audit import AuditLog
from gateway.enforcement import Env, RequestEnforcement, Routing
from gateway.filter_pool import FilterPool
from gateway.metrics import Metrics
from gateway.policy.loading import BoundFilter, LoadedPolicy
from gateway.stages import RequestContext


@dataclass(frozen=True)
class Outcome:
    blocked: bool
    text: str  # what the client got (for a blocked stream: what was sent before the end)


def output_only(policy: LoadedPolicy, bound: BoundFilter) -> LoadedPolicy:
    """`policy` reduced to one filter, enforced on output (input-only filters included)."""
    return replace(policy, filters=(replace(bound, stages=frozenset({"output"})),))


class Harness:
    def __init__(
        self,
        policies: list[LoadedPolicy],
        audit_path: Path,
        *,
        max_holdback_chars: int = 1024,
        max_holdback_raw_chars: int = 16384,
    ) -> None:
        self.policies = policies
        self.pool = FilterPool(2, work_budget_s=600, wait_budget_s=600)
        self.metrics = Metrics()
        self.env = Env(
            metrics=self.metrics,
            audit=AuditLog(str(audit_path)),
            run_blocking=self.pool.run,
            filter_timeout_s=600,
            max_holdback_chars=max_holdback_chars,
            max_holdback_raw_chars=max_holdback_raw_chars,
        )

    def request(self) -> RequestEnforcement:
        routing = Routing(suppressing=tuple(self.policies))
        return RequestEnforcement(RequestContext("harness", "chat"), routing, self.env)

    def whole(self, text: str) -> Outcome:
        release = asyncio.run(self.request().check_output(text))
        return Outcome(release.blocked, release.text)

    def stream(self, chunks: list[str]) -> Outcome:
        async def run() -> Outcome:
            guard = self.request().choice_guard(0)
            sent = []
            for i, chunk in enumerate(chunks):
                release = await guard.feed(chunk, final=i == len(chunks) - 1)
                sent.append(release.text)
                if release.blocked:
                    return Outcome(True, "".join(sent))
            return Outcome(False, "".join(sent))

        return asyncio.run(run())

    def close(self) -> None:
        self.pool.shutdown()
