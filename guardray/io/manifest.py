"""The small ``manifest.json`` every stage writes next to its output.

It records what the stage read, how it was configured and what happened to the rows, so a run
can be audited and compared later (docs/ARCHITECTURE.md, "Data contracts")::

    {
      "manifest_version": 1,
      "stage": "dedup",
      "created_at": "2026-11-23T09:30:00.123456+00:00",   # UTC, ISO 8601
      "guardray_version": "0.1.0",
      "inputs": ["s3://bucket/run1/sdg"],
      "config": {...resolved config...},
      "counts": {"in": 1000, "out": 930, "dropped": {"exact_duplicate": 50, "near_duplicate": 20}},
      "extra": {...anything else: outputs, timings, seeds...},
      "ray_nodes": {"<node id>": 12, ...}   # optional: where the stage's Ray tasks ran
    }

The file is written atomically (`guardray.io.uris.write_json_atomic`): readers see the old
manifest or the new one, never half of either. Config values are converted to JSON on the way
(pydantic models, dataclasses, paths, sets, numpy scalars); anything else fails with an error
naming its key path, before anything is written.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from guardray.errors import DataError
from guardray.io import ray_nodes, uris

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_KEYS = ("manifest_version", "stage", "created_at", "guardray_version", "inputs", "config",
         "counts", "extra")


class ManifestError(DataError):
    """A manifest cannot be built or read; the message names the field or file."""


def write_manifest(
    dir_uri: str | os.PathLike[str],
    stage: str,
    *,
    inputs: Sequence[str | os.PathLike[str]],
    config: Any,
    counts: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Atomically write ``manifest.json`` into the stage's output folder.

    Args:
        dir_uri: the stage's output folder (local or ``s3://``).
        stage: stage name, e.g. ``"sdg"`` or ``"dedup"``.
        inputs: locations (or other identifiers) the stage read.
        config: the resolved config: a dict, pydantic model or dataclass.
        counts: ``{"in": int, "out": int, "dropped": {reason: int}}``; ``dropped`` may be
            omitted (no rows dropped).
        extra: anything else JSON-able (outputs, seeds, timings).
        storage_options: S3 settings (see `guardray.io.uris`).

    Returns:
        The manifest's location string.

    Raises:
        ManifestError: empty stage, bad counts, or a value that cannot be written as JSON.
    """
    if not isinstance(stage, str) or not stage.strip():
        raise ManifestError(f"stage must be a non-empty string, got {stage!r}")
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "stage": stage,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "guardray_version": _guardray_version(),
        "inputs": [os.fspath(i) for i in inputs] if not isinstance(inputs, str) else [inputs],
        "config": to_jsonable(config, "config"),
        "counts": _check_counts(counts),
        "extra": to_jsonable(dict(extra or {}), "extra"),
    }
    nodes = ray_nodes.job_nodes()
    if nodes is not None:  # {node id: tasks} where the stage's Ray work ran
        manifest["ray_nodes"] = nodes
    ray_nodes.mark()
    target = uris.join_uri(dir_uri, MANIFEST_NAME)
    uris.write_json_atomic(target, manifest, storage_options)
    logger.info("wrote manifest %s (stage %s, counts %s)", target, stage, manifest["counts"])
    return target


def read_manifest(
    dir_uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read the ``manifest.json`` in folder ``dir_uri``.

    Raises:
        FileNotFoundError: no manifest (the stage has not finished).
        ManifestError: the file is not valid JSON or lacks required keys.
    """
    target = uris.join_uri(dir_uri, MANIFEST_NAME)
    try:
        data = uris.read_json(target, storage_options)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {uris.parse_uri(dir_uri).uri!r}: "
                                "has the stage that writes this folder finished?") from exc
    except ValueError as exc:
        raise ManifestError(str(exc)) from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{target!r}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise ManifestError(f"{target!r}: missing key(s) {missing}; a manifest has {list(_KEYS)}")
    return data


def _guardray_version() -> str:
    import guardray

    return guardray.__version__


def _check_counts(counts: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``{"in", "out", "dropped"}``: non-negative ints, dropped keyed by reason."""
    if not isinstance(counts, Mapping):
        raise ManifestError(f"counts must be a mapping, got {type(counts).__name__}")
    unknown = sorted(set(counts) - {"in", "out", "dropped"})
    if unknown or "in" not in counts or "out" not in counts:
        raise ManifestError(f"counts has keys {sorted(counts)}: expected 'in', 'out' and "
                            "optionally 'dropped' ({reason: count})")
    dropped = counts.get("dropped") or {}
    if not isinstance(dropped, Mapping):
        raise ManifestError(f"counts['dropped'] must map reason -> count, got {dropped!r}")
    result = {"in": _count(counts["in"], "in"), "out": _count(counts["out"], "out")}
    result["dropped"] = {str(r): _count(n, f"dropped[{r!r}]") for r, n in dropped.items()}
    return result


def _count(value: Any, name: str) -> int:
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        value = value.item()  # numpy scalar
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"counts {name} must be an int >= 0, got {value!r}")
    return value


def to_jsonable(value: Any, path: str = "value") -> Any:
    """Convert ``value`` to plain JSON types, or fail naming the offending key path.

    Handles dicts (string keys), lists/tuples, sets (sorted), pydantic models
    (``model_dump(mode="json")``), dataclasses, ``os.PathLike``, numpy scalars and arrays.

    Raises:
        ManifestError: e.g. ``config.model.dtype: cannot write a torch.dtype as JSON``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ManifestError(f"{path}: {value} is not valid JSON (use null or a string)")
        return value
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), path)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {_key(k, path): to_jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v, f"{path}[*]") for v in value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return to_jsonable(value.tolist(), path)
    raise ManifestError(f"{path}: cannot write a {type(value).__module__}.{type(value).__name__} "
                        "as JSON (convert it to str/int/float/bool/list/dict)")


def _key(key: Any, path: str) -> str:
    if not isinstance(key, str):
        raise ManifestError(f"{path}: key {key!r} is a {type(key).__name__}; JSON keys are strings")
    return key
