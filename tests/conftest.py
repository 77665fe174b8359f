"""Shared test fixtures.

Environment (set before anything imports Ray or transformers):
- HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: nothing may download from a model hub in tests.
- RAY_AUTH_MODE=disabled, RAY_DATA_DISABLE_PROGRESS_BARS=1, a short RAY_TMPDIR (Unix socket
  paths must stay under 107 characters).

One Ray instance serves the whole test session (`ray_session`). It declares more logical CPUs
than the machine has, and Ray Train workers in tests ask for fractional CPUs: a Train worker
that takes a whole CPU on a 2-core machine starves Ray Data and deadlocks (DESIGN.md).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray Data 2.60 lists Parquet files with 32 FooterReader actors (new processes) per
# read_parquet call: 5-15 s per read on 2 cores; one is plenty for test-sized folders.
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "gr-ray"))
Path(os.environ["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)

REPO_ROOT = Path(__file__).resolve().parent.parent

# Logical CPUs the shared Ray instance declares (the machine has 2 physical cores).
RAY_TEST_CPUS = 4


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every test that needs Ray; shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=RAY_TEST_CPUS,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=os.environ["RAY_TMPDIR"],
            runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}},
        )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()
