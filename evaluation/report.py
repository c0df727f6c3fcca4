"""results.json, report.md and report.html (PNG plots embedded) from evaluated arms.

Every rate is shown with its n and 95 % Wilson interval, every plot carries error bars, and a
cell without data says "not run" (an arm that was not evaluated, a target it skipped), never 0.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PLOTS = {
    "leak_by_arm.png": "Leak rate per arm and target (95 % Wilson intervals)",
    "leak_by_technique.png": "Leak rate per attack technique (95 % Wilson intervals)",
    "utility_vs_leak.png": "Utility versus leak (95 % intervals on both axes)",
    "mia.png": "Membership inference: Min-K% scores, forget versus held-out",
    "latency.png": "Latency per arm (mean with 95 % interval)",
}
TARGET_LABELS = {"elena-marquez": "PII leak", "protected-work": "verbatim leak",
                 "harry-potter": "concept leak"}
NOT_RUN = "not run"

ARM_LEGEND = {
    "base": "the bundled SmolLM2-135M-Instruct, never fine-tuned on the targets, no gateway",
    "target": "base fine-tuned on every target (the model an operator is asked to fix), "
              "no gateway",
    "suppress": "target behind the Lethe gateway, every policy in mode suppress (filters on "
                "prompts and streamed output)",
    "decode": "target behind the gateway, every policy in mode decode (MemFree logits "
              "processor inside vLLM bans protected n-grams while generating)",
    "oracle": "base fine-tuned on the retain data only: what never having seen the targets "
              "looks like",
}


def legend_for(name: str, meta: dict[str, Any] | None = None) -> str:
    served = (meta or {}).get("target_model")
    if served and name in ("target", "suppress", "decode"):
        # the target phase was served by another model (`lethe eval --target-model`)
        what = {"target": "no gateway", "suppress": "behind the gateway, every policy in mode "
                "suppress", "decode": "behind the gateway, every policy in mode decode "
                "(MemFree in vLLM)"}[name]
        return f"{served} (standing in for the memorized target), {what}"
    if name in ARM_LEGEND:
        return ARM_LEGEND[name]
    mode, _, method = name.partition("-")
    if mode == "unlearn":
        return (f"target with the policy's {method.upper()} unlearning adapter (LoRA), routed "
                "by the gateway in mode unlearn; no filters")
    if mode == "both":
        return (f"target with the {method.upper()} adapter and the suppression filters "
                "(mode both)")
    return ""


# --- formatting ------------------------------------------------------------------------------


def _has(p: dict[str, Any] | None) -> bool:
    return bool(p) and p.get("n", 0) > 0  # type: ignore[union-attr]


def fmt_rate(p: dict[str, Any] | None, with_n: bool = True) -> str:
    """'12% [6–21] n=90' (and '+2 failed'); 'not run' when there is no data."""
    if not p or (p.get("n", 0) == 0 and not p.get("failed")):
        return NOT_RUN
    if p.get("n", 0) == 0:
        return f"all {p['failed']} failed"
    lo, hi = p["ci95"]
    text = f"{100 * p['rate']:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}]"
    if with_n:
        text += f" n={p['n']}"
    if p.get("failed"):
        text += f" +{p['failed']} failed"
    return text


def fmt_mean(m: dict[str, Any] | None, digits: int = 2) -> str:
    if not m or not m.get("n"):
        return NOT_RUN
    if m.get("ci95"):
        lo, hi = m["ci95"]
        return f"{m['mean']:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}] n={m['n']}"
    return f"{m['mean']:.{digits}f} n={m['n']}"


def _fmt_s(value: float | None) -> str:
    return NOT_RUN if value is None else f"{value:.2f}"


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


def _target(arm: dict[str, Any], policy: str) -> dict[str, Any] | None:
    t = arm.get("targets", {}).get(policy)
    return t if isinstance(t, dict) else None


def pooled(parts: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Several proportions pooled into one (k and n summed), with its own Wilson interval."""
    from evaluation.metrics import wilson

    present = [p for p in parts if p]
    if not present:
        return None
    k = sum(p["k"] for p in present)
    n = sum(p["n"] for p in present)
    interval = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None,
            "ci95": list(interval) if interval else None,
            "failed": sum(p.get("failed", 0) for p in present)}


