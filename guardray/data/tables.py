"""Labelled datasets for evaluation and fine-tuning: local files, column mapping, benchmarks.

Any JSONL (or JSON array), CSV/TSV or Parquet file (or a folder of Parquet files, such as a
stage's shard folder), local or ``s3://``, becomes a pandas DataFrame with the sample columns
of `guardray.schema`: ``ID``, ``TEXT``, ``LABEL`` (0 safe / 1 unsafe, int8), ``POLICY_ID``,
plus ``SPLIT``, ``RATIONALE``, ``SOURCE`` and ``GENERATOR`` when the file has them, and `ROW`
(the row's position in the file).

Label normalisation (`normalize_labels`): 0/1 integers, 0.0/1.0 floats, booleans (True is
unsafe), and the strings ``"0"``, ``"1"``, ``"safe"``, ``"unsafe"`` (any case, surrounding
spaces ignored) are accepted; ``label_map`` adds names (``{"benign": "safe"}``). Anything else
fails with the unknown values and their counts; missing labels fail with their row numbers.
Nothing is guessed.

Benchmarks (`guardray.data.benchmarks`): the public test sets of GuardFormer 4.1 with their
binary label mappings, read from the Hugging Face hub through the optional ``datasets``
package, or from a local export of the hub data (``DataSpec(benchmark=..., path=...)``), which
is how tests and air-gapped clusters use them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.data.labels import DatasetError, is_missing, normalize_labels

log = logging.getLogger(__name__)

ROW = "row"  # the row's position in the file it was read from
PROVENANCE = (S.SOURCE, S.GENERATOR)  # kept when the file has them
FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
_SUFFIXES = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
}


# --------------------------------------------------------------------------- reading files


def detect_format(path: str) -> str:
    """The file format from the suffix (``.jsonl``, ``.csv``, ``.parquet``...).

    Raises:
        DatasetError: unknown suffix, listing the known ones.
    """
    lower = path.lower().rstrip("/")
    for suffix, fmt in _SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    raise DatasetError(f"{path}: cannot tell the format from the file name; use one of "
                       f"{', '.join(sorted(_SUFFIXES))} or pass the format explicitly "
                       f"({', '.join(FORMATS)})")


def read_table(path: str | os.PathLike[str], *, fmt: str | None = None,
               storage_options: Mapping[str, Any] | None = None):
    """Read a whole file (or a folder of Parquet files) into a pandas DataFrame, as stored.

    Args:
        path: local path, ``file://`` or ``s3://`` location.
        fmt: one of `FORMATS`; default from the suffix (folders are Parquet).
        storage_options: S3 settings (see `guardray.io.uris`).

    Raises:
        DatasetError: missing or unreadable file, with the reason (bad JSON line number...).
    """
    import pandas as pd

    from guardray.io import uris

    loc = uris.parse_uri(path).uri
    if fmt is not None and fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if _is_dir(loc, storage_options):
        return _read_parquet_folder(loc, storage_options)
    fmt = fmt or detect_format(loc)
    try:
        data = uris.read_bytes(loc, storage_options)
    except FileNotFoundError:
        raise DatasetError(f"{loc}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{loc}: cannot read: {exc}") from None
    if fmt == "parquet":
        return _read_parquet_bytes(data, loc)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{loc}: not UTF-8 text ({exc}); is it really {fmt}?") from None
    if fmt in ("csv", "tsv"):
        try:
            # Everything as strings: labels like "0"/"safe" and text are normalised below, and
            # pandas must not turn "NA" or "None" prompts into missing values.
            return pd.read_csv(io.StringIO(text), sep="," if fmt == "csv" else "\t", dtype=str,
                               keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise DatasetError(f"{loc}: not a readable {fmt.upper()} file ({exc})") from None
    return pd.DataFrame.from_records(_json_records(text, loc, fmt))


def _is_dir(loc: str, storage_options) -> bool:
    from pyarrow import fs as pafs

    from guardray.io import uris

    filesystem, p = uris.get_filesystem(loc, storage_options)
    return filesystem.get_file_info(p).type == pafs.FileType.Directory


def _read_parquet_bytes(data: bytes, where: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{where}: not a readable Parquet file ({exc})") from None


def _read_parquet_folder(loc: str, storage_options):
    import pandas as pd

    from guardray.io import shards, uris

    paths = shards.list_shards(loc, storage_options)
    if not paths:
        raise DatasetError(f"{loc}: folder holds no Parquet files (*.parquet)")
    frames = [_read_parquet_bytes(uris.read_bytes(p, storage_options), p) for p in paths]
    return pd.concat(frames, ignore_index=True)


def _json_records(text: str, where: str, fmt: str) -> list[dict]:
    stripped = text.lstrip()
    if fmt == "json" and stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
        if bad:
            raise DatasetError(f"{where}: item {bad[0]} of the JSON array is not an object")
        return records
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: line {lineno} is not valid JSON ({exc.msg}); expected "
                               "one JSON object per line") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: line {lineno} is a JSON {type(record).__name__}, "
                               "expected an object")
        records.append(record)
    return records


# --------------------------------------------------------------------------- specs and loading


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where a labelled dataset comes from and how to map its columns.

    Attributes:
        path: a local/``s3://`` file or folder; None with a benchmark means the hub.
        benchmark: a `guardray.data.benchmarks.BENCHMARKS` key: its column and label mapping
            apply.
        name: display name (default: benchmark title or file stem).
        text_column, label_column: source columns for plain files.
        policy_column: source column holding per-row policy ids (optional).
        id_column: source column of stable row ids (default: content hash of policy + text).
        split: keep only rows whose split column equals this (files with a split column).
        split_column: the source split column.
        rationale_column: source column of rationales (kept when present).
        label_map: extra label names (see `normalize_labels`).
        limit: read at most this many rows (after filtering), for quick runs.
        format: file format, default from the suffix.
    """

    path: str | None = None
    benchmark: str | None = None
    name: str | None = None
    text_column: str = S.TEXT
    label_column: str = S.LABEL
    policy_column: str | None = S.POLICY_ID
    id_column: str | None = None
    split: str | None = None
    split_column: str = S.SPLIT
    rationale_column: str | None = S.RATIONALE
    label_map: Mapping[str, Any] | None = None
    limit: int | None = None
    format: str | None = None

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.benchmark:
            from guardray.data.benchmarks import benchmark

            return benchmark(self.benchmark).title
        base = os.path.basename(str(self.path).rstrip("/"))
        for suffix in _SUFFIXES:
            if base.lower().endswith(suffix):
                return base[: -len(suffix)]
        return base


