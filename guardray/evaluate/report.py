"""Evaluation reports: Markdown and HTML with tables and PNG plots.

Tables: F1 per dataset per model with the average (the numbers of GuardFormer's Figures 2 and
3), every metric per (model, dataset), per-policy F1 when a dataset mixes policies.

Plots (``plots/``, matplotlib, Agg backend):
    ``f1_per_dataset.png``  grouped bars, F1 (x100) per dataset per model (Figure 2).
    ``average_f1.png``      horizontal bars, average F1 over datasets per model (Figure 3).
    ``pr_curves.png``       precision-recall curves per dataset (judges: one point each).
    ``confusion.png``       confusion matrices, one per (model, dataset).
    ``latency.png``         model milliseconds per prompt and prompts per second.

`compare_evaluations` combines several ``guardray evaluate`` output folders (one per model or
judge) into one report, which is how the paper's model-vs-baseline figures are made.
"""

from __future__ import annotations

import html
import io
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS = "plots"
_MAX_CONFUSION = 48  # more (model, dataset) pairs than this: the grid would be unreadable

_DETAIL_COLUMNS = [
    ("model", "model", None), ("dataset", "dataset", None), ("n", "n", "{:d}"),
    ("precision", "precision", "{:.4f}"), ("recall", "recall", "{:.4f}"), ("f1", "F1", "{:.4f}"),
    ("macro_f1", "macro-F1", "{:.4f}"), ("auroc", "AUROC", "{:.4f}"), ("auprc", "AUPRC", "{:.4f}"),
    ("threshold", "threshold", "{:.4f}"), ("threshold_source", "threshold from", None),
    ("ms_per_prompt", "ms/prompt", "{:.2f}"), ("prompts_per_s", "prompts/s", "{:.1f}"),
    ("n_unparseable", "unparseable", "{:d}"), ("n_cut", "cut to fit", "{:d}"),
]


def _fmt(value: Any, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if fmt is None:
        return str(value)
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _order(items: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def tables(results) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report tables as (header, rows) of strings.

    Returns:
        ``{"f1": ..., "metrics": ..., "policies": ...}`` (``policies`` may have no rows).
    """
    models = _order([r.model for r in results])
    datasets = _order([r.dataset for r in results])
    f1 = {(r.model, r.dataset): _num(r.record.get("f1")) for r in results}
    header = ["model", *datasets, "average"]
    rows = []
    for m in models:
        values = [f1.get((m, d), math.nan) for d in datasets]
        finite = [v for v in values if math.isfinite(v)]
        rows.append([m, *(_fmt(v, "{:.4f}") for v in values),
                     _fmt(float(np.mean(finite)) if finite else math.nan, "{:.4f}")])
    detail = [[_fmt(r.record.get(key), fmt) for key, _, fmt in _DETAIL_COLUMNS] for r in results]
    pol_rows = []
    for r in results:
        for pid, m in (r.record.get("by_policy") or {}).items():
            pol_rows.append([r.model, r.dataset, pid, _fmt(m.get("n"), "{:d}"),
                             _fmt(m.get("precision"), "{:.4f}"), _fmt(m.get("recall"), "{:.4f}"),
                             _fmt(m.get("f1"), "{:.4f}"), _fmt(m.get("macro_f1"), "{:.4f}")])
    return {
        "f1": (header, rows),
        "metrics": ([label for _, label, _ in _DETAIL_COLUMNS], detail),
        "policies": (["model", "dataset", "policy", "n", "precision", "recall", "F1",
                      "macro-F1"], pol_rows),
    }


# --------------------------------------------------------------------------- plots


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_f1_per_dataset(results) -> bytes:
    """Grouped bars: F1 x100 per dataset (x) and model (colour), as the paper's Figure 2."""
    plt = _plt()
    models = _order([r.model for r in results])
    datasets = _order([r.dataset for r in results])
    f1 = {(r.model, r.dataset): _num(r.record.get("f1")) * 100 for r in results}
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(datasets) * max(1, len(models)) ** 0.5), 4))
    x = np.arange(len(datasets))
    for i, m in enumerate(models):
        vals = [f1.get((m, d), math.nan) for d in datasets]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, np.nan_to_num(vals), width,
                      label=m)
        for b, v in zip(bars, vals):
            if math.isfinite(v):
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, datasets, rotation=20, ha="right")
    ax.set_ylabel("F1 (unsafe positive) x100")
    ax.set_ylim(0, 105)
    ax.set_title("F1 per dataset")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _figure_bytes(fig)