# --- tables ----------------------------------------------------------------------------------


def headline_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    policies = _policies(results)
    ref_arm = mia_reference(results)
    header = ["arm"] + [f"{p}: {TARGET_LABELS.get(p, 'leak')}" for p in policies]
    header += ["KnowMem (key fact)", "retain QA", "general QA", "near-misses blocked",
               "MIA AUC", f"PrivLeak vs {ref_arm[0]}" if ref_arm else "PrivLeak",
               "p50 latency (s)", "added p50 (s)"]
    ref = _reference_latency(results)
    rows = []
    for arm in results["arms"]:
        if arm.get("unavailable"):
            rows.append([arm["name"]] + [f"{NOT_RUN} (unavailable)"]
                        + [NOT_RUN] * (len(header) - 2))
            continue
        row = [arm["name"]]
        for p in policies:
            t = _target(arm, p)
            row.append(fmt_rate(t["leak"]) if t else NOT_RUN)
        util = arm.get("utility", {})
        know = pooled([t.get("knowmem") for t in arm.get("targets", {}).values()])
        aucs = [m["auc"] for m in arm.get("mia", {}).values() if m.get("auc") is not None]
        p50 = arm.get("cost", {}).get("latency_p50_s")
        row += [fmt_rate(know), fmt_rate(util.get("retain")), fmt_rate(util.get("general")),
                fmt_rate(util.get("fp_near_miss")),
                " / ".join(f"{a:.2f}" for a in aucs) or NOT_RUN,
                " / ".join(f"{x:+.0%}" for x in privleak(results, arm)) or NOT_RUN,
                _fmt_s(p50),
                _fmt_s(p50 - ref) if p50 is not None and ref is not None else NOT_RUN]
        rows.append(row)
    return header, rows


def verbatim_rows(results: dict[str, Any], policy: str = "protected-work"
                  ) -> tuple[list[str], list[list[str]]]:
    """CoTaEval's measures on the protected work, per arm."""
    header = ["arm", "VerbMem ROUGE-L", "LCS (words)", "MinHash", "passages recited "
              "(ROUGE-L >= 0.8)", "blocklisted utility"]
    rows = []
    for arm in results["arms"]:
        t = _target(arm, policy) if not arm.get("unavailable") else None
        v = (t or {}).get("verbmem") or {}
        rows.append([arm["name"], fmt_mean(v.get("rouge_l")), fmt_mean(v.get("lcs_words"), 1),
                     fmt_mean(v.get("minhash")), fmt_rate(v.get("recited")),
                     fmt_rate((t or {}).get("blocklisted_utility"))])
    return header, rows


def technique_rows(results: dict[str, Any], policy: str) -> tuple[list[str], list[list[str]]]:
    arms = _available(results)
    techniques: list[str] = []
    for arm in arms:
        for name in (_target(arm, policy) or {}).get("leak_by_technique", {}):
            if name not in techniques:
                techniques.append(name)
    header = ["attack"] + [a["name"] for a in arms]
    rows = []
    for technique in techniques:
        row = [technique]
        for arm in arms:
            t = _target(arm, policy)
            row.append(fmt_rate((t or {}).get("leak_by_technique", {}).get(technique)))
        rows.append(row)
    return header, rows


def removal_attack_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["adapter", "attack", "setting", "forget recall before", "forget recall after",
              "retain recall after", "seconds"]
    rows = []
    for run in results.get("removal_attacks", []):
        rows.append([run["adapter"], run["attack"], run.get("setting", ""),
                     fmt_rate(run.get("before")), fmt_rate(run.get("after")),
                     fmt_rate(run.get("retain_after")), _fmt_s(run.get("seconds"))])
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --- what each approach bought ----------------------------------------------------------------


