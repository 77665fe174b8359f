"""Serve job: a trained guard behind a Ray Serve HTTP JSON API (dynamic batching).

Usage:
    guardray serve --model DIR [--policy ID ...] [--host 127.0.0.1] [--port 8000]
    python jobs/serve.py --config configs/serve.yaml model.path=DIR
    serve run guardray.serve.app:build_app model.path=DIR      # any Ray cluster, see
                                                               # cluster/README.md

Runs until interrupted (Ctrl-C), then deletes the application.
"""

from __future__ import annotations

import time

from guardray.cli.job_runner import script_main
from guardray.serve import ServeConfig


def main(cfg: ServeConfig, *, block: bool = True) -> str:
    """Deploy the guard and (with ``block``) keep serving until Ctrl-C; returns its URL."""
    from guardray.cli.ray_init import init_ray
    from guardray.serve import resolve_guard, start_serving, stop_serving

    info = resolve_guard(cfg.model, num_cpus=cfg.deployment.num_cpus)  # fail before Ray
    init_ray(cfg.ray, cfg)
    url = start_serving(cfg, info)
    print(f"guard serving at {url} (POST {url}/v1/classify, GET {url}/healthz, "
          f"{url}/docs); Ctrl-C to stop", flush=True)
    if not block:
        return url
    try:
        while True:
            time.sleep(3600)
    finally:
        stop_serving(cfg)


if __name__ == "__main__":
    script_main("serve", main)
