"""What every benchmark script starts with: the repository on ``sys.path``, the offline
environment the tests use, and one line describing the machine for docs/BENCHMARKS.md.

Each script runs as ``python benchmarks/bench_X.py`` (this folder is then on ``sys.path``) and
calls `setup()` before importing guardray, Ray or transformers.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    # one Parquet footer reader per read: the default 32 processes cost seconds on 2 cores
    "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1",
}


def setup(*test_helpers: str) -> Path:
    """Set `OFFLINE_ENV` (keeping values already set), put the repository first on ``sys.path``
    (and ``tests/`` plus ``tests/<name>`` for each helper folder named); returns the repo root."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    paths = [REPO] + ([REPO / "tests"] if test_helpers else [])
    paths += [REPO / "tests" / name for name in test_helpers]
    for p in reversed(paths):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    return REPO


def machine(**extra: object) -> str:
    """``machine: x86_64, 2 cores, python 3.11.7, ...`` plus ``extra`` as ``key value``."""
    parts = [platform.machine(), f"{os.cpu_count()} cores", f"python {platform.python_version()}"]
    parts += [f"{k} {v}" for k, v in extra.items()]
    return "machine: " + ", ".join(parts)
