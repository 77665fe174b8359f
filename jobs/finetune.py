"""Fine-tuning job: PolicyGuard / GuardFormer (CFT, FFT) per policy or multi-policy, per seed.

Usage:
    python jobs/finetune.py --config configs/finetune.yaml [key=value ...]
    guardray finetune --config configs/finetune.yaml
    ray job submit --working-dir . -- python jobs/finetune.py --config configs/finetune.yaml
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `jobs` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardray.train.finetune_config import FinetuneConfig  # noqa: E402

log = logging.getLogger("guardray.jobs.finetune")


def main(cfg: FinetuneConfig) -> None:
    """Fine-tune every (policy, seed) model of ``cfg`` as parallel Ray Tune trials."""
    from guardray.train.finetune_ray import run_finetune, summary_markdown
    from jobs._ray import init_ray

    init_ray(cfg.ray)
    summary = run_finetune(cfg)
    print(summary_markdown(summary), end="")


if __name__ == "__main__":
    from guardray.cli.job_runner import script_main

    script_main(FinetuneConfig, main)