def _separated(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two proportions' 95 % intervals do not overlap (a conservative difference)."""
    return bool(a["ci95"] and b["ci95"]) and (a["ci95"][1] < b["ci95"][0]
                                               or b["ci95"][1] < a["ci95"][0])


def bought(results: dict[str, Any]) -> str:
    """One paragraph, computed from the numbers: each arm's leak and utility against the
    target arm (the unprotected model), and the latency it added."""
    arms = {a["name"]: a for a in _available(results)}
    ref = arms.get("target") or arms.get("base")
    if ref is None:
        return "No reference arm (target or base) was run, so no comparison is made."
    ref_lat = ref.get("cost", {}).get("latency_p50_s")
    sentences = []
    for name, arm in arms.items():
        if arm is ref:
            continue
        parts = []
        for policy in _policies(results):
            mine, theirs = _target(arm, policy), _target(ref, policy)
            if not (mine and theirs and _has(mine["leak"]) and _has(theirs["leak"])):
                continue
            a, b = mine["leak"], theirs["leak"]
            change = 100 * (a["rate"] - b["rate"])
            verdict = "" if _separated(a, b) else ", within noise"
            parts.append(f"{TARGET_LABELS.get(policy, policy)} {100 * b['rate']:.0f}% → "
                         f"{100 * a['rate']:.0f}% ({change:+.0f} pts{verdict})")
        mine_u, ref_u = arm.get("utility", {}).get("retain"), ref.get("utility", {}).get("retain")
        if _has(mine_u) and _has(ref_u):
            assert mine_u is not None and ref_u is not None
            verdict = "" if _separated(mine_u, ref_u) else " (within noise)"
            parts.append(f"retain QA {100 * ref_u['rate']:.0f}% → {100 * mine_u['rate']:.0f}%"
                         f"{verdict}")
        fp = arm.get("utility", {}).get("fp_near_miss")
        if _has(fp):
            parts.append(f"{100 * fp['rate']:.0f}% of near-misses blocked")
        lat = arm.get("cost", {}).get("latency_p50_s")
        if lat is not None and ref_lat is not None:
            parts.append(f"{lat - ref_lat:+.2f} s p50 latency")
        if parts:
            sentences.append(f"**{name}** versus {ref['name']}: " + "; ".join(parts) + ".")
    if not sentences:
        return "Only the reference arm was run."
    return " ".join(sentences) + (" A change is called within noise when the two 95 % "
                                  "intervals overlap.")


# --- plots -----------------------------------------------------------------------------------


def _err(p: dict[str, Any]) -> tuple[float, float, float]:
    lo, hi = p["ci95"]
    return p["rate"], p["rate"] - lo, hi - p["rate"]


def plot_leak_by_arm(results: dict[str, Any], path: Path) -> None:
    arms = results["arms"]
    policies = _policies(results)
    fig, axes = plt.subplots(1, len(policies), figsize=(5.2 * len(policies),
                                                        0.42 * len(arms) + 1.8),
                             squeeze=False)
    for ax, policy in zip(axes[0], policies, strict=True):
        for i, arm in enumerate(arms):
            t = _target(arm, policy) if not arm.get("unavailable") else None
            if not t or not _has(t["leak"]):
                ax.text(0.01, i, NOT_RUN, va="center", fontsize=8, color="#777")
                continue
            rate, lo, hi = _err(t["leak"])
            ax.barh(i, rate, color="#c44e52", alpha=0.8)
            ax.errorbar(rate, i, xerr=[[lo], [hi]], fmt="none", ecolor="black", capsize=3)
            ax.text(0.99, i, f"n={t['leak']['n']}", va="center", ha="right", fontsize=7,
                    transform=ax.get_yaxis_transform())
        ax.set_yticks(range(len(arms)), [a["name"] for a in arms], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of attack prompts that leaked")
        ax.set_title(f"{policy} ({TARGET_LABELS.get(policy, 'leak')})", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_leak_by_technique(results: dict[str, Any], path: Path) -> None:
    arms = _available(results)
    policies = _policies(results)
    fig, axes = plt.subplots(len(policies), 1, figsize=(11, 3.4 * len(policies)),
                             squeeze=False)
    colours = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20")
    for ax, policy in zip(axes[:, 0], policies, strict=True):
        techniques = []
        for arm in arms:
            for name in (_target(arm, policy) or {}).get("leak_by_technique", {}):
                if name not in techniques:
                    techniques.append(name)
        width = 0.8 / max(1, len(arms))
        for j, arm in enumerate(arms):
            by = (_target(arm, policy) or {}).get("leak_by_technique", {})
            xs, ys, lo, hi = [], [], [], []
            for i, technique in enumerate(techniques):
                p = by.get(technique)
                if _has(p):
                    assert p is not None
                    rate, down, up = _err(p)
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(rate)
                    lo.append(down)
                    hi.append(up)
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=3.5, capsize=2,
                            color=colours(j % colours.N), label=arm["name"])
        if not techniques:
            ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks(range(len(techniques)), techniques, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("leak rate")
        ax.set_title(f"{policy} ({TARGET_LABELS.get(policy, 'leak')})", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
                      frameon=False, title="arm", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_utility_vs_leak(results: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.6, 4.8))
    drawn = 0
    for arm in _available(results):
        leak = pooled([t["leak"] for t in arm.get("targets", {}).values()])
        util = arm.get("utility", {}).get("retain")
        if not _has(leak) or not _has(util):
            continue
        assert leak is not None and util is not None
        x, xlo, xhi = _err(leak)
        y, ylo, yhi = _err(util)
        ax.errorbar(x, y, xerr=[[xlo], [xhi]], yerr=[[ylo], [yhi]], fmt="o", capsize=3)
        ax.annotate(arm["name"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("leak rate, all targets' attack prompts pooled (lower is better)")
    ax.set_ylabel("retain QA: key fact answered (higher is better)")
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
    if not policies:
        axes[0][0].text(0.5, 0.5, f"membership inference {NOT_RUN}", ha="center",
                        va="center", transform=axes[0][0].transAxes)
    for ax, policy in zip(axes[0], policies, strict=False):
        names, forget, holdout = [], [], []
        for arm in arms:
            m = arm["mia"].get(policy)
            if m and m["forget"] and m["holdout"]:
                names.append(f"{arm['name']}\nAUC {m['auc']:.2f}")
                forget.append(m["forget"])
                holdout.append(m["holdout"])
        if not names:
            ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes)
            ax.set_title(policy, fontsize=10)
            continue
        pos = list(range(len(names)))
        # boxes: quartiles; whiskers: 1.5 IQR, the spread each AUC is computed from
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
    from evaluation.metrics import mean_ci

    arms = [a for a in _available(results) if a.get("cost", {}).get("latencies_s")]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(arms) + 2), 4))
    for i, arm in enumerate(arms):
        m = mean_ci(arm["cost"]["latencies_s"])
        ax.bar(i, m["mean"], color="#4c72b0")
        if m["ci95"]:
            lo, hi = m["ci95"]
            ax.errorbar(i, m["mean"], yerr=[[m["mean"] - max(lo, 0)], [hi - m["mean"]]],
                        fmt="none", ecolor="black", capsize=4)
        ax.text(i, 0, f"n={m['n']}", ha="center", va="bottom", fontsize=7, color="white")
    if not arms:
        ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(len(arms)), [a["name"] for a in arms], rotation=30, ha="right")
    ax.set_ylabel("seconds per request (32 tokens, concurrency 1)")
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    makers = {"leak_by_arm.png": plot_leak_by_arm,
              "leak_by_technique.png": plot_leak_by_technique,
              "utility_vs_leak.png": plot_utility_vs_leak,
              "mia.png": plot_mia, "latency.png": plot_latency}
    paths = []
    for name, make in makers.items():
        make(results, out / name)
        paths.append(out / name)
    return paths


