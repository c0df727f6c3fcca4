"""The report from hand-made results: tables, plots, unavailable arms and missing data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.report import headline_rows, privleak, write_report


def _target(leak: float, kind: str = "person") -> dict[str, Any]:
    return {"kind": kind, "leak_rate": leak, "leak_by_technique": {"direct": leak, "best_of": 1.0},
            "block_rate": 0.0, "errors": 0, "knowmem_exact": 0.5, "knowmem_rouge": 0.5,
            "verbmem_rouge": None, "detail": {}}


def _arm(name: str, leak: float, auc: float | None, p50: float) -> dict[str, Any]:
    mia = {"elena-marquez": {"forget": [-1.0, -2.0], "holdout": [-3.0], "auc": auc}} if auc else {}
    return {"name": name, "kind": "direct", "targets": {"elena-marquez": _target(leak)},
            "utility": {"retain_exact": 0.75, "general_exact": 1.0, "fp_near_miss": 0.0,
                        "errors": 0},
            "mia": mia, "cost": {"latency_p50_s": p50, "latency_p95_s": p50 * 1.5},
            "skipped": {}, "notes": []}


RESULTS: dict[str, Any] = {
    "meta": {"started": "now", "mode": "quick", "duration_s": 1.0, "machine": "test",
             "targets": ["elena-marquez"], "settings": {}},
    "arms": [
        _arm("target", 0.8, 0.9, 1.0),
        _arm("suppress", 0.1, 0.9, 1.25),
        _arm("oracle", 0.0, 0.6, 1.0),
        {"name": "unlearn-npo", "unavailable": "no npo adapters", "skipped": {}, "notes": []},
        _arm("no-mia", 0.2, None, 1.0),
    ],
}


def test_headline_has_a_row_per_arm_with_added_latency_and_privleak() -> None:
    header, rows = headline_rows(RESULTS)
    by_name = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    assert by_name["target"]["elena-marquez: PII leak"] == "80%"
    assert by_name["suppress"]["added p50 (s)"] == "0.25"
    assert by_name["target"]["PrivLeak vs oracle"] == "+50%"
    assert by_name["oracle"]["PrivLeak vs oracle"] == "+0%"
    assert by_name["unlearn-npo"]["elena-marquez: PII leak"] == "unavailable"
    assert privleak(RESULTS, RESULTS["arms"][4]) == []


def test_report_files_are_written_even_with_missing_data(tmp_path: Path) -> None:
    paths = write_report(RESULTS, tmp_path)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "unlearn-npo unavailable: no npo adapters" in html
    assert "| suppress |" in paths["markdown"].read_text()
