"""Read one data file into *records*: the raw prompts of a source, before any mapping.

A records frame (pandas) has the columns of `RECORD_COLUMNS`:

- ``text``: the raw prompt value (a string, or anything else the file held: checked later);
- ``label``: the raw label value (None when the source has no label column);
- ``policy``: the raw per-record policy id (None without a policy column);
- ``categories``: a list of strings (the category column's values, or the keys of a JSON
  object of arrays, or a chatterbot file's ``categories``);
- ``file``: how rules name the file (``file:<path>`` categories) and ``source``: the row
  provenance written to the ``source`` column.

Formats: ``jsonl``, ``json`` (objects), ``csv``, ``tsv``, ``parquet`` go
through `guardray.data.read_table`; ``json`` arrays of strings, ``json_key`` arrays,
``lines`` and ``chatterbot`` are parsed here. Every error names the source and the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from guardray.data import DatasetError, is_missing

TEXT, LABEL, POLICY, CATEGORIES, FILE, SOURCE = (
    "text", "label", "policy", "categories", "file", "source")
RECORD_COLUMNS = (TEXT, LABEL, POLICY, CATEGORIES, FILE, SOURCE)
TABULAR = ("jsonl", "csv", "tsv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
             ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".txt": "lines"}


def detect_format(location: str, where: str) -> str:
    """The format of ``location`` from its suffix.

    Raises:
        DatasetError: unknown suffix (YAML files need ``format: chatterbot``).
    """
    lower = location.lower()
    for suffix, fmt in _SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    raise DatasetError(f"{where}: cannot tell the format of {location!r} from its name; set "
                       f"the source's format ({', '.join(sorted(set(_SUFFIXES.values())))}, "
                       "chatterbot)")


def read_records(location: str, *, fmt: str, where: str, text_column: str = TEXT,
                 label_column: str | None = None, category_column: str | None = None,
                 policy_column: str | None = None, json_key: str | None = None,
                 storage_options: Mapping[str, Any] | None = None):
    """Read one file into a records frame (without ``file``/``source``, added by the caller).

    Args:
        location: local path or ``s3://`` location.
        fmt: a format name, or ``auto``.
        where: how errors name the source (``"source 'dna'"``).
        text_column, label_column, category_column, policy_column: fields of object records.
        json_key: for ``json``: the key of the array, ``"*"`` for an object of arrays.
        storage_options: S3 settings.

    Raises:
        DatasetError: unreadable file, wrong layout, or a missing column (listing those found).
    """
    if fmt == "auto":
        fmt = detect_format(location, where)
    what = f"{where}: {location}"
    columns = {TEXT: text_column, LABEL: label_column, CATEGORIES: category_column,
               POLICY: policy_column}
    if fmt in TABULAR:
        from guardray.data import read_table

        try:
            frame = read_table(location, fmt=fmt, storage_options=storage_options)
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        return records_from_frame(frame, columns, what)
    if fmt == "json":
        return _from_json(_load_json(location, what, storage_options), json_key, columns, what)
    if fmt == "lines":
        text = _read_text(location, what, storage_options)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return records_of([{TEXT: ln} for ln in lines])
    if fmt == "chatterbot":
        return _from_chatterbot(location, what)
    raise DatasetError(f"{where}: unknown format {fmt!r}")


# --------------------------------------------------------------------------- helpers


def _read_bytes(location: str, what: str, storage_options) -> bytes:
    from guardray.io import uris

    try:
        return uris.read_bytes(location, storage_options)
    except FileNotFoundError:
        raise DatasetError(f"{what}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{what}: cannot read: {exc}") from None


def _read_text(location: str, what: str, storage_options) -> str:
    try:
        return _read_bytes(location, what, storage_options).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{what}: not UTF-8 text ({exc})") from None


def _load_json(location: str, what: str, storage_options) -> Any:
    try:
        return json.loads(_read_text(location, what, storage_options))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{what}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def records_from_frame(frame, columns: dict[str, str | None], what: str):
    missing = [c for c in columns.values() if c is not None and c not in frame.columns]
    if missing:
        raise DatasetError(f"{what}: missing column(s) {missing}; available: "
                           f"{', '.join(map(str, frame.columns)) or 'none'} (set the source's "
                           "text_column / label_column / category_column / policy_column)")
    records = []
    for values in zip(*(frame[c].tolist() if c else [None] * len(frame)
                        for c in columns.values())):
        records.append(dict(zip(columns, values)))
    return records_of(records)


def _from_json(data: Any, json_key: str | None, columns: dict[str, str | None], what: str):
    if json_key == "*":
        if not isinstance(data, dict):
            raise DatasetError(f"{what}: json_key '*' expects an object of arrays, got a JSON "
                               f"{type(data).__name__}")
        records = []
        for key, items in data.items():
            if isinstance(items, list):
                records += [{**r, CATEGORIES: [str(key)]} for r in _items(items, columns, what)]
        return records_of(records)
    if json_key is not None:
        if not isinstance(data, dict) or json_key not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DatasetError(f"{what}: no key {json_key!r} (found {keys})")
        data = data[json_key]
    if not isinstance(data, list):
        keys = sorted(data) if isinstance(data, dict) else []
        raise DatasetError(f"{what}: expected a JSON array; this is a JSON "
                           f"{type(data).__name__}{f' with keys {keys}' if keys else ''} "
                           "(set json_key)")
    return records_of(_items(data, columns, what))


def _items(items: list, columns: dict[str, str | None], what: str) -> list[dict]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            missing = [c for c in columns.values() if c is not None and c not in item]
            if missing:
                raise DatasetError(f"{what}: item {i} lacks field(s) {missing}; it has "
                                   f"{sorted(item)}")
            out.append({k: item[c] if c else None for k, c in columns.items()})
        else:
            out.append({TEXT: item})
    return out


def _from_chatterbot(location: str, what: str):
    """First user turn of each conversation; the file's ``categories`` as categories."""
    from guardray.config import ConfigError, load_yaml

    if "://" in location and not location.startswith("file://"):
        raise DatasetError(f"{what}: chatterbot files are read from local folders only")
    try:
        data = load_yaml(location.removeprefix("file://"))
    except ConfigError as exc:
        raise DatasetError(f"{what}: {exc}") from None
    conversations = data.get("conversations")
    if not isinstance(conversations, list):
        raise DatasetError(f"{what}: not a chatterbot-corpus file (no 'conversations' list)")
    categories = [str(c) for c in data.get("categories") or []]
    records = [{TEXT: conv[0], CATEGORIES: list(categories)}
               for conv in conversations if isinstance(conv, list) and conv]
    return records_of(records)


def records_of(records: list[dict]):
    import pandas as pd

    rows = []
    for r in records:
        cats = r.get(CATEGORIES)
        rows.append({TEXT: r.get(TEXT), LABEL: r.get(LABEL), POLICY: r.get(POLICY),
                     CATEGORIES: _as_categories(cats), FILE: "", SOURCE: ""})
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


def _as_categories(value: Any) -> list[str]:
    if value is None or (not isinstance(value, (list, tuple, str)) and is_missing(value)):
        return []
    if isinstance(value, str):
        return [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def display_path(path: str) -> str:
    """A path as rules name it: forward slashes."""
    return path.replace(os.sep, "/")
