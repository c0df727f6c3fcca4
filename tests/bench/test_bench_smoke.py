"""The benchmark harness end to end in quick mode: real processes on loopback, tiny counts.

No timing thresholds here: targets are judged in the benchmark's own output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main
from bench.load import percentile


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    code = main(["--quick", "--out", str(out), "--litellm", "none", "--no-policies",
                 "--log-dir", str(out / "logs")])
    assert code == 0
    return out, json.loads((out / "latest.json").read_text())


def test_quick_run_writes_json_markdown_and_plot(
    quick_results: tuple[Path, dict[str, Any]],
) -> None:
    out, results = quick_results
    assert (out / "latest.png").stat().st_size > 10_000
    table = (out / "latest.md").read_text()
    assert "| target | measured | limit | met |" in table
    assert set(results) >= {"meta", "scenarios", "memory", "targets", "notes"}
    assert results["meta"]["quick"] is True


def test_every_scenario_measures_direct_floor_and_gateway_without_errors(
    quick_results: tuple[Path, dict[str, Any]],
) -> None:
    _, results = quick_results
    names = [s["scenario"]["name"] for s in results["scenarios"]]
    assert {"c1-json16", "c1-stream32", "c8-json16-ttft20", "c8-stream32-ttft20"} <= set(names)
    for scenario in results["scenarios"]:
        assert set(scenario["targets"]) == {"direct", "floor", "gateway"}
        for name, target in scenario["targets"].items():
            assert target["errors"] == 0, (scenario["scenario"]["name"], name, target)
            assert target["completed"] == scenario["scenario"]["requests"]
            lat = target["latency_ms"]
            assert 0 < lat["p50"] <= lat["p99"]
            assert target["rps"] > 0
            if name != "direct":
                assert target["cpu_ms_per_request"] > 0
                assert "latency_ms" in target["added_ms"]
                assert target["ratio"]["rps"] > 0


def test_streamed_scenarios_time_first_token_chunks_and_mock_stamps(
    quick_results: tuple[Path, dict[str, Any]],
) -> None:
    _, results = quick_results
    stream = next(s for s in results["scenarios"] if s["scenario"]["name"] == "c1-stream32")
    for target in stream["targets"].values():
        # 32 content chunks per answer: 31 gaps and 32 stamped delays per request.
        assert target["inter_chunk_ms"]["n"] == 31 * target["completed"]
        assert target["chunk_delay_ms"]["n"] == 32 * target["completed"]
        assert 0 <= target["chunk_delay_ms"]["p50"] < target["latency_ms"]["p99"]
        assert 0 < target["ttft_ms"]["p50"] <= target["latency_ms"]["p99"]


def test_memory_is_sampled_before_and_after_the_requests(
    quick_results: tuple[Path, dict[str, Any]],
) -> None:
    _, results = quick_results
    memory = results["memory"]["gateway"]
    assert memory["errors"] == 0
    assert memory["rss_before_mib"] > 10 and memory["rss_after_mib"] > 10
    assert memory["trace"][0]["requests"] == 0
    assert memory["trace"][-1]["requests"] == memory["requests"]


def test_targets_are_judged_from_the_measured_figures(
    quick_results: tuple[Path, dict[str, Any]],
) -> None:
    _, results = quick_results
    verdicts = {v["name"]: v for v in results["targets"]}
    p50 = next(v for name, v in verdicts.items() if "non-streamed: added p50" in name)
    scenario = next(s for s in results["scenarios"] if s["scenario"]["name"] == "c1-json16")
    assert p50["measured"] == scenario["targets"]["gateway"]["added_ms"]["latency_ms"]["p50"]
    assert p50["met"] is (p50["measured"] <= p50["limit"])
    policy = next(v for name, v in verdicts.items() if name.startswith("default policies"))
    assert policy["measured"] is None and policy["met"] is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([5.0], 50, 5.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5), ([1.0, 2.0, 3.0], 100, 3.0),
     (list(map(float, range(101))), 99, 99.0), ([], 50, None)],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float | None
) -> None:
    assert percentile(values, q) == expected


def test_distinct_scenarios_send_prompts_and_get_answers_no_cache_has_seen() -> None:
    import orjson

    from bench.load import Scenario
    from bench.mock_upstream import token_text

    scenario = Scenario("s", ("x",), stream=False, concurrency=1, requests=3, distinct=True)
    bodies = [orjson.loads(scenario.body(i)) for i in range(300)]
    prompts = {b["messages"][0]["content"] for b in bodies}
    assert len(prompts) == 300
    answers = {"".join(token_text(t, b["seed"]) for t in range(32)) for b in bodies}
    assert len(answers) >= 250
    same = Scenario("s", ("x",), stream=False, concurrency=1, requests=3)
    assert same.body(1) == same.body(2)
