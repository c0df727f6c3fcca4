"""results.json, report.md and report.html (PNG plots embedded) from evaluated arms."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PLOTS = {
    "leak_heatmap.png": "Leak rate per arm and attack",
    "utility_vs_leak.png": "Utility versus leak",
    "mia.png": "Membership inference: Min-K% scores, forget versus held-out",
    "latency.png": "Latency per arm",
}
TARGET_LABELS = {"elena-marquez": "PII leak", "protected-work": "verbatim leak",
                 "harry-potter": "concept leak"}


def _fmt(value: Any, pct: bool = True, digits: int = 2) -> str:
    if value is None:
        return "–"
    if pct:
        return f"{100 * value:.0f}%"
    return f"{value:.{digits}f}"


def _available(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in results["arms"] if not a.get("unavailable")]


def _policies(results: dict[str, Any]) -> list[str]:
    return list(results["meta"]["targets"])


def _reference_latency(results: dict[str, Any]) -> float | None:
    for arm in results["arms"]:
        if arm["name"] == "target" and not arm.get("unavailable"):
            value = arm.get("cost", {}).get("latency_p50_s")
            return float(value) if value is not None else None
    return None


def mia_reference(results: dict[str, Any]) -> tuple[str, dict[str, float]] | None:
    """The arm whose weights never saw the forget set (oracle, else base) and its AUCs."""
    for name in ("oracle", "base"):
        for arm in _available(results):
            if arm["name"] == name and arm.get("mia"):
                aucs = {p: m["auc"] for p, m in arm["mia"].items() if m.get("auc") is not None}
                if aucs:
                    return name, aucs
    return None


def privleak(results: dict[str, Any], arm: dict[str, Any]) -> list[float]:
    """MUSE's PrivLeak: (AUC - AUC_ref) / AUC_ref per target; 0 means like never trained."""
    ref = mia_reference(results)
    if ref is None:
        return []
    out = []
    for policy, m in arm.get("mia", {}).items():
        if m.get("auc") is not None and policy in ref[1]:
            out.append((m["auc"] - ref[1][policy]) / ref[1][policy])
    return out


def headline_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    policies = _policies(results)
    ref_arm = mia_reference(results)
    header = ["arm"] + [f"{p}: {TARGET_LABELS.get(p, 'leak')}" for p in policies]
    header += ["KnowMem (exact)", "VerbMem (ROUGE-L)", "retain QA", "general QA",
               "false positives", "MIA AUC",
               f"PrivLeak vs {ref_arm[0]}" if ref_arm else "PrivLeak",
               "p50 latency (s)", "added p50 (s)"]
    ref = _reference_latency(results)
    rows = []
    for arm in results["arms"]:
        if arm.get("unavailable"):
            rows.append([arm["name"]] + ["unavailable"] + [""] * (len(header) - 2))
            continue
        t = arm.get("targets", {})
        row = [arm["name"]] + [_fmt(t[p]["leak_rate"]) if p in t else "n/a" for p in policies]
        know = [t[p]["knowmem_exact"] for p in t if t[p]["knowmem_exact"] is not None]
        verb = [t[p]["verbmem_rouge"] for p in t if t[p]["verbmem_rouge"] is not None]
        util = arm.get("utility", {})
        aucs = [m["auc"] for m in arm.get("mia", {}).values() if m.get("auc") is not None]
        p50 = arm.get("cost", {}).get("latency_p50_s")
        row += [_fmt(sum(know) / len(know) if know else None),
                _fmt(sum(verb) / len(verb), pct=False) if verb else "–",
                _fmt(util.get("retain_exact")), _fmt(util.get("general_exact")),
                _fmt(util.get("fp_near_miss")),
                " / ".join(f"{a:.2f}" for a in aucs) or "–",
                " / ".join(f"{x:+.0%}" for x in privleak(results, arm)) or "–",
                _fmt(p50, pct=False),
                _fmt(p50 - ref, pct=False) if p50 is not None and ref is not None else "–"]
        rows.append(row)
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def technique_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    arms = _available(results)
    techniques: list[str] = []
    for arm in arms:
        for tr in arm.get("targets", {}).values():
            for name in tr["leak_by_technique"]:
                if name not in techniques:
                    techniques.append(name)
    header = ["attack"] + [a["name"] for a in arms]
    rows = []
    for technique in techniques:
        row = [technique]
        for arm in arms:
            flags = [tr["leak_by_technique"][technique] for tr in arm.get("targets", {}).values()
                     if tr["leak_by_technique"].get(technique) is not None]
            row.append(_fmt(sum(flags) / len(flags)) if flags else "n/a")
        rows.append(row)
    return header, rows


