"""Prometheus metrics for the gateway, on a per-app registry.

Every label takes values from a bounded set: route templates, served model names (or
"other"), HTTP status codes, policy/filter names from the loaded configuration, and the fixed
enumerations below. User text, API keys and prompts never become label values.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

# Same shape as vLLM's TTFT / end-to-end buckets, cut at two minutes: LLM requests span
# a millisecond (a blocked prompt) to minutes (a long generation).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 120.0,
)  # fmt: skip
FILTER_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
HOLDBACK_CHAR_BUCKETS: tuple[float, ...] = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
HOLDBACK_DELAY_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

UPSTREAM_ERROR_REASONS: frozenset[str] = frozenset(
    {"connect", "timeout", "pool_timeout", "status_4xx", "status_5xx", "malformed", "stream_cut"}
)
RESULTS: frozenset[str] = frozenset({"success", "failure"})
OTHER_MODEL = "other"


def bounded_model(requested: str | None, known: Collection[str]) -> str:
    """The model label for a request: the requested name if it is served, else "other"."""
    return requested if requested is not None and requested in known else OTHER_MODEL


class Metrics:
    """All gateway metrics, registered on one registry (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lethe_requests",
            "Requests answered, by route template, served model and HTTP status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "lethe_request_duration_seconds",
            "Time from request received to last byte sent.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "lethe_time_to_first_token_seconds",
            "Time from request received to the first content byte released to the client.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "lethe_in_flight_requests", "Requests being processed now.", registry=r
        )
        self.upstream_errors = Counter(
            "lethe_upstream_errors",
            "Failed calls to the inference engine, by reason.",
            ["reason"],
            registry=r,
        )
        self.decisions = Counter(
            "lethe_policy_decisions",
            "Filter decisions, by policy, stage (input/output), filter and action.",
            ["policy", "stage", "filter", "action"],
            registry=r,
        )
        self.filter_duration = Histogram(
            "lethe_filter_duration_seconds",
            "Time one filter spent on one check.",
            ["filter", "stage"],
            buckets=FILTER_BUCKETS,
            registry=r,
        )
        self.holdback_chars = Histogram(
            "lethe_stream_holdback_characters",
            "Characters held back from a stream while the output stage checked them.",
            buckets=HOLDBACK_CHAR_BUCKETS,
            registry=r,
        )
        self.holdback_delay = Histogram(
            "lethe_stream_holdback_delay_seconds",
            "Time streamed text waited in the hold-back buffer before release.",
            buckets=HOLDBACK_DELAY_BUCKETS,
            registry=r,
        )
        self.fail_open = Counter(
            "lethe_fail_open",
            "Filter errors let through because the policy is fail-open.",
            ["policy", "filter"],
            registry=r,
        )
        self.holdback_cap_blocks = Counter(
            "lethe_stream_holdback_cap_blocks",
            "Stream choices ended with content_filter because the text their filters held "
            "back passed the hold-back cap, by cap (normalised or raw characters).",
            ["cap"],
            registry=r,
        )
        self.filter_overruns = Counter(
            "lethe_filter_budget_overruns",
            "Filter checks failed closed for overrunning a budget of the filter pool, by "
            "budget (work: their own run time; wait: time queued for their turns).",
            ["budget"],
            registry=r,
        )
        self.reloads = Counter(
            "lethe_config_reloads",
            "Policy directory reloads, by result (a failed reload keeps the old set).",
            ["result"],
            registry=r,
        )
        self.adapter_loads = Counter(
            "lethe_adapter_loads",
            "LoRA adapter loads into the engine, by result.",
            ["result"],
            registry=r,
        )
        self.decode_fallbacks = Counter(
            "lethe_decode_fallbacks",
            "Requests where a policy in mode decode ran its filters because the engine does "
            "not enforce it (no decoding processor, or another version of the policy).",
            ["policy"],
            registry=r,
        )
        self.decode_engine = Gauge(
            "lethe_decode_engine_available",
            "1 when the engine's last probe showed Lethe's decoding processor, else 0.",
            registry=r,
        )
        self.policy_set = Info(
            "lethe_policy_set", "The policy set in force: content hash and count.", registry=r
        )
        # Fixed label sets start at zero so rate() and absent() behave before the first event.
        for reason in sorted(UPSTREAM_ERROR_REASONS):
            self.upstream_errors.labels(reason=reason)
        for result in sorted(RESULTS):
            self.reloads.labels(result=result)
            self.adapter_loads.labels(result=result)
        for cap in ("normalised", "raw"):
            self.holdback_cap_blocks.labels(cap=cap)
        for budget in ("work", "wait"):
            self.filter_overruns.labels(budget=budget)

    def watch_upstream_pool(self, stats: Callable[[], Any]) -> None:
        """Export the upstream connection slots, read from `stats()` (a PoolStats) at each
        scrape: the pool keeps its own counts, nothing has to remember to update a gauge."""
        self.registry.register(_PoolCollector(stats))

    def upstream_error(self, reason: str) -> None:
        if reason not in UPSTREAM_ERROR_REASONS:
            raise ValueError(f"unknown upstream error reason {reason!r}")
        self.upstream_errors.labels(reason=reason).inc()

    def reload(self, ok: bool) -> None:
        self.reloads.labels(result="success" if ok else "failure").inc()

    def adapter_load(self, ok: bool) -> None:
        self.adapter_loads.labels(result="success" if ok else "failure").inc()

    def set_policy_set(self, hash: str, count: int) -> None:
        self.policy_set.info({"hash": hash, "count": str(count)})

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type (OpenMetrics if the scraper asks)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        pool = self._stats()
        yield GaugeMetricFamily(
            "lethe_upstream_connections_in_use",
            "Upstream connection slots held by requests now.",
            value=pool.in_use,
        )
        yield GaugeMetricFamily(
            "lethe_upstream_connections_limit",
            "Upstream connection slots in all.",
            value=pool.limit,
        )
        yield GaugeMetricFamily(
            "lethe_upstream_pool_waiting",
            "Requests waiting for a free upstream connection slot.",
            value=pool.waiting,
        )
        yield CounterMetricFamily(
            "lethe_upstream_pool_timeouts",
            "Requests answered 503 because no upstream connection slot came free in time.",
            value=pool.timeouts,
        )
