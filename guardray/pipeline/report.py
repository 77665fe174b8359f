"""The pipeline's ``report.md``: one line per stage, then what the guards are worth.

Pure formatting: `Report` collects what the stages did (`done`, `results`) and the figures of
`guardray.pipeline.evaluation` (``quality`` rows), and `Report.markdown` renders them. A stage
that did not run says why; a stage that does not exist yet says so: the report never
pretends a stage ran.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from guardray.pipeline.stages import STAGES

log = logging.getLogger(__name__)


def num(v: Any, fmt: str = "{:.3f}") -> str:
    """A figure, or ``-`` when there is none (None, NaN)."""
    return "-" if v is None or v != v else fmt.format(v)


@dataclass
class Report:
    """What the pipeline did: a status and a detail per stage, then the guards' figures.

    Attributes:
        results: stage -> (status, detail).
        evaluation: one row per model and policy on its test rows (policy, model, n,
            precision, recall, f1, auroc, threshold).
        quality: one row per model and policy beyond the test rows (see
            `guardray.pipeline.evaluation.quality_row`).
        notes: lines printed under the quality table (what the sets are, targets).
        models: role -> resolved model folder.
    """

    results: dict[str, tuple[str, str]] = field(default_factory=dict)
    evaluation: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)

    def done(self, stage: str, detail: str) -> None:
        self.results[stage] = ("done", detail)
        log.info("pipeline: %s done: %s", stage, detail)

    def markdown(self, seconds: float) -> str:
        lines = ["# guardray pipeline report", "", "| stage | status | result |", "|---|---|---|"]
        for stage in STAGES:
            if stage.name in self.results:
                status, detail = self.results[stage.name]
            elif stage.available:
                status, detail = "skipped", "disabled in this config"
            else:
                status, detail = "not yet available", stage.description
            lines.append(f"| {stage.name} | {status} | {detail} |")
        if self.evaluation:
            lines += ["", "## Test metrics per policy", "",
                      "| policy | model | n | precision | recall | F1 | AUROC | threshold |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in self.evaluation:
                lines.append(f"| {r['policy']} | {r['model']} | {r['n']} | {num(r['precision'])}"
                             f" | {num(r['recall'])} | {num(r['f1'])} | {num(r['auroc'])} | "
                             f"{num(r['threshold'], '{:.3g}')} |")
        if self.quality:
            lines += ["", "## What the guards are worth", "",
                      "| policy | model | test macro-F1 (n) | cross-source macro-F1 (n) | "
                      "judged rows: guard / judge macro-F1 (n) | alarming-safe FPR (n) | "
                      "targets |", "|---|---|---|---|---|---|---|"]
            for r in self.quality:
                lines.append(
                    f"| {r['policy']} | {r['model']} | {_cell(r, 'test')} | "
                    f"{_cell(r, 'cross_source')} | {_judged(r)} | "
                    f"{_cell(r, 'alarming_safe', 'fpr')} | {r.get('targets') or '-'} |")
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        lines += ["", f"models: {self.models or 'not prepared'}", f"took {seconds:.1f} s"]
        return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any], key: str, metric: str = "macro_f1") -> str:
    """``value (n)``; for a set of safe rows only, its false-positive rate (a macro-F1 of one
    class says nothing)."""
    rec = row.get(key)
    if not rec:
        return "-"
    if metric == "macro_f1" and rec.get("n_unsafe") == 0:
        return f"FPR {num(rec.get('fpr'))} ({rec.get('n', 0)} safe)"
    return f"{num(rec.get(metric))} ({rec.get('n', 0)})"


def _judged(row: dict[str, Any]) -> str:
    guard, judge = row.get("judged_guard"), row.get("judged_judge")
    if not guard:
        return "-"
    text = f"{num(guard.get('macro_f1'))} / {num((judge or {}).get('macro_f1'))} "
    unparsed = (judge or {}).get("n_unparseable")
    return text + f"({guard.get('n', 0)}" + (f", {unparsed} unparsed)" if unparsed else ")")
