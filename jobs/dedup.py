"""Dedup job: exact (normalised-text hash) and semantic near-duplicate removal of sample shards.

Usage:
    python jobs/dedup.py --config configs/dedup.yaml [key=value ...]
    guardray dedup --config configs/dedup.yaml input_dir=... output_dir=...
    ray job submit --working-dir . -- python jobs/dedup.py --config configs/dedup.yaml
"""

from __future__ import annotations

import logging

from guardray.cli.job_runner import script_main
from guardray.dedup import DedupConfig

log = logging.getLogger("guardray.jobs.dedup")


def main(cfg: DedupConfig) -> None:
    """Remove exact and near-duplicate rows of ``cfg.input_dir`` into ``cfg.output_dir``."""
    from guardray.cli.ray_init import init_ray
    from guardray.dedup import check_paths, run_dedup

    check_paths(cfg)  # bad folders fail before Ray starts
    init_ray(cfg.ray, cfg)
    result = run_dedup(cfg)
    counts = result["counts"]
    log.info("dedup done: %d rows in, %d kept, dropped %s; %d shard(s), removed rows in %s, "
             "manifest %s", counts["in"], counts["out"], counts["dropped"],
             len(result["shards"]), result["removed"], result["manifest"])


if __name__ == "__main__":
    script_main("dedup", main)