def plot_average_f1(results) -> bytes:
    """Horizontal bars: average F1 x100 over the datasets per model (Figure 3)."""
    plt = _plt()
    models = _order([r.model for r in results])
    avg = {}
    for m in models:
        vals = [_num(r.record.get("f1")) for r in results if r.model == m]
        finite = [v for v in vals if math.isfinite(v)]
        avg[m] = float(np.mean(finite)) * 100 if finite else 0.0
    ranked = sorted(models, key=lambda m: avg[m])
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(models) + 1.2))
    bars = ax.barh(ranked, [avg[m] for m in ranked], color="tab:blue")
    for b, m in zip(bars, ranked):
        ax.annotate(f"{avg[m]:.2f}", (b.get_width(), b.get_y() + b.get_height() / 2),
                    va="center", fontsize=8, xytext=(3, 0), textcoords="offset points")
    n = len(_order([r.dataset for r in results]))
    ax.set_xlabel(f"average F1 x100 over {n} dataset(s)")
    ax.set_xlim(0, 105)
    ax.set_title("Average F1")
    return _figure_bytes(fig)


def plot_pr_curves(results) -> bytes:
    """Precision-recall curves per dataset; judges (hard answers) appear as points."""
    from guardray.metrics.binary import pr_curve

    plt = _plt()
    datasets = _order([r.dataset for r in results])
    cols = min(3, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, d in zip(axes.flat, datasets):
        for r in (r for r in results if r.dataset == d):
            labels = r.labels
            if r.scores is not None and len(labels):
                prec, rec, _ = pr_curve(labels, r.scores)
                auprc = _num(r.record.get("auprc"))
                ax.step(rec, prec, where="post", label=f"{r.model} (AP {auprc:.3f})")
            elif math.isfinite(_num(r.record.get("recall"))):
                ax.plot([_num(r.record["recall"])], [_num(r.record["precision"])], "o",
                        label=f"{r.model} (judge)")
        base = float(np.mean([r.labels.mean() for r in results if r.dataset == d and
                              len(r.labels)] or [0]))
        ax.axhline(base, color="grey", lw=0.8, ls="--")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=d)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    fig.suptitle("Precision-recall (unsafe positive; dashed: share of unsafe rows)")
    fig.tight_layout()
    return _figure_bytes(fig)


def plot_confusions(results) -> bytes:
    """One 2x2 confusion matrix (rows true, columns predicted) per (model, dataset)."""
    plt = _plt()
    shown = list(results)[:_MAX_CONFUSION]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, r in zip(axes.flat, shown):
        c = r.record.get("confusion") or {}
        mat = np.array([[c.get("tn", 0), c.get("fp", 0)], [c.get("fn", 0), c.get("tp", 0)]])
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > mat.max() / 2 else "black")
        ax.set_xticks([0, 1], ["safe", "unsafe"])
        ax.set_yticks([0, 1], ["safe", "unsafe"])
        ax.set(xlabel="predicted", ylabel="true", title=f"{r.model}\n{r.dataset}")
        ax.title.set_fontsize(8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    return _figure_bytes(fig)


def plot_latency(results) -> bytes:
    """Model ms per prompt (log scale) and prompts per second, per model and dataset."""
    plt = _plt()
    labels = [f"{r.model}\n{r.dataset}" for r in results]
    ms = [_num(r.record.get("ms_per_prompt")) for r in results]
    pps = [_num(r.record.get("prompts_per_s")) for r in results]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.45 * len(results) + 1.6))
    y = np.arange(len(results))
    a1.barh(y, np.nan_to_num(ms), color="tab:orange")
    a1.set_yticks(y, labels, fontsize=7)
    if any(v > 0 for v in ms if math.isfinite(v)):
        a1.set_xscale("log")
    a1.set(xlabel="ms per prompt", title="Latency")
    a2.barh(y, np.nan_to_num(pps), color="tab:green")
    a2.set_yticks(y, [""] * len(y))
    a2.set(xlabel="prompts per second", title="Throughput")
    fig.tight_layout()
    return _figure_bytes(fig)


