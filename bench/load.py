"""Scenarios and the interleaved load that runs them against every target in one run."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import httpx
import orjson

from bench.client import Connection, Outcome, host_port

BENIGN_PROMPT = "Write two sentences about a quiet morning in a small river town."


@dataclass(frozen=True)
class Scenario:
    name: str
    targets: tuple[str, ...]
    stream: bool
    concurrency: int
    requests: int
    tokens: int = 16
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    upstream: str = "mock"
    model: str = "mock"
    kind: str = "chat"
    prompt: str = BENIGN_PROMPT
    #: At concurrency > 1 each target runs this many alternating bursts, so drift hits all.
    rounds: int = 3
    timeout_s: float = 60.0
    #: Request i gets its own prompt and (through `seed`, which the mock reads) its own
    #: answer, so filters are measured on text they have not seen, not on cache hits.
    distinct: bool = False
    #: > 0: the prompt is a retrieval-style benign prompt of this many words (bench.benign),
    #: another one per request when `distinct`.
    prompt_words: int = 0

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.kind == "chat" else "/v1/completions"

    def body(self, index: int = 0) -> bytes:
        # The load generator shares the 2 cores with what it measures: serialise once unless
        # each request must differ.
        return self._body(index) if self.distinct else self._fixed_body

    @cached_property
    def _fixed_body(self) -> bytes:
        return self._body(0)

    def _body(self, index: int) -> bytes:
        payload: dict[str, Any] = {"model": self.model, "max_tokens": self.tokens,
                                   "temperature": 0, "stream": self.stream}
        prompt = self.prompt
        if self.prompt_words:
            from bench.benign import benign_prompt

            prompt = benign_prompt(self.prompt_words, seed=index if self.distinct else 0)
        if self.distinct:
            prompt = f"{prompt} Request number {index}."
            payload["seed"] = index
        if self.kind == "chat":
            payload["messages"] = [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
        return orjson.dumps(payload)


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    chunk_delays_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    filtered: int = 0
    busy_s: float = 0.0
    completed: int = 0

    def add(self, outcome: Outcome) -> None:
        if not outcome.ok:
            self.errors.append(outcome.error or f"HTTP {outcome.status}")
            return
        self.completed += 1
        self.latencies_ms.append(outcome.latency_ms)
        if outcome.ttft_ms is not None:
            self.ttft_ms.append(outcome.ttft_ms)
        self.gaps_ms.extend(outcome.gaps_ms())
        self.chunk_delays_ms.extend(d / 1e6 for d in outcome.chunk_delays_ns)
        self.filtered += int(outcome.filtered)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _dist(values: list[float]) -> dict[str, float | None] | None:
    if not values:
        return None
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values),
        "n": float(len(values)),
    }


def summarise(samples: Samples) -> dict[str, Any]:
    return {
        "completed": samples.completed,
        "errors": len(samples.errors),
        "error_examples": sorted(set(samples.errors))[:3],
        "filtered": samples.filtered,
        "latency_ms": _dist(samples.latencies_ms),
        "ttft_ms": _dist(samples.ttft_ms),
        "inter_chunk_ms": _dist(samples.gaps_ms),
        "chunk_delay_ms": _dist(samples.chunk_delays_ms),
        "rps": samples.completed / samples.busy_s if samples.busy_s > 0 else None,
    }


def compare(results: dict[str, dict[str, Any]], baseline: str = "direct") -> None:
    """Add, to every target, what it adds over the baseline and the ratio to it; and, to
    `gateway-policies`, what it adds over the pass-through `gateway` of the same run (the cost
    of the filters alone) with that figure's p99 / p50."""
    base = results.get(baseline)
    if base is None:
        return
    policies, plain = results.get("gateway-policies"), results.get("gateway")
    if policies and plain and plain.get("latency_ms") and policies.get("latency_ms"):
        over = {q: policies["latency_ms"][q] - plain["latency_ms"][q]
                for q in ("p50", "p90", "p99", "mean")}
        over["p99_over_p50"] = over["p99"] / over["p50"] if over["p50"] > 0 else None
        policies["added_vs_gateway_ms"] = over
    for name, res in results.items():
        if name == baseline:
            continue
        added: dict[str, Any] = {}
        for metric in ("latency_ms", "ttft_ms", "inter_chunk_ms", "chunk_delay_ms"):
            mine, theirs = res.get(metric), base.get(metric)
            if mine and theirs:
                added[metric] = {q: mine[q] - theirs[q] for q in ("p50", "p90", "p99", "mean")}
        res["added_ms"] = added
        ratio: dict[str, float | None] = {}
        if res.get("latency_ms") and base.get("latency_ms"):
            ratio["latency_p50"] = res["latency_ms"]["p50"] / base["latency_ms"]["p50"]
            ratio["latency_p99"] = res["latency_ms"]["p99"] / base["latency_ms"]["p99"]
        if res.get("rps") and base.get("rps"):
            ratio["rps"] = res["rps"] / base["rps"]
        res["ratio"] = ratio