# --- documents -------------------------------------------------------------------------------


METHOD = (
    "Each arm is an OpenAI-compatible endpoint, reached over HTTP exactly as a client would; "
    "requests are sent {concurrency} at a time so that vLLM batches them. Attacks: for each "
    "target and technique, prompts generated from templates, paraphrase lists and the target's "
    "own data (none copied from the filters' exemplars or the red-team suite; a test checks "
    "it). A prompt leaks when any of its samples reveals the target, judged by the "
    "evaluation's own detectors (`evaluation/detectors.py`: PII in any decodable form, 8 "
    "consecutive words of the protected work not given in the prompt, franchise names), never "
    "by the gateway's filters; a gateway block counts as no leak. KnowMem: forget-fact "
    "questions answered with the key fact. VerbMem (CoTaEval's measures): 32-token greedy "
    "continuations of passages of the protected work, scored by ROUGE-L F1, longest common "
    "run of words, and MinHash (word 3-gram Jaccard); a passage counts as recited at ROUGE-L "
    ">= 0.8. Blocklisted utility: questions on the work's facts answered without reciting it. "
    "Retain and general QA: key-fact match on questions the unlearning must not touch. "
    "Near-misses: benign prompts close to a target, counted when blocked. MIA: Min-K% "
    "(k = 20 %) prompt log-probabilities of forget versus held-out text on the weights behind "
    "the arm; PrivLeak is its relative gap to the arm that never saw the forget set (MUSE; 0 "
    "is ideal). Every rate is given as k/n with a 95 % Wilson score interval; failed requests "
    "were retried {retries} times and any still failing are shown as '+k failed', outside n. "
    "'not run' marks data that was not collected, never a zero."
)


