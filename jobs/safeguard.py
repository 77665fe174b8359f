"""Safeguard job: LoRA fine-tunes of an aligned chat LLM, a merge sweep of base and fine-tunes,
downstream score and attack success rate of every candidate, the trade-off report and the
chosen model (../shared/papers/safeguard-merging.txt).

Usage:
    python jobs/safeguard.py --config configs/safeguard.yaml [key=value ...]
    guardray safeguard --config configs/safeguard.yaml
    ray job submit --working-dir . -- python jobs/safeguard.py --config configs/safeguard.yaml
"""

from __future__ import annotations

from guardray.cli.job_runner import script_main


def main(cfg) -> None:
    """Run the safeguard job of ``cfg`` and print its trade-off table."""
    from guardray.cli.ray_init import init_ray
    from guardray.safeguard import run_safeguard
    from guardray.safeguard.report import table

    result = run_safeguard(cfg, connect=lambda: init_ray(cfg.ray, cfg))  # Ray after the checks
    print(table(result["rows"], result["judges"]), end="")
    print(f"chosen: {result['chosen'] or 'none'} ({result['reason']})")


if __name__ == "__main__":
    script_main("safeguard", main)
