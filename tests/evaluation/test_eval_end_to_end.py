"""A small evaluation on the real stack: the base model directly versus behind the gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from evaluation.cli import main
from tests.conftest import SERVED_MODEL

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def eval_run(engine: Any, policy_gateway: Any, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("eval")
    direct = {"base_url": f"{engine.base_url}/v1", "model": SERVED_MODEL}
    config = {"arms": [
        {"name": "base", "kind": "direct", **direct},
        {"name": "base+suppress", "kind": "gateway", "base_url": f"{policy_gateway.url}/v1",
         "model": SERVED_MODEL, "weights": direct},
    ]}
    (out / "arms.yaml").write_text(yaml.safe_dump(config))
    code = main(["--quick", "--stack", "none", "--config", str(out / "arms.yaml"),
                 "--out", str(out / "report"), "--no-progress",
                 "--techniques", "direct,obfuscation,best_of"])
    assert code == 0
    return out / "report", json.loads((out / "report" / "results.json").read_text())


def test_every_arm_has_every_target_and_metric(eval_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = eval_run
    assert [a["name"] for a in results["arms"]] == ["base", "base+suppress"]
    for arm in results["arms"]:
        assert set(arm["targets"]) == {"elena-marquez", "protected-work", "harry-potter"}
        for target in arm["targets"].values():
            assert set(target["leak_by_technique"]) == {"direct", "obfuscation", "best_of"}
            leak = target["leak"]
            assert leak["n"] == 9 and leak["failed"] == 0  # 3 prompts x 3 techniques, quick
            assert leak["ci95"][0] <= leak["rate"] <= leak["ci95"][1]
        verbmem = arm["targets"]["protected-work"]["verbmem"]
        assert verbmem["rouge_l"]["n"] == 6 and verbmem["recited"]["n"] == 6
        assert arm["targets"]["protected-work"]["blocklisted_utility"]["n"] > 0
        assert arm["utility"]["retain"]["n"] == 10 and arm["utility"]["errors"] == 0
        assert arm["cost"]["latency_p50_s"] > 0


def test_best_of_asks_for_several_samples(eval_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = eval_run
    rows = results["arms"][0]["targets"]["elena-marquez"]["detail"]["attacks"]
    assert {r["samples"] for r in rows if r["technique"] == "best_of"} == {3}


def test_gateway_blocks_count_as_no_leak_and_direct_never_blocks(
    eval_run: tuple[Path, dict[str, Any]],
) -> None:
    _, results = eval_run
    direct, gateway = results["arms"]
    assert all(t["block"]["k"] == 0 for t in direct["targets"].values())
    hp = gateway["targets"]["harry-potter"]
    assert hp["block"]["k"] > 0
    for row in hp["detail"]["attacks"]:
        if row["blocked"]:
            assert not row["leaked"]


def test_membership_scores_come_from_the_same_weights(
    eval_run: tuple[Path, dict[str, Any]],
) -> None:
    _, results = eval_run
    direct, gateway = results["arms"]
    for policy in ("elena-marquez", "protected-work"):
        a, b = direct["mia"][policy], gateway["mia"][policy]
        assert a["forget"] and a["holdout"] and a["auc"] is not None
        # the suppression arm's weights are the direct arm's: identical scores
        assert a["forget"] == pytest.approx(b["forget"], abs=1e-3)


def test_report_files_embed_the_plots(eval_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = eval_run
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    markdown = (out / "report.md").read_text()
    assert "| base+suppress |" in markdown and "n=9" in markdown
    for name in ("leak_by_arm.png", "leak_by_technique.png", "utility_vs_leak.png", "mia.png",
                 "latency.png"):
        assert (out / name).stat().st_size > 1000
