"""Targets judged on a run's results, the markdown table and the plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Memory is "flat" when RSS grows by at most this share over the measured requests.
MEMORY_GROWTH_LIMIT_PCT = 5.0


@dataclass(frozen=True)
class Target:
    name: str
    scenario: str
    target: str
    #: A path into the target's results, e.g. ("added_ms", "latency_ms", "p50").
    metric: tuple[str, ...]
    limit: float
    higher_is_better: bool = False
    unit: str = "ms"


TARGETS: tuple[Target, ...] = (
    Target("pass-through, c=1, non-streamed: added p50 <= 2 ms", "c1-json16", "gateway",
           ("added_ms", "latency_ms", "p50"), 2.0),
    Target("pass-through, c=1, non-streamed: added p99 <= 4 ms", "c1-json16", "gateway",
           ("added_ms", "latency_ms", "p99"), 4.0),
    Target("pass-through, c=1, streamed 32 chunks: added p50 <= 3 ms", "c1-stream32", "gateway",
           ("added_ms", "latency_ms", "p50"), 3.0),
    Target("pass-through, c=32, mock answering in 20 ms: throughput >= 0.9 x direct",
           "c32-json16-ttft20", "gateway", ("ratio", "rps"), 0.9, True, "x"),
    Target("default policies, c=1, prompt check: added p50 <= 15 ms", "policies-c1-json16",
           "gateway-policies", ("added_ms", "latency_ms", "p50"), 15.0),
    Target("default policies, streamed output: added p99 per chunk <= 2 ms beyond hold-back",
           "policies-c1-stream32-itl5", "gateway-policies",
           ("added_ms", "chunk_delay_ms", "p99"), 2.0),
    # Issue 14: filters at production cost, measured over the pass-through gateway of the run.
    Target("default policies, 200-word prompt: added p50 over pass-through <= 10 ms",
           "policies-c1-prompt200w", "gateway-policies", ("added_vs_gateway_ms", "p50"), 10.0),
    Target("default policies, 1,500-word prompt: added p50 over pass-through <= 30 ms",
           "policies-c1-prompt1500w", "gateway-policies", ("added_vs_gateway_ms", "p50"), 30.0),
    Target("default policies, 4,000-word prompt: added p50 over pass-through <= 80 ms",
           "policies-c1-prompt4000w", "gateway-policies", ("added_vs_gateway_ms", "p50"), 80.0),
    Target("default policies, 200-word prompt: added p99 <= 2 x added p50",
           "policies-c1-prompt200w", "gateway-policies",
           ("added_vs_gateway_ms", "p99_over_p50"), 2.0, unit="x"),
    Target("default policies, 1,500-word prompt: added p99 <= 2 x added p50",
           "policies-c1-prompt1500w", "gateway-policies",
           ("added_vs_gateway_ms", "p99_over_p50"), 2.0, unit="x"),
    Target("default policies, 4,000-word prompt: added p99 <= 2 x added p50",
           "policies-c1-prompt4000w", "gateway-policies",
           ("added_vs_gateway_ms", "p99_over_p50"), 2.0, unit="x"),
    Target("default policies, 500-token stream: added p99 per chunk <= 1 ms beyond hold-back",
           "policies-c1-stream500-itl2", "gateway-policies",
           ("added_ms", "chunk_delay_ms", "p99"), 1.0),
)
#: Issue 14: the gateway with the default policies stays under this RSS.
POLICY_RSS_LIMIT_MIB = 700.0


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    scenarios = {s["scenario"]["name"]: s for s in results.get("scenarios", [])}
    verdicts = []
    for t in TARGETS:
        scenario = scenarios.get(t.scenario)
        value = None
        if scenario is not None:
            value = _dig(scenario["targets"].get(t.target), t.metric)
        met = None
        if value is not None:
            met = value >= t.limit if t.higher_is_better else value <= t.limit
        verdicts.append({**asdict(t), "metric": list(t.metric), "measured": value, "met": met})
    for name, mem in results.get("memory", {}).items():
        verdicts.append({
            "name": f"{name}: RSS flat over {mem['requests']:,} requests "
                    f"(growth <= {MEMORY_GROWTH_LIMIT_PCT:g}%)",
            "scenario": "memory", "target": name, "metric": ["growth_pct"],
            "limit": MEMORY_GROWTH_LIMIT_PCT, "higher_is_better": False, "unit": "%",
            "measured": mem["growth_pct"], "met": mem["growth_pct"] <= MEMORY_GROWTH_LIMIT_PCT,
        })
        if name == "gateway-policies":
            verdicts.append({
                "name": f"{name}: RSS <= {POLICY_RSS_LIMIT_MIB:g} MiB after "
                        f"{mem['requests']:,} requests",
                "scenario": "memory", "target": name, "metric": ["rss_after_mib"],
                "limit": POLICY_RSS_LIMIT_MIB, "higher_is_better": False, "unit": "MiB",
                "measured": mem["rss_after_mib"],
                "met": mem["rss_after_mib"] <= POLICY_RSS_LIMIT_MIB,
            })
    return verdicts


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# Lethe benchmark — {meta['started']}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Host: {meta['host']}  ",
        "All targets of a scenario ran interleaved in one run (per request at concurrency 1, "
        "in alternating bursts above). Added = target percentile minus direct percentile.",
        "",
        "## Targets",
        "",
        "| target | measured | limit | met |",
        "| --- | --- | --- | --- |",
    ]
    for v in results["targets"]:
        met = {True: "met", False: "**not met**", None: "not measured"}[v["met"]]
        lines.append(f"| {v['name']} | {_fmt(v['measured'])} {v['unit']} | "
                     f"{_fmt(v['limit'])} {v['unit']} | {met} |")
    lines += [
        "",
        "## Scenarios",
        "",
        "| scenario | target | ok/err | p50 ms | p99 ms | added p50 | added p99 | TTFT p50 | "
        "inter-chunk p50/p99 | chunk delay p50/p99 | req/s | ratio rps | CPU ms/req |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in results["scenarios"]:
        for name, r in s["targets"].items():
            lat = r.get("latency_ms") or {}
            added = (r.get("added_ms") or {}).get("latency_ms") or {}
            ttft = r.get("ttft_ms") or {}
            gaps = r.get("inter_chunk_ms") or {}
            delay = r.get("chunk_delay_ms") or {}
            ok = f"{r['completed']}/{r['errors']}" + (f" ({r['filtered']} filtered)"
                                                       if r.get("filtered") else "")
            load = s.get("load_avg")
            label = s["scenario"]["name"] + (f" (load {load[0]:g}-{load[1]:g})" if load else "")
            lines.append(
                f"| {label} | {name} | {ok} | {_fmt(lat.get('p50'))} | "
                f"{_fmt(lat.get('p99'))} | {_fmt(added.get('p50'))} | {_fmt(added.get('p99'))} | "
                f"{_fmt(ttft.get('p50'))} | "
                f"{_fmt(gaps.get('p50'), 3)}/{_fmt(gaps.get('p99'), 3)} | "
                f"{_fmt(delay.get('p50'), 3)}/{_fmt(delay.get('p99'), 3)} | "
                f"{_fmt(r.get('rps'), 0)} | {_fmt((r.get('ratio') or {}).get('rps'))} | "
                f"{_fmt(r.get('cpu_ms_per_request'))} |"
            )
    if results.get("memory"):
        lines += ["", "## Memory", "",
                  "| server | requests | RSS before MiB | RSS after MiB | growth |",
                  "| --- | --- | --- | --- | --- |"]
        for name, m in results["memory"].items():
            lines.append(f"| {name} | {m['requests']:,} | {m['rss_before_mib']:.1f} | "
                         f"{m['rss_after_mib']:.1f} | {m['growth_mib']:+.1f} MiB "
                         f"({m['growth_pct']:+.1f}%) |")
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    scenarios = {s["scenario"]["name"]: s for s in results["scenarios"]}

    ax = axes[0][0]
    c1 = [n for n in ("c1-json16", "c1-stream32", "policies-c1-json16") if n in scenarios]
    proxies = sorted({t for n in c1 for t in scenarios[n]["targets"] if t != "direct"})
    width = 0.8 / max(len(proxies), 1)
    for i, proxy in enumerate(proxies):
        p50s, p99s = [], []
        for n in c1:
            added = (scenarios[n]["targets"].get(proxy) or {}).get("added_ms", {})
            lat = added.get("latency_ms") or {}
            p50s.append(lat.get("p50") or 0.0)
            p99s.append(lat.get("p99") or 0.0)
        xs = [x + i * width for x in range(len(c1))]
        ax.bar(xs, p99s, width, alpha=0.35, color=f"C{i}")
        ax.bar(xs, p50s, width, label=proxy, color=f"C{i}")
    ax.set_xticks([x + width * (len(proxies) - 1) / 2 for x in range(len(c1))], c1)
    ax.set_ylabel("added latency vs direct, ms (solid p50, light p99)")
    ax.set_title("Concurrency 1")
    ax.legend()

    for ax, stream in ((axes[0][1], False), (axes[1][0], True)):
        series: dict[str, list[tuple[int, float]]] = {}
        for s in results["scenarios"]:
            sc = s["scenario"]
            if sc["upstream"] != "mock" or sc["stream"] != stream or sc["concurrency"] == 1:
                continue
            if sc["name"].startswith("policies"):
                continue
            for t, r in s["targets"].items():
                if r.get("rps"):
                    series.setdefault(t, []).append((sc["concurrency"], r["rps"]))
        for t, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=t)
        ax.set_xlabel("concurrency")
        ax.set_ylabel("requests / s")
        ax.set_title(f"Throughput, mock TTFT 20 ms, {'streamed 32' if stream else '16 tokens'}")
        ax.legend()

    ax = axes[1][1]
    for name, mem in results.get("memory", {}).items():
        trace = mem["trace"]
        ax.plot([p["requests"] for p in trace], [p["rss_mib"] for p in trace], marker=".",
                label=name)
    ax.set_xlabel("requests after warm-up")
    ax.set_ylabel("RSS MiB")
    ax.set_title("Gateway memory")
    if results.get("memory"):
        ax.legend()
    fig.suptitle(f"Lethe benchmark {results['meta']['started']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