def parse_data_spec(text: str, **mapping: Any) -> DataSpec:
    """Parse a command-line dataset: ``PATH``, ``bench:KEY`` (hub) or ``bench:KEY=PATH``.

    Args:
        text: the spec.
        **mapping: other `DataSpec` fields (columns, split, label_map...).
    """
    if text.startswith("bench:"):
        from guardray.data.benchmarks import benchmark

        key, _, path = text[len("bench:"):].partition("=")
        benchmark(key)
        return DataSpec(path=path or None, benchmark=key, **mapping)
    return DataSpec(path=text, **mapping)


@dataclasses.dataclass
class LabeledData:
    """A loaded dataset: the frame in sample columns plus how it was produced.

    Attributes:
        name: display name.
        frame: pandas DataFrame with ``ROW``, ``ID``, ``TEXT``, ``LABEL``, ``POLICY_ID`` (and
            ``SPLIT``/``RATIONALE`` when the source had them).
        source: where it was read from.
        dropped: rows left out, by reason.
    """

    name: str
    frame: Any
    source: str
    dropped: dict[str, int]

    def __len__(self) -> int:
        return len(self.frame)


def load_labeled(spec: DataSpec, *, policy_id: str | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> LabeledData:
    """Load ``spec`` into sample columns.

    Args:
        spec: where and how.
        policy_id: the policy every row belongs to (used when the source has no policy column,
            and to keep only that policy's rows when it has one).
        storage_options: S3 settings.

    Raises:
        DatasetError: unreadable file, missing columns (listing the available ones), missing
            or unknown labels, or no rows left.
        MissingDependencyError: a hub benchmark without ``datasets`` installed.
    """
    if spec.benchmark:
        from guardray.data.benchmarks import benchmark, load_hub_frame

        bench = benchmark(spec.benchmark)
        source = spec.path or f"hf:{bench.hub_id}/{bench.config or ''}/{spec.split or bench.split}"
        raw = (read_table(spec.path, fmt=spec.format, storage_options=storage_options)
               if spec.path else load_hub_frame(bench, spec.split, spec.limit))
        _require(raw, bench.columns, source, hint=f"a {bench.hub_id} export")
        texts, labels, dropped = bench.to_text_label(raw)
        texts = _texts(list(texts), f"{source}: text of {bench.key}")
        frame = _frame(texts, labels, [policy_id or ""] * len(texts), None, None, None)
    else:
        if not spec.path:
            raise DatasetError("a dataset needs a path (or a benchmark)")
        source = spec.path
        raw = read_table(spec.path, fmt=spec.format, storage_options=storage_options)
        raw, dropped = _filter_split(raw, spec, source)
        _require(raw, [spec.text_column, spec.label_column], source,
                 hint="set the text/label column names (--text-column, --label-column)")
        labels = normalize_labels(raw[spec.label_column].tolist(),
                                  where=f"{source}: column {spec.label_column!r}",
                                  label_map=spec.label_map)
        texts = _texts(raw[spec.text_column].tolist(), f"{source}: column {spec.text_column!r}")
        policies = _policies(raw, spec, policy_id)
        keep = _policy_mask(policies, policy_id, raw, spec, dropped)
        ids = (raw[spec.id_column].astype(str).tolist() if _has(raw, spec.id_column, source)
               else None)
        splits = raw[spec.split_column].tolist() if spec.split_column in raw.columns else None
        frame = _frame(texts, labels, policies, ids, splits, _rationales(raw, spec))
        for column in PROVENANCE:  # where each row came from (the training mix uses it)
            if column in raw.columns:
                frame[column] = raw[column].astype(str).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        frame[ROW] = np.arange(len(frame), dtype=np.int64)
    if spec.limit is not None and len(frame) > spec.limit:
        dropped["over_limit"] = len(frame) - spec.limit
        frame = frame.iloc[: spec.limit].reset_index(drop=True)
    if len(frame) == 0:
        raise DatasetError(f"{source}: no rows left to evaluate (dropped: {dropped or 'none'})")
    log.info("dataset %s: %d rows (%d unsafe) from %s; dropped %s", spec.display_name,
             len(frame), int(frame[S.LABEL].sum()), source, dropped or "none")
    return LabeledData(spec.display_name, frame, str(source), dict(dropped))


def _require(raw, needed: Sequence[str], source: str, hint: str) -> None:
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {missing}; available: "
                           f"{', '.join(map(str, raw.columns)) or 'none'} ({hint})")


