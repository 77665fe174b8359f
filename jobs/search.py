"""Merge-search job: UniGuard from the fine-tuned TaskGuards / MultiTaskGuard, as Ray Tune trials
driven by a Thompson-sampling searcher (UniGuard appendix A.5).

Usage:
    python jobs/search.py --config configs/search.yaml [key=value ...]
    guardray search --config configs/search.yaml
    ray job submit --working-dir . -- python jobs/search.py --config configs/search.yaml
"""

from __future__ import annotations

from guardray.cli.job_runner import script_main


def main(cfg) -> None:
    """Search merge recipes of ``cfg``'s pool on Ray Tune and export UniGuard."""
    from guardray.cli.ray_init import init_ray
    from guardray.search import prepare, run_search

    prepared = prepare(cfg)  # pool, data and weights: bad inputs fail before Ray starts
    init_ray(cfg.ray, cfg)
    summary = run_search(cfg, prepared=prepared)
    print(f"UniGuard ({summary['method']} of {', '.join(summary['members'])}): objective "
          f"{summary['objective']:.4f} ({summary['aggregate']} validation macro-F1) after "
          f"{summary['trials']} trial(s) -> {summary['model_dir']}\n"
          f"recipe: {summary['recipe']}\nreport: {summary['report']}")


if __name__ == "__main__":
    script_main("search", main)
