"""``guardray merge CONFIG.yaml OUTPUT_DIR [key=value ...]``: merge checkpoints on disk.

CONFIG uses MergeKit's YAML schema (``merge_method``, ``base_model``, ``models``,
``parameters``, ``dtype``) plus guardray's keys (``seed``, ``device``, ``max_shard_size``).
"""

from __future__ import annotations

import argparse
import json


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
    """Load the recipe with the command line's settings, then run ``jobs/merge.py``'s ``main``
    (or only validate it with ``--dry-run``)."""
    from guardray.merge import load_merge_config

    overrides = [f"output_dir={json.dumps(str(args.output_dir))}", *args.overrides]
    if args.max_shard_size:
        overrides.append(f"max_shard_size={args.max_shard_size}")
    for flag, key, value in ((args.overwrite, "overwrite", "true"),
                             (args.no_progress, "progress", "false"),
                             (args.no_prefetch, "prefetch", "false"),
                             (args.device, "device", args.device)):
        if flag:
            overrides.append(f"{key}={value}")
    cfg = load_merge_config(args.config, overrides)
    if args.dry_run:
        return _dry_run(cfg, args)
    from jobs.merge import main

    main(cfg)
    return 0


def _dry_run(cfg, args) -> int:
    from guardray.merge import build_job, check_compatible

    job, opened = build_job(cfg, None)
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
