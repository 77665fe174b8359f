"""GIP pretraining job (GuardFormer 3.3, eq. 1) on Ray Train + DeepSpeed.

Usage:
    python jobs/pretrain.py --config configs/pretrain.yaml [key=value ...]
    guardray pretrain --config configs/pretrain.yaml
    ray job submit --working-dir . -- python jobs/pretrain.py --config configs/pretrain.yaml

Rerunning with the same ``run_name`` and ``storage_path`` resumes from the latest checkpoint
(a finished run trains nothing and exports again).
"""

from __future__ import annotations

import json
import logging

from guardray.cli.job_runner import script_main
from guardray.pretrain import PretrainConfig

log = logging.getLogger("guardray.jobs.pretrain")


def main(cfg: PretrainConfig) -> None:
    """Pretrain a guard encoder with GIP (MLM + ALICE++ + CE) and export it as an HF checkpoint."""
    from guardray.cli.ray_init import init_ray
    from guardray.pretrain import run_pretrain

    summary = run_pretrain(cfg, connect=lambda: init_ray(cfg.ray, cfg))  # Ray after the checks
    brief = {k: summary[k] for k in ("run_name", "rows", "global_step", "start_step", "export",
                                     "checkpoint", "log_dir", "seconds")}
    brief["metrics"] = {k: summary["metrics"].get(k) for k in
                        ("loss", "mlm", "alice", "ce", "accuracy", "tokens_per_s")}
    print(json.dumps(brief, indent=2, default=str))


if __name__ == "__main__":
    script_main("pretrain", main)