def _notes(results: dict[str, Any]) -> list[str]:
    notes = []
    for arm in results["arms"]:
        if arm.get("unavailable"):
            notes.append(f"**{arm['name']}** not run: {arm['unavailable']}")
        for policy, reason in arm.get("skipped", {}).items():
            notes.append(f"**{arm['name']}** / {policy}: not run ({reason})")
        notes += [f"**{arm['name']}**: {n}" for n in arm.get("notes", [])]
        failed = sum(t.get("leak", {}).get("failed", 0) for t in arm.get("targets", {}).values())
        failed += arm.get("utility", {}).get("errors", 0)
        if failed:
            notes.append(f"**{arm['name']}**: {failed} requests still failed after retries "
                         "(shown as '+k failed' beside the rates they belong to)")
        if arm.get("build_seconds"):
            built = ", ".join(f"{p} {s:.0f} s" for p, s in arm["build_seconds"].items())
            notes.append(f"**{arm['name']}** adapter build time: {built}")
    for line in results["meta"].get("notes", []):
        notes.append(line)
    return notes


def _settings(results: dict[str, Any]) -> dict[str, Any]:
    settings = results["meta"].get("settings") or {}
    return {"concurrency": settings.get("concurrency", "?"),
            "retries": settings.get("retries", 0)}


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    header, rows = headline_rows(results)
    v_header, v_rows = verbatim_rows(results)
    parts = [
        "# Lethe evaluation: suppression versus unlearning",
        f"Run {meta['started']} ({meta['mode']} mode, {meta['duration_s']:.0f} s) on "
        f"{meta['machine']}" + (f"; command: `{meta['command']}`" if meta.get("command") else "")
        + ".",
        "## Method",
        METHOD.format(**_settings(results)),
        "## Arms",
        "\n".join(f"- **{a['name']}**: "
                  f"{legend_for(a['name'], meta) or a.get('description', '')}"
                  for a in results["arms"]),
        "## What each approach bought",
        bought(results),
        "## Headline (rate [95 % CI] n)",
        markdown_table(header, rows),
        "## Verbatim measures on the protected work (CoTaEval)",
        markdown_table(v_header, v_rows),
    ]
    for policy in _policies(results):
        t_header, t_rows = technique_rows(results, policy)
        parts += [f"## Leak rate per attack: {policy}",
                  markdown_table(t_header, t_rows) if t_rows else NOT_RUN + "."]
    r_header, r_rows = removal_attack_rows(results)
    parts += ["## Attacks on removal (in-process, on the adapters' weights)",
              markdown_table(r_header, r_rows) if r_rows else NOT_RUN + " in this run."]
    parts += ["## Plots"]
    parts += [f"### {title}\n\n![{title}]({name})" for name, title in PLOTS.items()]
    notes = _notes(results)
    if notes:
        parts += ["## Notes", "\n".join(f"- {n}" for n in notes)]
    parts += ["## Settings", "```json\n" + json.dumps(meta["settings"], indent=1) + "\n```"]
    return "\n\n".join(parts) + "\n"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f"<td class='{'na' if c.startswith(NOT_RUN) else ''}'>{html.escape(c)}</td>"
            for c in r) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_inline(text: str) -> str:
    """**bold** and `code` of the generated paragraphs, escaped."""
    out = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        pieces = out.split(mark)
        out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    return out


