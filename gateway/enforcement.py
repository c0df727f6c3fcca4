"""Applying the live policies to one request: which the engine enforces (routing), input
screening, request patch, output guards.

The gateway knows filters only through filters.base: check(), open_stream(), patch_request().
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from decoding import POLICIES_ARG
from filters import (
    Action,
    FilterResult,
    RequestPatcher,
    ScanResult,
    Span,
    StreamScanner,
    TextFilter,
)
from filters.base import Steps, held_size, merge_spans, run_steps
from gateway import limits, request_text
from gateway.audit import AuditLog, Decision
from gateway.decode import wants_decode
from gateway.errors import content_filter_error
from gateway.filter_pool import BudgetExceeded
from gateway.policy.loading import BoundFilter, LoadedPolicy, PolicySet, PolicyTree
from gateway.request_text import REDACTED
from gateway.stages import (
    PASS_THROUGH,
    ChoiceGuard,
    PolicyStages,
    Refusal,
    Release,
    RequestContext,
)

log = logging.getLogger("lethe")


@dataclass
class Env:
    """What the enforcement needs from the running gateway."""

    metrics: Any
    audit: AuditLog
    run_blocking: Callable[..., Awaitable[Any]]
    filter_timeout_s: float
    max_holdback_chars: int
    #: The hold-back cap in raw characters (see _ChoiceGuard).
    max_holdback_raw_chars: int = 16384
    #: policy name -> upstream adapter name, for policies whose adapter is loaded.
    adapter_for: Callable[[str], str | None] = lambda name: None
    #: policy name -> "name@digest" when the engine's decoding processor enforces it.
    decode_for: Callable[[str], str | None] = lambda name: None


def activate(tree: PolicyTree, env: Env) -> PolicyStages:
    """The policy stages of a loaded tree: global policies for everyone, plus a tenant's own."""
    if not tree.global_set.policies and not tree.tenants:
        return PASS_THROUGH
    return _TenantAware(tree, env)


class _TenantAware:
    def __init__(self, tree: PolicyTree, env: Env) -> None:
        self._default = ActivePolicies([tree.global_set], env)
        self._tenants = {
            t: ActivePolicies([tree.global_set, s], env) for t, s in tree.tenants.items()
        }

    def begin(self, ctx: RequestContext) -> RequestEnforcement:
        return self._tenants.get(ctx.tenant, self._default).begin(ctx)


@dataclass(frozen=True)
class Routing:
    """Who enforces each policy on one request: the engine (a LoRA adapter, the decoding
    processor) or the gateway's filters."""

    #: The policies the gateway's filters enforce.
    suppressing: tuple[LoadedPolicy, ...]
    #: "name@digest" of the policies the engine's decoding processor enforces (gateway.decode).
    decoding: tuple[str, ...] = ()
    #: The LoRA adapter to send the request to instead of the requested model.
    adapter: str | None = None


def route(policies: list[LoadedPolicy], env: Env) -> Routing:
    """Modes: suppress filters; decode and unlearn hand a policy to the engine when it can
    enforce it, and both do both. An engine that cannot (no processor, another index version,
    no loaded adapter) leaves the policy to its filters: fail closed."""
    suppressing: list[LoadedPolicy] = []
    decoding: list[str] = []
    adapter: str | None = None
    for policy in policies:
        mode = policy.spec.mode
        if mode == "off":
            continue
        if mode in ("decode", "both") and wants_decode(policy.spec):
            tagged = env.decode_for(policy.spec.name)
            if tagged is not None:
                decoding.append(tagged)
                if mode == "decode":
                    continue
            elif mode == "decode":
                env.metrics.decode_fallbacks.labels(policy=policy.spec.name).inc()
        if mode in ("unlearn", "both") and adapter is None:
            # One adapter per request: the first policy's that is loaded.
            adapter = env.adapter_for(policy.spec.name)
            if adapter is not None and mode == "unlearn":
                continue
        suppressing.append(policy)
    return Routing(tuple(suppressing), tuple(decoding), adapter)


