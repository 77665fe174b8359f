"""Classify job: a trained guard on unlabelled JSONL / CSV / Parquet rows, on Ray Data.

Usage:
    guardray classify --model DIR --input FILE_OR_FOLDER --output PATH [--policy ID ...]
    python jobs/classify.py --config configs/classify.yaml model.path=DIR input=FILE
    ray job submit --working-dir . -- python jobs/classify.py --config configs/classify.yaml \
        model.path=s3://bucket/guard input=s3://bucket/traffic/ output_dir=s3://bucket/verdicts
"""

from __future__ import annotations

from guardray.cli.job_runner import script_main
from guardray.serve import ClassifyConfig


def main(cfg: ClassifyConfig) -> None:
    """Classify ``cfg.input`` and write the verdicts to ``cfg.output_dir``; print a summary."""
    from guardray.cli.ray_init import init_ray
    from guardray.serve import run_classify

    summary = run_classify(cfg, connect=lambda: init_ray(cfg.ray, cfg))
    print(f"{summary['model']} ({summary['version']}): {summary['rows']} rows, "
          f"{summary['pairs']} row-policy pairs, {summary['unsafe']} unsafe, "
          f"{summary['truncated']} truncated (threshold {summary['threshold']:.4f}) -> "
          f"{summary['output']}")


if __name__ == "__main__":
    script_main("classify", main)