# --- plots ---------------------------------------------------------------------------------


def plot_leak_heatmap(results: dict[str, Any], path: Path) -> None:
    arms = _available(results)
    policies = _policies(results)
    size = (6.2 * len(policies), 0.55 * len(arms) + 2.6)
    fig, axes = plt.subplots(1, len(policies), figsize=size, squeeze=False)
    fig.subplots_adjust(wspace=0.45)
    for ax, policy in zip(axes[0], policies, strict=True):
        techniques: list[str] = []
        for arm in arms:
            for name in arm.get("targets", {}).get(policy, {}).get("leak_by_technique", {}):
                if name not in techniques:
                    techniques.append(name)
        grid = [[float("nan")] * len(techniques) for _ in arms]
        for i, arm in enumerate(arms):
            by = arm.get("targets", {}).get(policy, {}).get("leak_by_technique", {})
            for j, name in enumerate(techniques):
                if by.get(name) is not None:
                    grid[i][j] = by[name]
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="Reds", aspect="auto")
        ax.set_xticks(range(len(techniques)), techniques, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(arms)), [a["name"] for a in arms], fontsize=8)
        ax.set_title(f"{policy} ({TARGET_LABELS.get(policy, 'leak')})", fontsize=10)
        for i in range(len(arms)):
            for j in range(len(techniques)):
                if grid[i][j] == grid[i][j]:
                    ax.text(j, i, f"{grid[i][j]:.0%}", ha="center", va="center", fontsize=6,
                            color="white" if grid[i][j] > 0.6 else "black")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="leak rate")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_utility_vs_leak(results: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for arm in _available(results):
        leaks = [t["leak_rate"] for t in arm.get("targets", {}).values()
                 if t["leak_rate"] is not None]
        util = arm.get("utility", {}).get("retain_exact")
        if not leaks or util is None:
            continue
        x = sum(leaks) / len(leaks)
        ax.scatter(x, util, s=60)
        ax.annotate(arm["name"], (x, util), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("mean leak rate over targets (lower is better)")
    ax.set_ylabel("retain QA exact match (higher is better)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_mia(results: dict[str, Any], path: Path) -> None:
    arms = [a for a in _available(results) if a.get("mia")]
    policies = [p for p in _policies(results) if any(p in a["mia"] for a in arms)]
    fig, axes = plt.subplots(1, max(1, len(policies)), figsize=(6 * max(1, len(policies)), 4.2),
                             squeeze=False)
    for ax, policy in zip(axes[0], policies, strict=False):
        names, forget, holdout = [], [], []
        for arm in arms:
            m = arm["mia"].get(policy)
            if m and m["forget"] and m["holdout"]:
                names.append(f"{arm['name']}\nAUC {m['auc']:.2f}")
                forget.append(m["forget"])
                holdout.append(m["holdout"])
        if not names:
            ax.text(0.5, 0.5, "no membership scores", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_title(policy, fontsize=10)
            continue
        pos = list(range(len(names)))
        b1 = ax.boxplot(forget, positions=[p - 0.18 for p in pos], widths=0.3,
                        patch_artist=True)
        b2 = ax.boxplot(holdout, positions=[p + 0.18 for p in pos], widths=0.3,
                        patch_artist=True)
        for patch in b1["boxes"]:
            patch.set_facecolor("#d62728")
        for patch in b2["boxes"]:
            patch.set_facecolor("#1f77b4")
        ax.set_xticks(pos, names, fontsize=7, rotation=35, ha="right")
        ax.set_ylabel("Min-20% log-prob (higher: looks memorized)")
        ax.set_title(f"{policy}: forget (red) vs held-out (blue)", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_latency(results: dict[str, Any], path: Path) -> None:
    arms = [a for a in _available(results) if a.get("cost", {}).get("latency_p50_s") is not None]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(arms) + 2), 4))
    p50 = [a["cost"]["latency_p50_s"] for a in arms]
    p95 = [a["cost"]["latency_p95_s"] for a in arms]
    ax.bar(range(len(arms)), p50, color="#4c72b0", label="p50")
    ax.scatter(range(len(arms)), p95, color="black", marker="_", s=300, label="p95", zorder=3)
    ax.set_xticks(range(len(arms)), [a["name"] for a in arms], rotation=30, ha="right")
    ax.set_ylabel("seconds per request (32 tokens, concurrency 1)")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    makers = {"leak_heatmap.png": plot_leak_heatmap, "utility_vs_leak.png": plot_utility_vs_leak,
              "mia.png": plot_mia, "latency.png": plot_latency}
    paths = []
    for name, make in makers.items():
        make(results, out / name)
        paths.append(out / name)
    return paths


# --- documents -----------------------------------------------------------------------------


def _notes(results: dict[str, Any]) -> list[str]:
    notes = []
    for arm in results["arms"]:
        if arm.get("unavailable"):
            notes.append(f"**{arm['name']}** unavailable: {arm['unavailable']}")
        for policy, reason in arm.get("skipped", {}).items():
            notes.append(f"**{arm['name']}** / {policy}: not evaluated ({reason})")
        notes += [f"**{arm['name']}**: {n}" for n in arm.get("notes", [])]
        failed = sum(t.get("errors", 0) for t in arm.get("targets", {}).values())
        failed += arm.get("utility", {}).get("errors", 0)
        if failed:
            notes.append(f"**{arm['name']}**: {failed} requests failed (not counted in rates)")
        if arm.get("build_seconds"):
            built = ", ".join(f"{p} {s:.0f} s" for p, s in arm["build_seconds"].items())
            notes.append(f"**{arm['name']}** adapter build time: {built}")
    return notes


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    header, rows = headline_rows(results)
    t_header, t_rows = technique_table(results)
    parts = [
        "# Lethe evaluation: suppression versus unlearning",
        f"Run {meta['started']} ({meta['mode']} mode, {meta['duration_s']:.0f} s) on "
        f"{meta['machine']}. Every arm was reached over HTTP; leaks were judged by "
        "`evaluation/detectors.py`, not by the gateway's filters. A gateway block counts as "
        "no leak.",
        "## Headline",
        markdown_table(header, rows),
        "Leak columns: fraction of attack prompts whose output revealed the target (any sample "
        "for best-of-B). KnowMem: forget-fact questions answered with the key fact. VerbMem: "
        "ROUGE-L F1 of continuations of protected-work prefixes. False positives: near-miss "
        "prompts blocked. MIA AUC: Min-K% (k=20%) of forget versus held-out text on the "
        "weights behind the arm, one value per target with forget texts; PrivLeak: its "
        "relative gap to the arm whose weights never saw the forget set (MUSE; 0 is ideal, "
        "positive means the forget set still looks like training data, negative that it was "
        "over-unlearned).",
        "## Leak rate per attack (mean over targets)",
        markdown_table(t_header, t_rows),
        "## Plots",
    ]
    parts += [f"### {title}\n\n![{title}]({name})" for name, title in PLOTS.items()]
    notes = _notes(results)
    if notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in notes)]
    parts += ["## Settings", "```json\n" + json.dumps(meta["settings"], indent=1) + "\n```"]
    return "\n\n".join(parts) + "\n"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(results: dict[str, Any], out: Path) -> str:
    meta = results["meta"]
    header, rows = headline_rows(results)
    t_header, t_rows = technique_table(results)
    images = []
    for name, title in PLOTS.items():
        data = base64.b64encode((out / name).read_bytes()).decode()
        images.append(f"<h3>{html.escape(title)}</h3>"
                      f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    notes = "".join(f"<li>{html.escape(n.replace('**', ''))}</li>" for n in _notes(results))
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Lethe evaluation</title><style>{style}</style></head><body>"
        "<h1>Lethe evaluation: suppression versus unlearning</h1>"
        f"<p>Run {html.escape(meta['started'])} ({html.escape(meta['mode'])} mode, "
        f"{meta['duration_s']:.0f} s) on {html.escape(meta['machine'])}.</p>"
        f"<h2>Headline</h2>{_html_table(header, rows)}"
        f"<h2>Leak rate per attack</h2>{_html_table(t_header, t_rows)}"
        f"<h2>Plots</h2>{''.join(images)}"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "</body></html>"
    )


def write_report(results: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    write_plots(results, out)
    (out / "report.md").write_text(render_markdown(results))
    (out / "report.html").write_text(render_html(results, out))
    return {"results": out / "results.json", "markdown": out / "report.md",
            "html": out / "report.html"}
