"""Ingest job: labelled prompts from files, the hub and PyPI packages as sample shards.

Usage:
    python jobs/ingest.py --config configs/ingest.yaml [key=value ...]
    guardray ingest --config configs/ingest.yaml output_dir=...
    ray job submit --working-dir . -- python jobs/ingest.py --config configs/ingest.yaml
"""

from __future__ import annotations

import logging

from guardray.cli.job_runner import script_main
from guardray.ingest import IngestConfig

log = logging.getLogger("guardray.jobs.ingest")


def main(cfg: IngestConfig) -> None:
    """Import ``cfg.sources`` into sample shards in ``cfg.output_dir``."""
    from guardray.cli.ray_init import init_ray
    from guardray.ingest import check_config, run_ingest

    check_config(cfg)  # policies, packages, files and the output folder fail before Ray starts
    init_ray(cfg.ray, cfg)
    result = run_ingest(cfg)
    counts = result["counts"]
    log.info("ingest done: %d rows mapped, %d written, dropped %s; %d shard(s), manifest %s",
             counts["in"], counts["out"], counts["dropped"], len(result["shards"]),
             result["manifest"])
    for policy, labels in sorted(result["totals"].items()):
        log.info("  %-10s %s", policy, {k: dict(sorted(v.items())) for k, v in labels.items()})


if __name__ == "__main__":
    script_main("ingest", main)
