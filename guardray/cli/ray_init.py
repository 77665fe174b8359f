"""Connecting a job to Ray: a cluster when one is given, else a local instance.

The only place guardray calls ``ray.init``; the job scripts (``jobs/*.py``) call `init_ray`.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("guardray.jobs")


def init_ray(cfg) -> None:
    """Start or join Ray according to a `guardray.config.RayConfig`.

    Under ``ray job submit`` RAY_ADDRESS is set and the job joins that cluster. Locally it
    starts an instance with ``cfg.num_cpus`` logical CPUs and no dashboard unless asked.
    Calling it again in the same process is a no-op.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray Data 2.60 starts 32 Parquet footer-reader processes per read by default: seconds of
    # start-up per read on a small machine for no gain; a few suffice on one node.
    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", str(min(4, os.cpu_count() or 1)))
    log.info("starting a local Ray instance (num_cpus=%s)", cfg.num_cpus or "all")
    ray.init(num_cpus=cfg.num_cpus, include_dashboard=cfg.dashboard, configure_logging=False)
