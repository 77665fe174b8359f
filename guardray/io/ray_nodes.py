"""Which Ray nodes did a stage's work: the node ids of this job's tasks and actors.

`write_manifest` records them (``ray_nodes``) so that a run on a cluster shows where each
stage ran: Ray Data tasks and actor pools, Tune trials, Train workers and their controller all
run as tasks of the driver's job, each on a node. They are read from Ray's state API (the
dashboard's, present on clusters started with ``ray start`` and in guardray's dependencies);
a local instance started without a dashboard has none, and then nothing is recorded.

A stage's work is what started since the previous manifest this process wrote (or since this
module was imported): the pipeline's stages run one after another in one driver, and each
standalone job writes one manifest.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger(__name__)

_since_ms = int(time.time() * 1000)


def mark() -> None:
    """Start counting a new stage's work from now."""
    global _since_ms
    _since_ms = int(time.time() * 1000)


def job_nodes(since_ms: int | None = None) -> dict[str, int] | None:
    """``{node id: tasks}`` of this job's tasks (actor tasks included) that started at or after
    ``since_ms`` (default: the last `mark`), or None when Ray is not connected or its state
    API does not answer. The state API returns at most 10,000 tasks per call (its limit):
    on a job with more, the oldest are missed, which only ever hides a node, never adds one."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    since = _since_ms if since_ms is None else since_ms
    try:
        from ray.util.state import list_tasks

        job = ray.get_runtime_context().get_job_id()
        tasks = list_tasks(filters=[("job_id", "=", job)], limit=10_000, detail=True,
                           timeout=15, raise_on_missing_output=False)
    except Exception as exc:  # no dashboard (local instance), or it is busy: not worth failing
        log.debug("Ray state API unavailable, no node ids recorded: %s", exc)
        return None
    counts = Counter(t.node_id for t in tasks
                     if t.node_id and (t.start_time_ms or 0) >= since)
    return dict(sorted(counts.items()))
