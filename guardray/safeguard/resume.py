"""Reusing finished steps of an earlier run of the safeguard job (same ``output_dir``).

A step (one seed's fine-tune, the response guard) leaves ``_done.json`` in its folder with a
key: a hash of everything its output depends on (the base's weights, its rows, its settings).
A rerun reuses a step whose key is unchanged and redoes the others; merged candidates keep
their own fingerprint (`guardray.safeguard.evaluate.fingerprint`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

DONE = "_done.json"


def step_key(*parts: Any) -> str:
    """A short hash of JSON-serialisable ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def weights_key(path: str) -> str:
    """Content hash of a model folder's weights and config (a hub id hashes its name)."""
    from guardray.serve import weights_version

    return weights_version(path)


def load_done(folder: str | Path, key: str) -> dict[str, Any] | None:
    """The record of a finished step in ``folder`` whose key is ``key``, else None."""
    path = Path(folder) / DONE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return saved.get("record") if saved.get("key") == key else None


def mark_done(folder: str | Path, key: str, record: dict[str, Any]) -> None:
    """Record a finished step (written atomically, after its outputs)."""
    from guardray.io.uris import write_json_atomic

    write_json_atomic(Path(folder) / DONE, {"key": key, "record": record})
