"""Merge job: checkpoints on disk merged with a MergeKit-style recipe (linear / model soup, task
arithmetic, TIES, DARE, SLERP, Model Stock), streaming one tensor at a time.

Usage:
    python jobs/merge.py --config configs/merge/ties.yaml output_dir=outputs/merged
    guardray merge configs/merge/ties.yaml outputs/merged [key=value ...] [--overwrite]
    ray job submit --working-dir . -- python jobs/merge.py --config RECIPE output_dir=s3://...
"""

from __future__ import annotations

from guardray.cli.job_runner import script_main


def main(cfg) -> None:
    """Merge the recipe's models into ``cfg.output_dir`` (replaced atomically)."""
    from guardray.config import ConfigError
    from guardray.merge import run_merge

    if not cfg.output_dir:
        raise ConfigError("output_dir: the merge job needs an output folder "
                          "(guardray merge RECIPE OUTPUT_DIR, or output_dir=... )")
    result = run_merge(cfg, cfg.output_dir, overwrite=cfg.overwrite, progress=cfg.progress,
                       prefetch=cfg.prefetch)
    stats = result.stats
    print(f"merged {stats['merged']} tensors (+{stats['copied']} copied) with "
          f"{cfg.method.name} in {result.seconds:.1f} s -> {result.output_dir}")


if __name__ == "__main__":
    script_main("merge", main)