PLOTTERS = {
    "f1_per_dataset.png": ("F1 per dataset per model (GuardFormer Figure 2)", plot_f1_per_dataset),
    "average_f1.png": ("Average F1 over datasets (GuardFormer Figure 3)", plot_average_f1),
    "pr_curves.png": ("Precision-recall curves", plot_pr_curves),
    "confusion.png": ("Confusion matrices", plot_confusions),
    "latency.png": ("Latency and throughput (measured in the evaluation run)", plot_latency),
}


# --------------------------------------------------------------------------- documents


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return out


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child,td:nth-child(2){text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}")


def render(results, *, title: str, images: Sequence[str] = (),
           notes: Sequence[str] = ()) -> tuple[str, str]:
    """The report as (Markdown, HTML) text; ``images`` are plot file names under ``plots/``."""
    t = tables(results)
    sections = [("F1 per dataset (unsafe positive)", t["f1"]), ("All metrics", t["metrics"])]
    if t["policies"][1]:
        sections.append(("Per policy", t["policies"]))
    md = [f"# {title}", ""] + [f"- {n}" for n in notes] + [""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    if notes:
        body.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for name, (header, rows) in sections:
        md += [f"## {name}", "", *_md_table(header, rows), ""]
        body += [f"<h2>{html.escape(name)}</h2>", _html_table(header, rows)]
    if images:
        md += ["## Plots", ""]
        body.append("<h2>Plots</h2>")
        for name in images:
            caption = PLOTTERS[name][0]
            md += [f"### {caption}", "", f"![{caption}]({PLOTS}/{name})", ""]
            body += [f"<h3>{html.escape(caption)}</h3>",
                     f'<img src="{PLOTS}/{html.escape(name)}" alt="{html.escape(caption)}">']
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) +
            "\n</body></html>\n")
    return "\n".join(md) + "\n", page


def write_report(out_dir: str, results, *, title: str, plots: bool = True,
                 storage_options=None, notes: Sequence[str] = ()) -> dict[str, str]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``out_dir``.

    A plot that fails to draw is logged and left out; the tables are always written.

    Returns:
        ``{"markdown": location, "html": location, "plots": [locations]}``.
    """
    from guardray.io import uris

    images = []
    if plots and results:
        for name, (_, draw) in PLOTTERS.items():
            try:
                data = draw(results)
            except ImportError as exc:
                log.warning("no plots: %s (pip install matplotlib)", exc)
                break
            except Exception as exc:  # a bad plot must not cost the tables
                log.warning("plot %s failed: %s: %s", name, type(exc).__name__, exc)
                continue
            uris.write_bytes_atomic(uris.join_uri(out_dir, PLOTS, name), data, storage_options)
            images.append(name)
    md, page = render(results, title=title, images=images, notes=notes)
    out = {"markdown": uris.write_text_atomic(uris.join_uri(out_dir, REPORT_MD), md,
                                              storage_options),
           "html": uris.write_text_atomic(uris.join_uri(out_dir, REPORT_HTML), page,
                                          storage_options),
           "plots": [uris.join_uri(out_dir, PLOTS, n) for n in images]}
    log.info("report: %s", out["html"])
    return out


def compare_evaluations(eval_dirs: Sequence[str], out_dir: str, *, title: str | None = None,
                        plots: bool = True, storage_options=None) -> dict[str, str]:
    """One report over several ``guardray evaluate`` output folders (models x datasets)."""
    from guardray.evaluate.results import load_results

    results = [r for d in eval_dirs for r in load_results(d, storage_options)]
    models = _order([r.model for r in results])
    notes = [f"{len(models)} model(s)/judge(s) from: {', '.join(map(str, eval_dirs))}",
             "Each evaluation chose its own threshold on validation data (see its metrics.json)."]
    return write_report(out_dir, results, title=title or "guardray comparison: " +
                        ", ".join(models), plots=plots, storage_options=storage_options,
                        notes=notes)
