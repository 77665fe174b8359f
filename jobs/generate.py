"""Synthetic data generation (GuardFormer 3.1, 3.3): policies -> labelled prompt shards.

Usage:
    python jobs/generate.py --config configs/generate.yaml [key=value ...]
    guardray generate --config configs/generate.yaml llm.backend=openai_http
    ray job submit --working-dir . -- python jobs/generate.py --config configs/generate.yaml

Rerunning with the same config and output_dir resumes an interrupted run. The samples without
near-duplicates (the input of the later stages) are in ``{output_dir}/dedup``.
"""

from __future__ import annotations

import logging

from guardray.cli.job_runner import script_main
from guardray.generate import GenerateConfig

log = logging.getLogger("guardray.jobs.generate")


def main(cfg: GenerateConfig) -> None:
    """Generate synthetic samples for ``cfg.policies`` on Ray with ``cfg``."""
    from guardray.cli.ray_init import init_ray
    from guardray.generate import preflight, run_generate

    preflight(cfg)  # policies, templates, output folder, shards already there: before Ray
    if cfg.llm.backend == "transformers":
        # Convert an embedded model once here, not in every actor at the same time.
        from guardray.modeling.offline import resolve_model

        resolve_model(cfg.llm.model)
    init_ray(cfg.ray, cfg)
    manifest = run_generate(cfg)
    counts, stages = manifest["counts"], manifest["extra"]["stages"]
    lines = [
        f"generate: {counts['out']} samples from {counts['in']} requests in {cfg.output_dir}",
        f"  rejected: {counts['dropped'] or 'none'}",
        f"  reflection: {stages['reflect']}",
        f"  diversify: {stages['diversify']}",
        f"  tasks: {stages['write']['tasks_run_now']} run now, "
        f"{stages['write']['tasks_done_before']} done before",
        _dedup_line(stages["dedup"]),
    ]
    print("\n".join(lines))


def _dedup_line(dedup: dict) -> str:
    if not dedup.get("enabled"):
        return "  dedup: disabled (later stages would read the raw shards)"
    return (f"  dedup ({dedup['method']}, {dedup['scope']} scope, threshold "
            f"{dedup['threshold']}): {dedup['out']} of {dedup['in']} kept, dropped "
            f"{dedup['dropped']} -> {dedup['output_dir']}")


if __name__ == "__main__":
    script_main("generate", main)
