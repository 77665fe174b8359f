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
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `jobs` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardray.train.gip_config import PretrainConfig  # noqa: E402

log = logging.getLogger("guardray.jobs.pretrain")


def main(cfg: PretrainConfig) -> None:
    """Pretrain a guard encoder with GIP (MLM + ALICE++ + CE) and export it as an HF checkpoint."""
    from guardray.train.gip_ray import run_pretrain
    from jobs._ray import init_ray

    init_ray(cfg.ray)
    summary = run_pretrain(cfg)
    brief = {k: summary[k] for k in ("run_name", "rows", "global_step", "start_step", "export",
                                     "checkpoint", "log_dir", "seconds")}
    brief["metrics"] = {k: summary["metrics"].get(k) for k in
                        ("loss", "mlm", "alice", "ce", "accuracy", "tokens_per_s")}
    print(json.dumps(brief, indent=2, default=str))


if __name__ == "__main__":
    from guardray.cli.job_runner import script_main

    script_main(PretrainConfig, main)
