"""Binary labels of labelled data: safe (0) / unsafe (1), from the many ways files spell them.

`normalize_labels`: 0/1 integers, 0.0/1.0 floats, booleans (True is unsafe), and the strings
``"0"``, ``"1"``, ``"safe"``, ``"unsafe"`` (any case, surrounding spaces ignored) are accepted;
``label_map`` adds names (``{"benign": "safe"}``). Anything else fails with the unknown values
and their counts; missing labels fail with their row numbers. Nothing is guessed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guardray.errors import DataError
from guardray.errors import MissingDependencyError as _MissingDependency

SAFE_NAMES = ("0", "safe")
UNSAFE_NAMES = ("1", "unsafe")


class DatasetError(DataError):
    """A dataset cannot be read or mapped; the message names the file, column or values."""


class MissingDependencyError(_MissingDependency):
    """An optional package (``datasets``) needed for hub loading is not installed."""


def normalize_labels(values: Sequence[Any], *, where: str = "label column",
                     label_map: Mapping[str, Any] | None = None) -> np.ndarray:
    """Map raw label values to 0 (safe) / 1 (unsafe).

    Args:
        values: the raw column (ints, floats, bools or strings).
        where: how to name the column in errors (``"data.csv: column 'label'"``).
        label_map: extra names, e.g. ``{"benign": "safe", "jailbreak": 1}`` (keys matched
            case-insensitively after stripping; values are 0/1/"safe"/"unsafe").

    Returns:
        (n,) int8 array.

    Raises:
        DatasetError: missing labels (row numbers) or unknown values (with counts), listing
            the accepted values.
    """
    names: dict[str, int] = {n: 0 for n in SAFE_NAMES} | {n: 1 for n in UNSAFE_NAMES}
    for key, target in (label_map or {}).items():
        names[str(key).strip().lower()] = _target(target, key)
    out = np.empty(len(values), dtype=np.int8)
    missing: list[int] = []
    unknown: Counter = Counter()
    for i, value in enumerate(values):
        label = _one_label(value, names)
        if label is None:
            if is_missing(value):
                missing.append(i)
            else:
                unknown[repr(value)] += 1
            continue
        out[i] = label
    if missing:
        raise DatasetError(f"{where}: {len(missing)} row(s) have no label (rows {missing[:10]}"
                           f"{' ...' if len(missing) > 10 else ''})")
    if unknown:
        shown = ", ".join(f"{v} ({n}x)" for v, n in unknown.most_common(10))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise DatasetError(
            f"{where}: unknown label value(s) {shown}{more}; accepted: 0/1, true/false "
            f"booleans, {', '.join(repr(n) for n in sorted(names))} (add names with a label map, "
            "e.g. --label-map benign=safe)")
    return out


def _target(target: Any, key: Any) -> int:
    t = str(target).strip().lower()
    if t in SAFE_NAMES:
        return 0
    if t in UNSAFE_NAMES:
        return 1
    raise DatasetError(f"label map entry {key!r}: {target!r} must be safe/unsafe or 0/1")


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _one_label(value: Any, names: dict[str, int]) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return int(bool(value))
    if isinstance(value, (int, np.integer)):
        return int(value) if value in (0, 1) else None
    if isinstance(value, (float, np.floating)):
        return int(value) if value in (0.0, 1.0) else None
    if isinstance(value, str):
        return names.get(value.strip().lower())
    return None