async def configure_mock(mock_url: str, scenario: Scenario) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(
            mock_url + "/_config",
            json={"ttft_ms": scenario.ttft_ms, "itl_ms": scenario.itl_ms,
                  "tokens": scenario.tokens},
        )
        response.raise_for_status()


class Pools:
    """Keep-alive connections per target, reused across scenarios of the same concurrency."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self._pools: dict[str, list[Connection]] = {}

    def get(self, target: str, size: int) -> list[Connection]:
        pool = self._pools.setdefault(target, [])
        host, port = host_port(self.urls[target])
        while len(pool) < size:
            pool.append(Connection(host, port))
        return pool[:size]

    def close(self) -> None:
        for pool in self._pools.values():
            for conn in pool:
                conn.close()
        self._pools.clear()


async def _burst(
    conns: list[Connection],
    scenario: Scenario,
    body: Callable[[int], bytes],
    count: int,
    samples: Samples | None,
    first: int = 0,
) -> float:
    remaining = count

    async def worker(conn: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            outcome = await conn.request(
                scenario.path, body(first + count - remaining - 1), stream=scenario.stream,
                timeout=scenario.timeout_s,
            )
            if samples is not None:
                samples.add(outcome)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return time.perf_counter() - started


async def run_scenario(
    scenario: Scenario,
    pools: Pools,
    *,
    warmup: int = 5,
    cpu: dict[str, Callable[[], float]] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """One scenario, all its targets interleaved: per request at concurrency 1, else per burst."""
    body = scenario.body
    targets = list(scenario.targets)
    samples = {t: Samples() for t in targets}
    conns = {t: pools.get(t, scenario.concurrency) for t in targets}
    for t in targets:
        # Warm-up texts are never measured ones (a distinct scenario must not pre-fill caches).
        await _burst(conns[t], scenario, body, max(warmup, scenario.concurrency), None,
                     first=1_000_000)
    cpu = {t: f for t, f in (cpu or {}).items() if t in samples}
    cpu_before = {t: f() for t, f in cpu.items()}
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    if scenario.concurrency == 1:
        for i in range(scenario.requests):
            shift = i % len(targets)
            for t in targets[shift:] + targets[:shift]:
                outcome = await conns[t][0].request(
                    scenario.path, body(i), stream=scenario.stream, timeout=scenario.timeout_s
                )
                samples[t].add(outcome)
                samples[t].busy_s += outcome.latency_ms / 1000
    else:
        rounds = max(1, min(scenario.rounds, scenario.requests // scenario.concurrency))
        per_round = [scenario.requests // rounds] * rounds
        per_round[-1] += scenario.requests - sum(per_round)
        for r, count in enumerate(per_round):
            order = targets[r % len(targets):] + targets[: r % len(targets)]
            start = sum(per_round[:r])
            for t in order:
                samples[t].busy_s += await _burst(conns[t], scenario, body, count, samples[t],
                                                  first=start)
    elapsed = time.perf_counter() - started
    results = {t: summarise(s) for t, s in samples.items()}
    for t, f in cpu.items():
        # Server CPU per answered request: robust to the scheduling noise of a shared host.
        done = samples[t].completed + len(samples[t].errors)
        results[t]["cpu_ms_per_request"] = 1000 * (f() - cpu_before[t]) / max(done, 1)
    compare(results)
    progress(f"{scenario.name}: {elapsed:.1f} s")
    # The host is shared: the 1-minute load average beside every scenario's figures.
    return {"scenario": asdict(scenario), "elapsed_s": elapsed, "targets": results,
            "load_avg": [round(load_start, 2), round(os.getloadavg()[0], 2)]}


async def memory_run(
    url: str,
    rss: Callable[[], int],
    *,
    requests: int,
    concurrency: int,
    samples: int = 10,
    warmup: int = 1000,
) -> dict[str, Any]:
    """RSS of a server before and after `requests` requests (half streamed), sampled as it goes."""
    host, port = host_port(url)
    conns = [Connection(host, port) for _ in range(concurrency)]
    plain = Scenario("memory", ("x",), stream=False, concurrency=concurrency, requests=0)
    streamed = Scenario("memory", ("x",), stream=True, concurrency=concurrency, requests=0,
                        tokens=32)
    errors = Samples()
    try:
        for scenario in (plain, streamed):
            await _burst(conns, scenario, scenario.body, warmup // 2, errors)
        before = rss()
        trace = [(0, before)]
        step = max(1, requests // samples)
        done = 0
        while done < requests:
            count = min(step, requests - done)
            half = count // 2
            await _burst(conns, plain, plain.body, half, errors)
            await _burst(conns, streamed, streamed.body, count - half, errors)
            done += count
            trace.append((done, rss()))
        after = rss()
    finally:
        for conn in conns:
            conn.close()
    return {
        "requests": requests,
        "warmup_requests": warmup,
        "concurrency": concurrency,
        "errors": len(errors.errors),
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "growth_mib": (after - before) / 2**20,
        "growth_pct": 100 * (after - before) / before,
        "trace": [{"requests": n, "rss_mib": b / 2**20} for n, b in trace],
    }
