"""The search report: convergence plot (best-so-far vs trials), the per-policy table of UniGuard
vs its TaskGuards vs the MultiTaskGuard (the paper's comparison), and the chosen recipe."""

from __future__ import annotations

import io
import logging
import math
from typing import Any

from guardray.io import uris

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
CONVERGENCE_PNG = "convergence.png"


def convergence_png(best: list[float | None], values: list[float | None], title: str) -> bytes:
    """PNG bytes: each trial's objective (dots) and the best so far (line) against trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    xs = list(range(1, len(values) + 1))
    ok = [(x, v) for x, v in zip(xs, values) if v is not None]
    if ok:
        ax.scatter(*zip(*ok), s=14, color="#999999", label="trial")
    bs = [(x, b) for x, b in zip(xs, best) if b is not None]
    if bs:
        ax.step(*zip(*bs), where="post", color="#1f77b4", label="best so far")
    ax.set_xlabel("trials")
    ax.set_ylabel("validation objective")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _num(v: Any) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _threshold_line(s: dict[str, Any]) -> str:
    per = s.get("policy_thresholds")
    if not per:
        return f"- decision threshold (chosen on validation rows): {_num(s['threshold'])}"
    return ("- decision thresholds (each policy's, chosen on its validation rows): "
            + ", ".join(f"{pid} {_num(t)}" for pid, t in per.items())
            + f"; over all rows: {_num(s['threshold'])}")


def markdown(summary: dict[str, Any], recipe_text: str) -> str:
    """The report as Markdown."""
    s = summary
    lines = [
        f"# guardray search: UniGuard ({s['searcher']}, {s['trials']} trial(s))", "",
        (f"- objective ({s['aggregate']} of per-policy validation macro-F1): "
         f"**{_num(s['objective'])}** (mean {_num(s['objective_mean'])}, worst "
         f"{_num(s['objective_worst'])})"),
        _threshold_line(s),
        (f"- merge: `{s['method']}` of {', '.join(s['members'])}; instruction: "
         f"{s['instruction']['name']}"),
        (f"- model: `{s['model_dir']}`; recipe: `{s['recipe']}` "
         f"(`guardray merge {s['recipe']} OUT` rebuilds it)"),
        f"- failed trials: {s['failed']}; base model: `{s['base_model']}`", "",
        f"![convergence]({CONVERGENCE_PNG})", "",
        "## Per policy: UniGuard vs TaskGuard vs MultiTaskGuard", "",
        ("Validation macro-F1 (each candidate at its own threshold, on the policies it was "
         "trained for); UniGuard's test macro-F1 is computed once, for the chosen model only."),
        "",
        ("| policy | UniGuard (val) | best TaskGuard (val) | MultiTaskGuard (val) | "
         "UniGuard (test) |"),
        "|---|---|---|---|---|"]
    for r in s["per_policy"]:
        task = f"{_num(r['taskguard_val'])} ({r['taskguard']})" if r["taskguard"] else "-"
        multi = (f"{_num(r['multitaskguard_val'])} ({r['multitaskguard']})"
                 if r["multitaskguard"] else "-")
        lines.append(f"| {r['policy']} | {_num(r['uniguard_val'])} | {task} | {multi} | "
                     f"{_num(r['uniguard_test'])} |")
    lines += ["", "## Candidates (ranked by validation F1 from their model cards)", "",
              "| # | candidate | kind | policies | F1 |", "|---|---|---|---|---|"]
    for i, c in enumerate(s["candidates"]):
        lines.append(f"| {i} | {c['name']} | {c['kind']} | {', '.join(c['policy_ids'])} | "
                     f"{_num(c['f1'])} |")
    lines += ["", "## Chosen recipe", "", "```yaml", recipe_text.rstrip(), "```", ""]
    return "\n".join(lines)


def write_report(cfg, prep, summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """Write ``report.md`` and ``convergence.png`` under ``output_dir``; returns the report."""
    out = uris.parse_uri(cfg.output_dir).uri
    so = cfg.storage_options or None
    values = [r.get("value") for r in records]
    png = convergence_png(summary["best_so_far"], values,
                          f"{cfg.search.searcher}: best validation objective")
    uris.write_bytes_atomic(uris.join_uri(out, CONVERGENCE_PNG), png, so)
    recipe_text = uris.read_text(summary["recipe"], so)
    path = uris.join_uri(out, REPORT_MD)
    uris.write_text_atomic(path, markdown(summary, recipe_text), so)
    return path
