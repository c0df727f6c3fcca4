"""The report from hand-made results: n and intervals in every cell, 'not run' for missing data,
error bars in every plot, and the computed comparison paragraph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evaluation.metrics import proportion
from evaluation.report import (
    NOT_RUN,
    bought,
    fmt_rate,
    headline_rows,
    pooled,
    privleak,
    technique_rows,
    verbatim_rows,
    write_report,
)


def _p(k: int, n: int, failed: int = 0) -> dict[str, Any]:
    return proportion([True] * k + [False] * (n - k), failed)


def _target(k: int, n: int = 30) -> dict[str, Any]:
    return {"kind": "person", "leak": _p(k, n), "block": _p(0, n),
            "leak_by_technique": {"direct": _p(k // 2, n // 2), "best_of": _p(n // 2, n // 2)},
            "knowmem": _p(10, 21), "knowmem_rouge": {"n": 21, "mean": 0.5, "ci95": [0.4, 0.6]},
            "verbmem": None, "detail": {}}


def _arm(name: str, k: int, auc: float | None, p50: float, retain: int = 45) -> dict[str, Any]:
    mia = {"elena-marquez": {"forget": [-1.0, -2.0], "holdout": [-3.0], "auc": auc}} if auc else {}
    return {"name": name, "kind": "direct", "targets": {"elena-marquez": _target(k)},
            "utility": {"retain": _p(retain, 60), "general": _p(25, 30),
                        "fp_near_miss": _p(0, 50), "errors": 0},
            "mia": mia, "cost": {"latency_p50_s": p50, "latency_p95_s": p50 * 1.5,
                                 "latencies_s": [p50, p50 * 1.1, p50 * 0.9]},
            "skipped": {}, "notes": []}


RESULTS: dict[str, Any] = {
    "meta": {"started": "now", "mode": "quick", "duration_s": 1.0, "machine": "test",
             "targets": ["elena-marquez", "protected-work"], "settings": {"concurrency": 8}},
    "arms": [
        _arm("target", 24, 0.9, 1.0),
        _arm("suppress", 3, 0.9, 1.25),
        _arm("oracle", 0, 0.6, 1.0),
        {"name": "unlearn-npo", "unavailable": "no npo adapters", "skipped": {}, "notes": []},
        _arm("no-mia", 22, None, 1.0, retain=20),
    ],
}


@pytest.mark.parametrize(
    ("p", "text"),
    [(_p(24, 30), "80% [63–90] n=30"),
     (_p(0, 30), "0% [0–11] n=30"),
     (_p(3, 30, failed=2), "10% [3–26] n=30 +2 failed"),
     (None, NOT_RUN),
     (_p(0, 0), NOT_RUN),
     (_p(0, 0, failed=4), "all 4 failed")],
)
def test_a_rate_cell_shows_its_interval_and_n_and_never_a_zero_for_no_data(
    p: dict[str, Any] | None, text: str
) -> None:
    assert fmt_rate(p) == text


def test_headline_cells_carry_n_and_interval_and_missing_targets_read_not_run() -> None:
    header, rows = headline_rows(RESULTS)
    by_name = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    assert by_name["target"]["elena-marquez: PII leak"] == "80% [63–90] n=30"
    assert by_name["target"]["protected-work: verbatim leak"] == NOT_RUN
    assert by_name["suppress"]["added p50 (s)"] == "0.25"
    assert by_name["target"]["PrivLeak vs oracle"] == "+50%"
    assert by_name["oracle"]["PrivLeak vs oracle"] == "+0%"
    assert by_name["unlearn-npo"]["elena-marquez: PII leak"].startswith(NOT_RUN)
    assert by_name["no-mia"]["MIA AUC"] == NOT_RUN
    assert privleak(RESULTS, RESULTS["arms"][4]) == []
    for row in rows:
        for cell in row[1:]:
            assert cell != "0%"  # a rate is never shown without its n


def test_technique_and_verbatim_tables_mark_what_was_not_run() -> None:
    _, rows = technique_rows(RESULTS, "elena-marquez")
    assert rows[0][0] == "direct" and rows[0][1] == "80% [55–93] n=15"
    _, rows = technique_rows(RESULTS, "protected-work")
    assert rows == []
    _, vrows = verbatim_rows(RESULTS)
    assert all(c == NOT_RUN for r in vrows for c in r[1:])


def test_pooled_rates_sum_k_and_n() -> None:
    p = pooled([_p(3, 10), _p(7, 20), None])
    assert p is not None and (p["k"], p["n"]) == (10, 30)
    assert p["ci95"] == pytest.approx(_p(10, 30)["ci95"])


def test_bought_paragraph_is_computed_and_says_when_a_change_is_noise() -> None:
    text = bought(RESULTS)
    assert "**suppress** versus target: PII leak 80% → 10% (-70 pts)" in text
    assert "retain QA 75% → 75% (within noise)" in text
    assert ("**no-mia** versus target: PII leak 80% → 73% (-7 pts, within noise); "
            "retain QA 75% → 33%;") in text
    assert "+0.25 s p50 latency" in text


def test_report_files_have_method_legend_plots_and_not_run_cells(tmp_path: Path) -> None:
    paths = write_report(RESULTS, tmp_path)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 5
    assert "unlearn-npo</b> not run: no npo adapters" in html
    assert "How to read this" in html and "Wilson" in html
    assert "<dt>suppress</dt>" in html
    assert "class='na'>not run" in html
    markdown = paths["markdown"].read_text()
    assert "| suppress | 10% [3–26] n=30 |" in markdown
    assert "## What each approach bought" in markdown
