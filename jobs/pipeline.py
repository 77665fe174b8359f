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
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `jobs` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardray.pipeline.config import PipelineConfig  # noqa: E402

log = logging.getLogger("guardray.jobs.pipeline")


def main(cfg: PipelineConfig) -> None:
    """Run the end-to-end pipeline on Ray with ``cfg``; print the report."""
    from guardray.pipeline.runner import run_pipeline
    from jobs._ray import init_ray

    print(run_pipeline(cfg, connect=lambda: init_ray(cfg.ray)), end="")


if __name__ == "__main__":
    from guardray.cli.job_runner import script_main

    script_main(PipelineConfig, main)