def _has(raw, column: str | None, source: str) -> bool:
    if column is None:
        return False
    _require(raw, [column], source, hint="the id column was set explicitly")
    return True


def _filter_split(raw, spec: DataSpec, source: str):
    dropped: dict[str, int] = {}
    if spec.split is None:
        return raw, dropped
    _require(raw, [spec.split_column], source, hint=f"split={spec.split!r} needs a split column")
    mask = raw[spec.split_column].astype(str) == spec.split
    if not mask.any():
        found = sorted(raw[spec.split_column].astype(str).unique().tolist())
        raise DatasetError(f"{source}: no rows with {spec.split_column}={spec.split!r}; "
                           f"splits present: {found}")
    dropped["other_split"] = int((~mask).sum())
    return raw[mask].reset_index(drop=True), dropped


def _texts(values: list[Any], where: str) -> list[str]:
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise DatasetError(f"{where}: {len(bad)} row(s) are not text (rows {bad[:10]}, e.g. "
                           f"{values[bad[0]]!r})")
    return values


def _policies(raw, spec: DataSpec, policy_id) -> list[str]:
    if spec.policy_column and spec.policy_column in raw.columns:
        return raw[spec.policy_column].astype(str).tolist()
    return [policy_id or ""] * len(raw)


def _policy_mask(policies: list[str], policy_id, raw, spec: DataSpec, dropped) -> np.ndarray:
    keep = np.ones(len(policies), dtype=bool)
    has_column = spec.policy_column and spec.policy_column in raw.columns
    if policy_id and has_column:
        keep = np.asarray([p == policy_id for p in policies], dtype=bool)
        if not keep.any():
            raise DatasetError(f"no rows of policy {policy_id!r}; policies present: "
                               f"{sorted(set(policies))}")
        if (~keep).any():
            dropped["other_policy"] = int((~keep).sum())
    return keep


def _rationales(raw, spec: DataSpec):
    if spec.rationale_column and spec.rationale_column in raw.columns:
        return ["" if is_missing(v) else str(v) for v in raw[spec.rationale_column].tolist()]
    return None


def _frame(texts, labels, policies, ids, splits, rationales):
    import pandas as pd

    data: dict[str, Any] = {
        ROW: np.arange(len(texts), dtype=np.int64),
        S.ID: ids if ids is not None else [S.sample_id(p, t) for p, t in zip(policies, texts)],
        S.POLICY_ID: policies,
        S.TEXT: texts,
        S.LABEL: np.asarray(labels, dtype=np.int8),
    }
    if splits is not None:
        data[S.SPLIT] = [str(s) for s in splits]
    if rationales is not None:
        data[S.RATIONALE] = rationales
    return pd.DataFrame(data)
