"""Merge job: checkpoints on disk merged with a MergeKit-style recipe (linear / model soup, task
arithmetic, TIES, DARE, SLERP, Model Stock), streaming one tensor at a time.

Usage:
    python jobs/merge.py --config configs/merge/ties.yaml output_dir=outputs/merged
    guardray merge configs/merge/ties.yaml outputs/merged [key=value ...] [--overwrite]

The merged model is written to a local folder (replaced atomically).
"""

from __future__ import annotations

from guardray.cli.job_runner import script_main


def main(cfg) -> None:
    """Merge the recipe's models into ``cfg.output_dir`` (replaced atomically)."""
    from guardray.config import ConfigError
    from guardray.io import uris
    from guardray.merge import run_merge

    if not cfg.output_dir:
        raise ConfigError("output_dir: the merge job needs an output folder "
                          "(guardray merge RECIPE OUTPUT_DIR, or output_dir=... )")
    if uris.parse_uri(cfg.output_dir).is_s3:
        raise ConfigError(f"output_dir: {cfg.output_dir!r}: the merge writes a local folder; "
                          "merge locally, then upload the folder")
    result = run_merge(cfg, cfg.output_dir, overwrite=cfg.overwrite, progress=cfg.progress,
                       prefetch=cfg.prefetch)
    stats = result.stats
    print(f"merged {stats['merged']} tensors (+{stats['copied']} copied) with "
          f"{cfg.method.name} in {result.seconds:.1f} s -> {result.output_dir}")


if __name__ == "__main__":
    script_main("merge", main)
