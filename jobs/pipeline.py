"""End-to-end pipeline: run every implemented stage, report the rest as not yet available.

Usage:
    python jobs/pipeline.py --config configs/pipeline.yaml [key=value ...]
    guardray pipeline --config configs/pipeline.yaml
    ray job submit --working-dir . -- python jobs/pipeline.py --config configs/pipeline.yaml
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `jobs` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardray.pipeline.config import PipelineConfig  # noqa: E402

log = logging.getLogger("guardray.jobs.pipeline")


def main(cfg: PipelineConfig) -> None:
    """Run the end-to-end pipeline on Ray with ``cfg``."""
    from guardray import schema as S
    from guardray.io.manifest import write_manifest
    from guardray.io.ray_data import read_shards_dataset
    from guardray.io.ray_stats import count_by
    from guardray.io.shards import write_shard
    from guardray.io.uris import join_uri, write_text_atomic
    from guardray.modeling.offline import resolve_model
    from guardray.pipeline.stages import STAGES
    from guardray.policies import load_policies
    from guardray.synth.seed import seed_rows
    from jobs._ray import init_ray

    started = time.time()
    so = cfg.storage_options or None
    results: dict[str, str] = {}

    policies = load_policies(cfg.policies)
    results["policies"] = f"{len(policies)} valid: {', '.join(p.id for p in policies)}"
    log.info("policies: %s", results["policies"])

    models = {}
    if cfg.models.prepare:
        for role, ref in (("generator", cfg.models.generator), ("embedder", cfg.models.embedder)):
            models[role] = resolve_model(ref)
            log.info("%s model: %s", role, models[role])

    init_ray(cfg.ray)
    seed_dir = join_uri(cfg.output_dir, "seed")
    rows = seed_rows(policies, validation=cfg.splits.validation, test=cfg.splits.test, seed=cfg.seed)
    write_shard(rows, seed_dir, index=0, if_exists="overwrite", storage_options=so)
    ds = read_shards_dataset(seed_dir, storage_options=so)
    per_policy: dict[str, dict[str, int]] = {}
    for (policy_id, label), n in count_by(ds, [S.POLICY_ID, S.LABEL]).items():
        per_policy.setdefault(policy_id, {})[S.LABEL_NAMES[int(label)]] = n
    total = sum(sum(c.values()) for c in per_policy.values())
    write_manifest(
        seed_dir, "seed", inputs=list(cfg.policies), config=cfg,
        counts={"in": len(rows), "out": total}, extra={"per_policy": per_policy},
        storage_options=so,
    )
    results["seed"] = f"{total} rows in {seed_dir} " + ", ".join(
        f"{pid}: {c.get('unsafe', 0)} unsafe / {c.get('safe', 0)} safe"
        for pid, c in sorted(per_policy.items())
    )

    lines = ["# guardray pipeline report", "", "| stage | status | result |", "|---|---|---|"]
    for stage in STAGES:
        if stage.name in results:
            status, detail = "done", results[stage.name]
        elif stage.available:
            status, detail = "skipped", "-"
        else:
            status, detail = "not yet available", stage.description
        lines.append(f"| {stage.name} | {status} | {detail} |")
    lines += ["", f"models: {models or 'not prepared'}", f"took {time.time() - started:.1f} s"]
    report = "\n".join(lines) + "\n"
    write_text_atomic(join_uri(cfg.output_dir, "report.md"), report, storage_options=so)
    print(report)


if __name__ == "__main__":
    from guardray.cli.job_runner import script_main

    script_main(PipelineConfig, main)
