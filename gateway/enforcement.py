"""Applying a loaded policy set to one request: input screening, request patch, output guards.

The gateway knows filters only through filters.base: check(), open_stream(), patch_request().
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import filters
from decoding import POLICIES_ARG
from filters import Action, Filter, FilterResult, PolicyData, Span, StreamScanner
from filters.base import held_size, run_steps
from gateway import limits, request_text
from gateway.audit import AuditLog, Decision
from gateway.decode import wants_decode
from gateway.errors import content_filter_error
from gateway.filter_pool import BudgetExceeded
from gateway.policy import (
    PolicyError,
    PolicyFile,
    PolicySpec,
    filter_options_error,
    set_digest,
)
from gateway.request_text import REDACTED
from gateway.stages import ChoiceGuard, Release, RequestContext

log = logging.getLogger("lethe")



@dataclass(frozen=True)
class BoundFilter:
    type: str
    filter: Filter
    stages: frozenset[str]
    action: str


@dataclass(frozen=True)
class LoadedPolicy:
    spec: PolicySpec
    path: Path
    filters: tuple[BoundFilter, ...]

    def for_stage(self, stage: str) -> list[BoundFilter]:
        return [b for b in self.filters if stage in b.stages]


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[LoadedPolicy, ...]
    digest: str

    @property
    def names(self) -> list[str]:
        return [p.spec.name for p in self.policies]


class Refusal(Exception):
    """The input stage refused with an operator message: answered as a normal completion."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _read_lines(base: Path, name: str | None) -> list[str]:
    if not name:
        return []
    path = (base / name).resolve()
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise PolicyError(f"{base}: data file {name}: {exc.strerror}") from exc