class ActivePolicies:
    """A policy set bound to the running gateway; `begin` starts one request's enforcement."""

    def __init__(self, sets: list[PolicySet], env: Env) -> None:
        self.policies = [p for s in sets for p in s.policies]
        self.env = env

    def begin(self, ctx: RequestContext) -> RequestEnforcement:
        routing = route(self.policies, self.env)
        if routing.adapter is not None:
            ctx.upstream_model = routing.adapter
        return RequestEnforcement(ctx, routing, self.env)


@dataclass(frozen=True)
class Checker:
    """One text filter of one policy, as a request runs it."""

    policy: LoadedPolicy
    bound: BoundFilter
    filter: TextFilter


@dataclass(frozen=True)
class Hit:
    checker: Checker
    result: FilterResult
    #: What the policy does about it: block, refuse, or redact (only with spans to redact).
    action: str


def _checkers(policies: list[LoadedPolicy], stage: str | None) -> list[Checker]:
    """The text filters of `policies` on `stage` (None: on any stage)."""
    return [
        Checker(p, b, b.filter)
        for p in policies
        for b in p.filters
        if isinstance(b.filter, TextFilter) and (b.stages if stage is None else stage in b.stages)
    ]


def _effective_action(bound_action: str, result: FilterResult) -> str:
    if bound_action == "redact":
        return "redact" if result.action is Action.REDACT and result.spans else "block"
    return bound_action


T = TypeVar("T")


class Judge:
    """Runs one request's text filters: model work in the fair pool (one lane per request),
    failures closed or open as their policy says, every hit recorded (audit, metrics)."""

    def __init__(self, ctx: RequestContext, env: Env) -> None:
        self.ctx = ctx
        self.env = env

    async def check(self, checkers: list[Checker], stage: str, text: str) -> list[Hit]:
        results = await asyncio.gather(
            *(self._run(c, stage, c.filter.check_steps, (text,), _failed) for c in checkers)
        )
        return self._hits(checkers, results, stage, text)

    async def scan(
        self, scanners: list[tuple[Checker, StreamScanner]], raw: str, final: bool
    ) -> tuple[list[Hit], int]:
        """The hits on the stream so far, and the offset every scanner calls stable."""
        scans = await asyncio.gather(
            *(self._run(c, "output", s.scan_steps, (raw, final), _failed_scan) for c, s in scanners)
        )
        checkers = [c for c, _ in scanners]
        hits = self._hits(checkers, [r.result if r else None for r in scans], "output", raw)
        stable = min((r.stable for r in scans if r is not None), default=len(raw))
        return hits, stable

    def _hits(
        self, checkers: list[Checker], results: list[FilterResult | None], stage: str, text: str
    ) -> list[Hit]:
        hits = [
            Hit(c, r, _effective_action(c.bound.action, r))
            for c, r in zip(checkers, results, strict=True)
            if r is not None and r.hit
        ]
        for hit in hits:
            self._record(hit, stage, text)
        return hits

    async def _run(
        self,
        checker: Checker,
        stage: str,
        work: Callable[..., Steps[T]],
        args: tuple[Any, ...],
        failed: Callable[[FilterResult], T],
    ) -> T | None:
        """`work(*args)`; a failure is `failed(block)` (fail closed), or None (fail open)."""
        policy, bound = checker.policy, checker.bound
        started = time.perf_counter()
        try:
            if checker.filter.blocking:
                # One lane per request in the fair pool: its budget is its own (filter_pool).
                out: T = await self.env.run_blocking(
                    work, *args, lane=self, work_budget_s=self.env.filter_timeout_s
                )
                return out
            return run_steps(work(*args))
        except Exception as exc:
            name = type(exc).__name__
            if isinstance(exc, BudgetExceeded):
                self.env.metrics.filter_overruns.labels(budget=exc.budget).inc()
            if policy.spec.fail_open:
                self.env.metrics.fail_open.labels(policy=policy.spec.name, filter=bound.type).inc()
                log.critical(
                    "filter %s of policy %s failed (%s): FAIL-OPEN bypass, request=%s",
                    bound.type,
                    policy.spec.name,
                    name,
                    self.ctx.request_id,
                )
                return None
            log.error(
                "filter %s of policy %s failed (%s): failing closed, request=%s",
                bound.type,
                policy.spec.name,
                name,
                self.ctx.request_id,
            )
            reason = f"{bound.type} failed ({name}): fail closed"
            return failed(FilterResult(Action.BLOCK, 1.0, reason))
        finally:
            self.env.metrics.filter_duration.labels(filter=bound.type, stage=stage).observe(
                time.perf_counter() - started
            )

    def _record(self, hit: Hit, stage: str, text: str) -> None:
        policy, bound = hit.checker.policy, hit.checker.bound
        decision = Decision(
            self.ctx.request_id,
            self.ctx.tenant,
            policy.spec.name,
            bound.type,
            stage,
            hit.action,
            hit.result.score,
            hit.result.reason,
        )
        self.env.audit.write(decision.line(hit.result, text, self.env.audit.key))
        self.env.metrics.decisions.labels(
            policy=policy.spec.name, stage=stage, filter=bound.type, action=hit.action
        ).inc()


