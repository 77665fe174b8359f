"""``guardray merge CONFIG.yaml OUTPUT_DIR [key=value ...]``: merge checkpoints on disk.

CONFIG uses MergeKit's YAML schema (``merge_method``, ``base_model``, ``models``,
``parameters``, ``dtype``) plus guardray's keys (``seed``, ``device``, ``max_shard_size``).
"""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="merge models (linear, task arithmetic, TIES, DARE, SLERP, Model Stock)",
        description="Merge safetensors checkpoints with a MergeKit-style YAML config, streaming "
        "one tensor at a time. Methods: linear (model_soup), task_arithmetic, ties, dare_linear, "
        "dare_ties, slerp, model_stock.",
    )
    p.add_argument("config", help="merge config YAML (MergeKit schema)")
    p.add_argument("output_dir", help="folder to write the merged model to (replaced atomically)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. parameters.lambda=0.8 seed=3 dtype=bfloat16 (write them "
        "right after OUTPUT_DIR, before any --option)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N or auto (default: the config's device, cpu)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT_DIR if it exists and is not empty"
    )
    p.add_argument("--max-shard-size", default=None, help="e.g. 2GB, 500MB (default: config's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-prefetch",
        action="store_true",
        help="do not read the next tensor while merging the current one",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate the config and the inputs, write nothing"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from guardray.merge.checkpoint import CheckpointError
    from guardray.merge.config import load_merge_config
    from guardray.merge.engine import MergeError

    overrides = list(args.overrides)
    if args.max_shard_size:
        overrides.append(f"max_shard_size={args.max_shard_size}")
    cfg = load_merge_config(args.config, overrides)
    try:
        if args.dry_run:
            return _dry_run(cfg, args)
        from guardray.merge.executor import run_merge

        result = run_merge(
            cfg,
            args.output_dir,
            overwrite=args.overwrite,
            device=args.device,
            progress=not args.no_progress,
            prefetch=not args.no_prefetch,
        )
    except (CheckpointError, MergeError, FileExistsError, NotADirectoryError) as exc:
        # The config is valid but the models or the output folder are not: exit 1, no traceback.
        logging.getLogger("guardray").error("merge failed: %s", exc)
        return 1
    stats = result.stats
    print(
        f"merged {stats['merged']} tensors (+{stats['copied']} copied) with "
        f"{cfg.method.name} in {result.seconds:.1f} s -> {result.output_dir}"
    )
    return 0


def _dry_run(cfg, args) -> int:
    from guardray.merge.engine import check_compatible
    from guardray.merge.executor import build_job

    job, opened = build_job(cfg, args.device)
    try:
        names = check_compatible(job)
    finally:
        for src in opened.values():
            src.close()
    print(
        f"ok: {cfg.method.name} over {len(job.sources)} model(s), {len(names)} tensors; "
        f"nothing written (dry run)"
    )
    return 0