def policy_data(pf: PolicyFile) -> PolicyData:
    spec, base = pf.spec, pf.path.parent
    corpus = ""
    if spec.data.corpus_file:
        try:
            corpus = (base / spec.data.corpus_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(
                f"{pf.path}: field data.corpus_file: {spec.data.corpus_file}: {exc.strerror}"
            ) from exc
    pii = spec.data.pii.model_dump(exclude_none=True) if spec.data.pii else None
    return PolicyData(
        name=spec.name,
        exemplars=tuple(spec.data.exemplars + _read_lines(base, spec.data.exemplars_file)),
        corpus=corpus,
        literals=tuple(spec.data.literals),
        pii=pii,
        near_misses=tuple(spec.data.near_misses + _read_lines(base, spec.data.near_misses_file)),
        base_dir=base,
    )


def build_policy_set(
    files: list[PolicyFile], resources: Any, *, max_holdback_chars: int
) -> PolicySet:
    loaded = []
    for pf in files:
        data = policy_data(pf)
        bound = []
        for i, fs in enumerate(pf.spec.filters):
            where = f"{pf.path}: field filters.{i}"
            try:
                cls = filters.get(fs.type)
            except KeyError as exc:
                raise PolicyError(f"{where}.type: {exc.args[0]}") from exc
            try:
                options = cls.Options.model_validate(fs.options())
            except ValidationError as exc:
                raise filter_options_error(pf, i, exc) from exc
            try:
                flt = cls.from_policy(data, resources, options)
            except PolicyError:
                raise
            except Exception as exc:
                raise PolicyError(f"{where} ({fs.type}): cannot build: {exc}") from exc
            holdback = pf.spec.stream.holdback_chars or max_holdback_chars
            if flt.holdback_chars() > holdback:
                raise PolicyError(
                    f"{where} ({fs.type}): needs {flt.holdback_chars()} characters of hold-back, "
                    f"more than the {holdback} allowed"
                )
            stages = frozenset(fs.stages or pf.spec.stages) & frozenset(pf.spec.stages)
            bound.append(BoundFilter(fs.type, flt, stages, fs.action or pf.spec.action))
        loaded.append(LoadedPolicy(pf.spec, pf.path, tuple(bound)))
    return PolicySet(tuple(loaded), set_digest(files))


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


def _effective_action(bound_action: str, result: FilterResult) -> str:
    if bound_action == "redact":
        return "redact" if result.action is Action.REDACT and result.spans else "block"
    return bound_action


class ActivePolicies:
    """A policy set bound to the running gateway; `begin` starts one request's enforcement."""

    def __init__(self, sets: list[PolicySet], env: Env) -> None:
        self.sets = sets
        self.env = env

    def begin(self, ctx: RequestContext) -> RequestEnforcement:
        return RequestEnforcement(ctx, [p for s in self.sets for p in s.policies], self.env)


@dataclass
class _Hit:
    policy: LoadedPolicy
    bound: BoundFilter
    result: FilterResult
    action: str


class RequestEnforcement:
    def __init__(self, ctx: RequestContext, policies: list[LoadedPolicy], env: Env) -> None:
        self.ctx = ctx
        self.env = env
        self.suppressing: list[LoadedPolicy] = []
        #: "name@digest" of the policies the engine enforces while decoding (gateway.decode).
        self.decoding: list[str] = []
        for policy in policies:
            mode = policy.spec.mode
            if mode == "off":
                continue
            if mode in ("decode", "both") and wants_decode(policy.spec):
                tagged = env.decode_for(policy.spec.name)
                if tagged is not None:
                    self.decoding.append(tagged)
                    if mode == "decode":
                        continue
                elif mode == "decode":
                    # No processor or another version in the engine: fail closed, filter.
                    env.metrics.decode_fallbacks.labels(policy=policy.spec.name).inc()
            if mode in ("unlearn", "both") and ctx.upstream_model is None:
                adapter = env.adapter_for(policy.spec.name)
                if adapter is not None:
                    ctx.upstream_model = adapter
                    if mode == "unlearn":
                        continue
            # suppress, both, and unlearn without a usable adapter (fail closed) all filter.
            self.suppressing.append(policy)
        self._output = [(p, b) for p in self.suppressing for b in p.for_stage("output")]

    @property
    def output_active(self) -> bool:
        return bool(self._output)

    # -- running filters ---------------------------------------------------------------
    async def _run(
        self,
        policy: LoadedPolicy,
        bound: BoundFilter,
        stage: str,
        fn: Callable[..., Any],
        *args: Any,
    ) -> Any:
        started = time.perf_counter()
        try:
            if bound.filter.blocking:
                # One lane per request in the fair pool: its budget is its own (filter_pool).
                return await self.env.run_blocking(
                    fn, *args, lane=self, work_budget_s=self.env.filter_timeout_s
                )
            out = fn(*args)
            return run_steps(out) if isinstance(out, Generator) else out
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
            return FilterResult(Action.BLOCK, 1.0, f"{bound.type} failed ({name}): fail closed")
        finally:
            self.env.metrics.filter_duration.labels(filter=bound.type, stage=stage).observe(
                time.perf_counter() - started
            )

    def _record(self, hit: _Hit, stage: str, text: str) -> None:
        decision = Decision(
            self.ctx.request_id,
            self.ctx.tenant,
            hit.policy.spec.name,
            hit.bound.type,
            stage,
            hit.action,
            hit.result.score,
            hit.result.reason,
        )
        self.env.audit.write(decision.line(hit.result, text, self.env.audit.key))
        self.env.metrics.decisions.labels(
            policy=hit.policy.spec.name, stage=stage, filter=hit.bound.type, action=hit.action
        ).inc()

    def _hits(
        self, pairs: list[tuple[LoadedPolicy, BoundFilter]], results: list[Any]
    ) -> list[_Hit]:
        hits = []
        for (policy, bound), res in zip(pairs, results, strict=True):
            result = res.result if hasattr(res, "stable") else res
            if result is not None and result.hit:
                hits.append(_Hit(policy, bound, result, _effective_action(bound.action, result)))
        return hits

    # -- input stage -------------------------------------------------------------------
    async def input_stage(self, body: dict[str, Any]) -> None:
        if not self.suppressing:
            return
        # The allow-list: what no filter could screen is refused before any filter runs.
        text = request_text.read(body, self.ctx.kind)
        pairs = [(p, b) for p in self.suppressing for b in p.for_stage("input")]
        # Steering text never shows in the output, so output filters screen it too.
        every = [(p, b) for p in self.suppressing for b in p.filters if b.stages]

        async def screen(on: list[tuple[LoadedPolicy, BoundFilter]], joined: str) -> list[_Hit]:
            results = await asyncio.gather(
                *(self._run(p, b, "input", b.filter.check_steps, joined) for p, b in on)
            )
            hits = self._hits(on, list(results))
            for hit in hits:
                self._record(hit, "input", joined)
            return hits

        for steering in text.screened_as_steering():
            if await screen(every, steering.joined):
                raise steering.refusal()
        if not pairs or text.echo:
            return  # an echoed prompt has just passed every filter untouched
        if not text.screenable:
            raise request_text.unscreenable_prompt()
        joined, starts = request_text.join([s.get() for s in text.prompt])
        hits = await screen(pairs, joined)
        final = [h for h in hits if h.action != "redact"]
        if final:
            refuse = next((h for h in final if h.action == "refuse"), None)
            if refuse is not None and len(final) == len([h for h in final if h.action == "refuse"]):
                raise Refusal(refuse.policy.spec.message)
            raise content_filter_error("The request was blocked by the gateway's content policy.")
        spans = sorted({s for h in hits for s in h.result.spans}, key=lambda s: s.start)
        if spans:
            request_text.redact(text.prompt, starts, spans)

    def patch_request(self, body: dict[str, Any]) -> None:
        for _, bound in self._output:
            bound.filter.patch_request(body)
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
        return _ChoiceGuard(self, [(p, b, b.filter.open_stream()) for p, b in self._output])

    async def check_output(self, text: str) -> Release:
        results = await asyncio.gather(
            *(self._run(p, b, "output", b.filter.check_steps, text) for p, b in self._output)
        )
        hits = self._hits(self._output, list(results))
        for hit in hits:
            self._record(hit, "output", text)
        blocking = [h for h in hits if h.action != "redact"]
        if blocking:
            return _blocked(blocking)
        spans = _merge([s for h in hits for s in h.result.spans])
        return Release(_render(text, 0, len(text), spans)) if spans else Release(text)


def _blocked(hits: list[_Hit]) -> Release:
    refuse = next((h for h in hits if h.action == "refuse"), None)
    return Release("", blocked=True, replacement=refuse.policy.spec.message if refuse else "")


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

    def __init__(
        self,
        req: RequestEnforcement,
        scanners: list[tuple[LoadedPolicy, BoundFilter, StreamScanner]],
    ) -> None:
        self.req = req
        self.scanners = scanners
        env = req.env
        self.cap = max(
            (p.spec.stream.holdback_chars or env.max_holdback_chars for p, _, _ in scanners),
            default=env.max_holdback_chars,
        )
        self.raw_cap = max(env.max_holdback_raw_chars, self.cap)
        self.raw = ""
        self.released = 0
        self.redactions: list[Span] = []
        self.arrivals: list[tuple[int, float]] = []

    async def feed(self, text: str, final: bool) -> Release:
        self.raw += text
        raw = self.raw
        now = time.perf_counter()
        if text:
            self.arrivals.append((len(raw), now))
        results = await asyncio.gather(
            *(self.req._run(p, b, "output", s.scan_steps, raw, final) for p, b, s in self.scanners)
        )
        pairs = [(p, b) for p, b, _ in self.scanners]
        hits = self.req._hits(pairs, list(results))
        for hit in hits:
            self.req._record(hit, "output", raw)
        if any(h.action != "redact" for h in hits) or any(
            s.start < self.released for h in hits for s in h.result.spans
        ):
            return _blocked([h for h in hits if h.action != "redact"] or hits)
        self.redactions = _merge(self.redactions + [s for h in hits for s in h.result.spans])
        stable = len(raw)
        if not final:
            stables = [r.stable for r in results if r is not None and hasattr(r, "stable")]
            stable = max(min(stables, default=len(raw)), self.released)
        for span in self.redactions:
            if span.start < stable < span.end:
                stable = span.start
        out = _render(raw, self.released, stable, self.redactions) if stable > self.released else ""
        self.released = max(self.released, stable)
        metrics = self.req.env.metrics
        over = None if final else self._over_cap(raw[self.released :])
        if over is not None:
            metrics.holdback_cap_blocks.labels(cap=over).inc()
            log.warning(
                "stream hold-back over the %s cap: choice ended with content_filter, request=%s",
                over,
                self.req.ctx.request_id,
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


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if merged and span.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Span(last.start, max(last.end, span.end))
        else:
            merged.append(span)
    return merged


def _render(raw: str, start: int, end: int, redactions: list[Span]) -> str:
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