def _failed(result: FilterResult) -> FilterResult:
    return result


def _failed_scan(result: FilterResult) -> ScanResult:
    # A block ends the choice whatever the offset says.
    return ScanResult(result, 0)


class RequestEnforcement:
    def __init__(self, ctx: RequestContext, routing: Routing, env: Env) -> None:
        self.ctx = ctx
        self.env = env
        self.judge = Judge(ctx, env)
        self.suppressing = list(routing.suppressing)
        self.decoding = list(routing.decoding)
        self._output = _checkers(self.suppressing, "output")
        self._patchers = [
            b.filter
            for p in self.suppressing
            for b in p.filters
            if "output" in b.stages and isinstance(b.filter, RequestPatcher)
        ]

    @property
    def output_active(self) -> bool:
        # Token bans count: what they ban must not come back through logprobs or tools either.
        return bool(self._output or self._patchers)

    # -- input stage -------------------------------------------------------------------
    async def input_stage(self, body: dict[str, Any]) -> None:
        if not self.suppressing:
            return
        # The allow-list: what no filter could screen is refused before any filter runs.
        text = request_text.read(body, self.ctx.kind)
        checkers = _checkers(self.suppressing, "input")
        # Steering text never shows in the output, so output filters screen it too.
        every = _checkers(self.suppressing, None)
        for steering in text.screened_as_steering():
            for piece in steering.pieces():
                if await self.judge.check(every, "input", piece):
                    raise steering.refusal()
        if not checkers or text.echo:
            return  # an echoed prompt has just passed every filter untouched
        if not text.screenable:
            raise request_text.unscreenable_prompt()
        joined, starts = request_text.join([s.get() for s in text.prompt])
        hits = await self.judge.check(checkers, "input", joined)
        final = [h for h in hits if h.action != "redact"]
        if final:
            refuse = next((h for h in final if h.action == "refuse"), None)
            if refuse is not None and len(final) == len([h for h in final if h.action == "refuse"]):
                raise Refusal(refuse.checker.policy.spec.message)
            raise content_filter_error("The request was blocked by the gateway's content policy.")
        spans = sorted({s for h in hits for s in h.result.spans}, key=lambda s: s.start)
        if spans:
            request_text.redact(text.prompt, starts, spans)

    def patch_request(self, body: dict[str, Any]) -> None:
        for patcher in self._patchers:
            patcher.patch_request(body)
        if self.decoding:
            # After the input stage (which refuses client vllm_xargs while filters run): no
            # client key can name, drop or replace the policies the engine enforces.
            xargs = body.get("vllm_xargs")
            xargs = dict(xargs) if isinstance(xargs, dict) else {}
            for key in [k for k in xargs if str(k).startswith("lethe_")]:
                del xargs[key]
            xargs[POLICIES_ARG] = list(self.decoding)
            body["vllm_xargs"] = xargs
            # Logprobs are taken before logits processors run: they would show the masked
            # protected token at each step.
            for name in limits.OUTPUT_CHANNELS:
                body.pop(name, None)

    # -- output stage ------------------------------------------------------------------
    def choice_guard(self, index: int) -> ChoiceGuard:
        scanners = [(c, c.filter.open_stream()) for c in self._output]
        return _ChoiceGuard(self.judge, scanners)

    async def check_output(self, text: str) -> Release:
        hits = await self.judge.check(self._output, "output", text)
        blocking = [h for h in hits if h.action != "redact"]
        if blocking:
            return _blocked(blocking)
        spans = merge_spans([s for h in hits for s in h.result.spans])
        return Release(_render(text, 0, len(text), spans)) if spans else Release(text)