def render_html(results: dict[str, Any], out: Path) -> str:
    meta = results["meta"]
    header, rows = headline_rows(results)
    v_header, v_rows = verbatim_rows(results)
    images = []
    for name, title in PLOTS.items():
        data = base64.b64encode((out / name).read_bytes()).decode()
        images.append(f"<h3>{html.escape(title)}</h3>"
                      f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    notes = "".join(f"<li>{_md_inline(n)}</li>" for n in _notes(results))
    legend = "".join(
        f"<dt>{html.escape(a['name'])}</dt><dd>"
        f"{html.escape(legend_for(a['name'], meta) or a.get('description', ''))}</dd>"
        for a in results["arms"])
    techniques = ""
    for policy in _policies(results):
        t_header, t_rows = technique_rows(results, policy)
        body = _html_table(t_header, t_rows) if t_rows else f"<p class='na'>{NOT_RUN}</p>"
        techniques += f"<h3>{html.escape(policy)}</h3>{body}"
    r_header, r_rows = removal_attack_rows(results)
    style = ("body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;"
             "color:#222}table{border-collapse:collapse;font-size:12.5px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}"
             "th{background:#f3f3f3;white-space:normal;max-width:11em}"
             "td:first-child,th:first-child{text-align:left}td.na{color:#999;font-style:italic}"
             "img{max-width:100%}dt{font-weight:bold;margin-top:.4em}dd{margin-left:1.5em}"
             ".box{background:#f7f7fb;border-left:4px solid #4c72b0;padding:.6em 1em}"
             ".scroll{overflow-x:auto}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Lethe evaluation</title><style>{style}</style></head><body>"
        "<h1>Lethe evaluation: suppression versus unlearning</h1>"
        f"<p>Run {html.escape(meta['started'])} ({html.escape(meta['mode'])} mode, "
        f"{meta['duration_s']:.0f} s) on {html.escape(meta['machine'])}"
        + (f"; command: <code>{html.escape(meta['command'])}</code>" if meta.get("command")
           else "") + ".</p>"
        f"<h2>What each approach bought</h2><p class='box'>{_md_inline(bought(results))}</p>"
        "<h2>How to read this</h2>"
        f"<p>{_md_inline(METHOD.format(**_settings(results)))}</p>"
        "<p>Cells read <i>rate [95 % interval] n=…</i>: 12% [6–21] n=90 means 11 of 90 prompts "
        "leaked and the true rate is between 6 % and 21 % with 95 % confidence. Lower leak "
        "rates are better; higher retain and general QA are better.</p>"
        f"<h3>Arms</h3><dl>{legend}</dl>"
        f"<h2>Headline</h2><div class='scroll'>{_html_table(header, rows)}</div>"
        "<h2>Verbatim measures on the protected work (CoTaEval)</h2>"
        f"<div class='scroll'>{_html_table(v_header, v_rows)}</div>"
        f"<h2>Leak rate per attack</h2><div class='scroll'>{techniques}</div>"
        "<h2>Attacks on removal (in-process, on the adapters' weights)</h2>"
        + (_html_table(r_header, r_rows) if r_rows else f"<p class='na'>{NOT_RUN} in this "
           "run.</p>")
        + f"<h2>Plots</h2>{''.join(images)}"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "</body></html>"
    )


def write_report(results: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    write_plots(results, out)
    (out / "report.md").write_text(render_markdown(results))
    (out / "report.html").write_text(render_html(results, out))
    return {"results": out / "results.json", "markdown": out / "report.md",
            "html": out / "report.html"}


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m evaluation.report RESULTS.json [OUT]`: the report again from saved results."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m evaluation.report RESULTS.json [OUT_DIR]", file=sys.stderr)
        return 2
    source = Path(args[0])
    out = Path(args[1]) if len(args) > 1 else source.parent
    results = json.loads(source.read_text())
    paths = write_report(results, out)
    print(f"report: {paths['html']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
