"""Evaluation job: a classifier or an LLM judge on labelled datasets -> metrics + report.

Usage:
    guardray evaluate --model DIR --data FILE [--validation-data FILE] --out DIR
    guardray evaluate --judge configs/judges/smollm2-safe-unsafe.yaml --data FILE --policy ID \
        --out DIR
    python jobs/evaluate.py --config configs/evaluate.yaml [key=value ...]
    ray job submit --working-dir . -- python jobs/evaluate.py --config configs/evaluate.yaml
"""

from __future__ import annotations

import logging

from guardray.cli.job_runner import script_main
from guardray.evaluate import EvaluateConfig

log = logging.getLogger("guardray.jobs.evaluate")


def main(cfg: EvaluateConfig) -> None:
    """Evaluate ``cfg.model`` (or ``cfg.judge``) on ``cfg.data`` on Ray; print a summary table."""
    from guardray.cli.ray_init import init_ray
    from guardray.evaluate import run_evaluation

    cfg.check_runnable()
    summary = run_evaluation(cfg, connect=lambda: init_ray(cfg.ray, cfg))
    print(summary_text(summary, cfg.output_dir), end="")


def summary_text(summary: dict, output_dir: str) -> str:
    """A short plain-text table of the results."""
    def f(v, fmt="{:.4f}"):
        return "-" if v is None or v != v else fmt.format(v)

    lines = [f"{summary['model']} ({summary['kind']})",
             f"{'dataset':<24} {'n':>6} {'prec':>7} {'recall':>7} {'F1':>7} {'AUROC':>7} "
             f"{'AUPRC':>7} {'thresh':>7} {'ms/p':>8} {'p/s':>8} {'unparsed':>8}"]
    for r in summary["datasets"]:
        lines.append(
            f"{r['dataset'][:24]:<24} {r['n']:>6} {f(r['precision']):>7} {f(r['recall']):>7} "
            f"{f(r['f1']):>7} {f(r['auroc']):>7} {f(r['auprc']):>7} {f(r['threshold']):>7} "
            f"{f(r['ms_per_prompt'], '{:.2f}'):>8} {f(r['prompts_per_s'], '{:.1f}'):>8} "
            f"{r.get('n_unparseable', '-'):>8}")
    lines.append(f"average F1 {f(summary['average']['f1'])} over "
                 f"{summary['average']['n_datasets']} dataset(s); results in {output_dir}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    script_main("evaluate", main)