def _blocked(hits: list[Hit]) -> Release:
    refuse = next((h for h in hits if h.action == "refuse"), None)
    message = refuse.checker.policy.spec.message if refuse else ""
    return Release("", blocked=True, replacement=message)


class _ChoiceGuard:
    """Per-choice state of a stream: the raw text, what was released, spans to redact.

    Text is released only up to the point every scanner calls stable. The hold-back cap never
    releases anything: when the text still held after a step weighs more than the cap, as the
    filters see it (`held_size`: folded words and single spaces, so padding with spaces,
    zero-width characters or hyphens costs nothing), or more than `max_holdback_raw_chars` raw
    characters (which bounds its memory), the choice ends with `content_filter`; what every
    scanner cleared is sent first. The cap is the largest of the output policies' own
    `stream.holdback_chars`, or the gateway's `max_holdback_chars`.
    """

    def __init__(self, judge: Judge, scanners: list[tuple[Checker, StreamScanner]]) -> None:
        self.judge = judge
        self.scanners = scanners
        env = judge.env
        self.cap = max(
            (c.policy.spec.stream.holdback_chars or env.max_holdback_chars for c, _ in scanners),
            default=env.max_holdback_chars,
        )
        self.raw_cap = max(env.max_holdback_raw_chars, self.cap)
        self.raw = ""
        self.released = 0
        self.redactions: tuple[Span, ...] = ()
        self.arrivals: list[tuple[int, float]] = []

    async def feed(self, text: str, final: bool) -> Release:
        self.raw += text
        raw = self.raw
        now = time.perf_counter()
        if text:
            self.arrivals.append((len(raw), now))
        hits, stable = await self.judge.scan(self.scanners, raw, final)
        if any(h.action != "redact" for h in hits) or any(
            s.start < self.released for h in hits for s in h.result.spans
        ):
            return _blocked([h for h in hits if h.action != "redact"] or hits)
        found = [s for h in hits for s in h.result.spans]
        self.redactions = merge_spans([*self.redactions, *found])
        stable = len(raw) if final else max(stable, self.released)
        for span in self.redactions:
            if span.start < stable < span.end:
                stable = span.start
        out = _render(raw, self.released, stable, self.redactions) if stable > self.released else ""
        self.released = max(self.released, stable)
        metrics = self.judge.env.metrics
        over = None if final else self._over_cap(raw[self.released :])
        if over is not None:
            metrics.holdback_cap_blocks.labels(cap=over).inc()
            log.warning(
                "stream hold-back over the %s cap: choice ended with content_filter, request=%s",
                over,
                self.judge.ctx.request_id,
            )
            return Release(out, blocked=True)
        metrics.holdback_chars.observe(len(raw) - self.released)
        while self.arrivals and self.arrivals[0][0] <= self.released:
            metrics.holdback_delay.observe(now - self.arrivals.pop(0)[1])
        return Release(out)

    def _over_cap(self, held: str) -> str | None:
        if len(held) > self.raw_cap:
            return "raw"
        if held_size(held) > self.cap:
            return "normalised"
        return None


def _render(raw: str, start: int, end: int, redactions: Sequence[Span]) -> str:
    out = []
    pos = start
    for span in redactions:
        if span.end <= start or span.start >= end:
            continue
        if span.start > pos:
            out.append(raw[pos : span.start])
        if span.start >= start:
            out.append(REDACTED)
        pos = max(pos, span.end)
    if pos < end:
        out.append(raw[pos:end])
    return "".join(out)
