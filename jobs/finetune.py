"""Fine-tuning job: PolicyGuard / GuardFormer (CFT, FFT) per policy or multi-policy, per seed.

Usage:
    python jobs/finetune.py --config configs/finetune.yaml [key=value ...]
    guardray finetune --config configs/finetune.yaml
    ray job submit --working-dir . -- python jobs/finetune.py --config configs/finetune.yaml
"""

from __future__ import annotations

import logging

from guardray.cli.job_runner import script_main
from guardray.finetune import FinetuneConfig

log = logging.getLogger("guardray.jobs.finetune")


def main(cfg: FinetuneConfig) -> None:
    """Fine-tune every (policy, seed) model of ``cfg`` as parallel Ray Tune trials."""
    from guardray.cli.ray_init import init_ray
    from guardray.finetune import run_finetune, summary_markdown

    summary = run_finetune(cfg, connect=lambda: init_ray(cfg.ray, cfg))  # Ray after the checks
    print(summary_markdown(summary), end="")


if __name__ == "__main__":
    script_main("finetune", main)
