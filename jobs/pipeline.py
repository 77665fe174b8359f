"""End-to-end pipeline: seed -> generate (+dedup) -> pretrain -> finetune -> evaluate.

Usage:
    python jobs/pipeline.py --config configs/pipeline.yaml [key=value ...]
    guardray pipeline --config configs/pipeline.yaml stages.pretrain.enabled=false
    ray job submit --working-dir . -- python jobs/pipeline.py --config configs/pipeline.yaml

Each stage is configured by its own YAML (``stages.<name>.config``) plus overrides; the
pipeline chains their folders under ``output_dir`` and writes ``report.md`` there.
Rerunning the same config resumes (see `guardray.pipeline.runner`).
"""

from __future__ import annotations

import logging

from guardray.cli.job_runner import script_main
from guardray.pipeline import PipelineConfig

log = logging.getLogger("guardray.jobs.pipeline")


def main(cfg: PipelineConfig) -> None:
    """Run the end-to-end pipeline on Ray with ``cfg``; print the report."""
    from guardray.cli.ray_init import init_ray
    from guardray.pipeline import run_pipeline

    print(run_pipeline(cfg, connect=lambda: init_ray(cfg.ray, cfg)), end="")


if __name__ == "__main__":
    script_main("pipeline", main)
