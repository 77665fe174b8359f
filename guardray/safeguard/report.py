"""The safeguard report: the trade-off table (paper Tables 1-2) and plot (Figure 2).

Files written by `write_report` into the job's folder:
    results.json   every candidate's scores, the base/fine-tune references, the choice
    report.md      the table, the choice and its recipe
    tradeoff.png   downstream score and ASR against the fine-tune's weight, per method, with
                   the base and the fine-tunes as reference lines, and ASR against score
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardray.io.uris import write_text_atomic

RESULTS_JSON, REPORT_MD, PLOT_PNG = "results.json", "report.md", "tradeoff.png"


def _num(x: Any, fmt: str = "{:.3f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return fmt.format(x)


def table(rows: Sequence[dict[str, Any]], judges: Sequence[str]) -> str:
    """A Markdown table: one row per candidate (Tables 1-2 of the paper)."""
    head = ["model", "method", "lambda", "downstream"]
    for j in judges:
        head += [f"ASR ({j})"] + (["unparseable"] if j == "llm" else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], r["method"], _num(r["weight"], "{:.2f}"), _num(r["downstream"])]
        for j in judges:
            cells.append(_num(r.get(f"asr_{j}")))
            if j == "llm":
                cells.append(f"{r.get('unparseable_llm', 0)}/{r.get('n_harmful', 0)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any]) -> str:
    """The whole report."""
    judges = result["judges"]
    parts = [
        "# Safeguard merging: downstream score vs attack success rate\n",
        f"Base `{result['base']}`; fine-tunes: {', '.join(result['finetunes']) or '-'}; "
        f"downstream metric: {result['metric']} on {result['n_downstream']} held-out pairs; "
        f"ASR on {result['n_harmful']} harmful instructions (greedy responses), "
        "ASR = harmful / (total - unparseable).\n",
        table(result["rows"], judges),
        "## Choice\n",
        f"Rule: {result['rule']}\n",
    ]
    chosen = result.get("chosen")
    if chosen:
        parts.append(f"Chosen: **{chosen}** ({result['reason']}), exported to "
                     f"`{result['export']}`.\n")
        if result.get("recipe_yaml"):
            parts.append("Recipe (`guardray merge` reproduces it):\n\n```yaml\n"
                         f"{result['recipe_yaml']}```\n")
    else:
        parts.append(f"Nothing exported: {result['reason']}.\n")
    if result.get("guard"):
        g = result["guard"]
        parts.append(f"Guard judge: `{g['model']}` (threshold {_num(g.get('threshold'))}, "
                     f"validation F1 {_num(g.get('val_f1'))}).\n")
    return "\n".join(parts)


def plot(rows: Sequence[dict[str, Any]], judge: str, path: Path) -> None:
    """Figure 2: score and ASR against lambda per method; ASR against score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"asr_{judge}"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    refs = [r for r in rows if r["kind"] in ("base", "finetune")]
    methods = sorted({r["method"] for r in rows if r["kind"] == "merge"})
    for ax, field, label in ((axes[0], "downstream", "downstream score"),
                             (axes[1], key, f"ASR ({judge})")):
        for m in methods:
            pts = sorted((r["weight"], r[field]) for r in rows if r["method"] == m
                         and r["weight"] is not None and r.get(field) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
            for r in rows:
                if r["method"] == m and r["weight"] is None and r.get(field) is not None:
                    ax.axhline(r[field], ls=":", color="gray", label=f"{m} (no lambda)")
        for r in refs:
            if r.get(field) is not None:
                ax.axhline(r[field], ls="--", lw=0.8,
                           color="black" if r["kind"] == "base" else "red", label=r["name"])
        ax.set_xlabel("lambda (weight of the fine-tune)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    for r in rows:
        if r.get(key) is not None and r.get("downstream") is not None:
            axes[2].scatter(r["downstream"], r[key], s=18)
            axes[2].annotate(r["name"], (r["downstream"], r[key]), fontsize=6)
    axes[2].set_xlabel("downstream score")
    axes[2].set_ylabel(f"ASR ({judge})")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)


def write_report(result: dict[str, Any], folder: str | Path) -> None:
    """Write results.json, report.md and tradeoff.png into ``folder`` (each atomically)."""
    folder = Path(folder)
    write_text_atomic(folder / RESULTS_JSON, json.dumps(result, indent=2, default=str) + "\n")
    write_text_atomic(folder / REPORT_MD, markdown(result))
    plot(result["rows"], result["select_judge"], folder / PLOT_PNG)
