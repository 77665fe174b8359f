"""Connecting a job to Ray: a cluster when one is given, else a local instance.

The only place guardray calls ``ray.init``; the job scripts (``jobs/*.py``) call `init_ray`.

A local instance (no ``ray.address``, no ``RAY_ADDRESS``) serves one machine, so it listens on
the loopback interface only. Ray 2.60 binds its GCS server, raylet, object manager and worker
gRPC servers to all interfaces (``*:PORT``) on Linux: anyone on the network could reach them.
Ray picks the loopback address itself where it does not support clusters (its constant
``ENABLE_RAY_CLUSTER``, environment ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); guardray sets
that for its local instance (`LOOPBACK_ENV`), which makes the node address ``127.0.0.1`` and
every one of those servers bind to it (checked by ``tests/cli/test_ray_init.py``). The
dashboard, when asked for, binds to ``127.0.0.1`` too. A cluster is secured as
``cluster/README.md`` describes (token authentication, a private network, no public
dashboard).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("guardray.jobs")

LOOPBACK = "127.0.0.1"
# Ray's switch for "no multi-node cluster on this machine": its node address becomes the
# loopback address (ray/_private/services.py get_node_ip_address).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _listen_on_loopback() -> None:
    """Make the local Ray instance (and the processes it starts) use ``127.0.0.1``."""
    os.environ[LOOPBACK_ENV] = "0"  # read when ray is imported, and by every Ray process
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray was imported before this call: its constant is set
        constants.ENABLE_RAY_CLUSTER = False


def _configure_ray_data() -> None:
    """Ray Data settings every guardray job wants.

    An exception raised in a ``map_batches`` function (a `guardray.errors.StorageError` on a
    full disk, a `guardray.io.shards.ShardSchemaError`...) reaches the driver as itself, not
    as Ray Data's ``UserCodeException``, which keeps only its traceback text: so it ends as
    guardray's one-line error (`guardray.errors.one_line`).
    """
    import ray.data

    ray.data.DataContext.get_current().raise_original_map_exception = True


def _load_torch_first() -> None:
    """Load torch in the main thread before Ray starts its threads in this process.

    A job driver that first imported torch after Ray Data had run (the pipeline: seed rows,
    then pretraining) died at its first matrix product, one run in three under ``ray job
    submit`` on a 2-node cluster: "Intel oneMKL FATAL ERROR: Cannot load .../libtorch_cpu.so",
    then a segmentation fault. Loaded first, it never did (docs/ARCHITECTURE.md, "Environment
    facts"). Every stage but policy checks uses torch, so this costs nothing extra.
    """
    try:
        import torch  # noqa: F401
    except ImportError:  # a job that needs no torch, on a node without it
        pass


# Fields of a job config that name where stages hand data over (read by workers).
SHARED_FIELDS = ("output_dir", "storage_path", "log_dir")


def check_shared_storage(cfg, job, nodes: int) -> None:
    """Refuse local paths in ``job``'s `SHARED_FIELDS` on a cluster of ``nodes`` > 1 nodes,
    unless ``cfg.shared_filesystem`` says every node mounts them.

    Raises:
        ConfigError: naming the field, the path and the two ways out.
    """
    from guardray.errors import ConfigError
    from guardray.io.uris import parse_uri

    if nodes <= 1 or cfg.shared_filesystem or job is None:
        return
    for field in SHARED_FIELDS:
        value = getattr(job, field, None)
        if isinstance(value, str) and value and not parse_uri(value).is_s3:
            raise ConfigError(
                f"{field}: {value!r} is a path on the driver's machine, but the Ray cluster has "
                f"{nodes} nodes: workers on the others cannot read or write it. Use shared "
                f"storage ({field}=s3://bucket/prefix), or ray.shared_filesystem=true if every "
                "node mounts this path")


def init_ray(cfg, job=None) -> None:
    """Start or join Ray according to a `guardray.config.RayConfig`.

    Under ``ray job submit`` RAY_ADDRESS is set and the job joins that cluster; on a cluster
    of several nodes, ``job``'s output locations must be shared storage
    (`check_shared_storage`). Locally it starts an instance with ``cfg.num_cpus`` logical
    CPUs, listening on ``127.0.0.1`` only (see the module docstring), and no dashboard unless
    asked (then on ``127.0.0.1``). Calling it again in the same process is a no-op.
    """
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if not address:
        _listen_on_loopback()  # before ``import ray`` where possible
    _load_torch_first()
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
        _configure_ray_data()
        check_shared_storage(cfg, job, sum(1 for n in ray.nodes() if n.get("Alive")))
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray Data 2.60 starts 32 Parquet footer-reader processes per read by default: seconds of
    # start-up per read on a small machine for no gain; a few suffice on one node.
    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", str(min(4, os.cpu_count() or 1)))
    log.info("starting a local Ray instance (num_cpus=%s) listening on %s", cfg.num_cpus or "all",
             LOOPBACK)
    ray.init(num_cpus=cfg.num_cpus, include_dashboard=cfg.dashboard, dashboard_host=LOOPBACK,
             configure_logging=False)
    _configure_ray_data()
