"""Batch classification of unlabelled rows on Ray Data (``guardray classify``).

Input: a JSONL / CSV / Parquet file or a Parquet folder, local or ``s3://``, read in the
driver (`guardray.data.read_table`, as `guardray evaluate` reads its data). Each row is judged
under one or more policies: ``model.policy_ids`` (``--policy``) for every row, else the row's
``policy_column`` (a string, or a list of strings), else every served policy. Each (row,
policy) pair becomes one output row: the input's columns pass through, then

    row                   int64    the row's position in the input
    policy_id             string   the policy (null for a policy-less text guard)
    unsafe_probability    float64  P(unsafe)
    label                 string   ``safe`` / ``unsafe`` at the threshold
    threshold             float64  the threshold used (the checkpoint's stored one: the
                                   policy's own when the checkpoint stores one per policy)
    truncated             bool     the model input was longer than ``max_length`` tokens

Input columns with these names are kept as ``input_<name>``. Only the pair index, the text and
the policy cross into Ray; scoring runs in an actor pool (`GuardScorer`, one model load per
actor; a GPU per actor when the cluster has one). Output: a folder of Parquet shards
``part-00000.parquet`` ... (each shard written atomically; locally the whole folder is swapped
into place at the end, so readers see the old output or the new one) plus ``manifest.json``;
or a single ``.jsonl`` / ``.csv`` / ``.parquet`` file written atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from guardray.errors import DataError
from guardray.serve.guard import SAFE, UNSAFE, GuardInfo, GuardScorer

log = logging.getLogger(__name__)

ROW, POLICY, PROB, LABEL, THRESHOLD, TRUNCATED = (
    "row", "policy_id", "unsafe_probability", "label", "threshold", "truncated")
OUTPUT_COLUMNS = (ROW, POLICY, PROB, LABEL, THRESHOLD, TRUNCATED)
_PAIR, _TEXT = "_pair", "_text"
FILE_SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class ClassifyActor:
    """Ray Data class UDF: pandas (_pair, _text, policy_id) -> (_pair, prob, truncated)."""

    def __init__(self, info: GuardInfo):
        self.scorer = GuardScorer(info)

    def __call__(self, batch):
        texts = batch[_TEXT].tolist()
        policies = [p if isinstance(p, str) else "" for p in batch[POLICY].tolist()]
        probs, truncated = self.scorer.score(texts, policies)
        out = batch[[_PAIR]].copy()
        out[PROB] = probs
        out[TRUNCATED] = truncated
        return out


def expand_pairs(frame, text_column: str, policy_column: str | None, info: GuardInfo,
                 forced: Sequence[str] = ()):
    """One (row, policy) pair per policy a row is judged under (pure pandas).

    Args:
        frame: the input rows, (n, c).
        text_column: the prompt column.
        policy_column: per-row policies (string or list of strings); may be absent.
        info: the guard (its served policies are the valid ones and the default).
        forced: policies for every row (``--policy``), overriding the column.

    Returns:
        DataFrame (m, 3) with ``_pair`` (0..m-1), ``row``, ``policy_id``, ``_text``, ordered by
        row then policy.

    Raises:
        DataError: no text column, a missing text, or a policy the guard does not serve.
    """
    import pandas as pd

    if text_column not in frame.columns:
        raise DataError(f"input has no text column {text_column!r}; its columns are "
                        f"{list(frame.columns)} (pass --text-column)")
    texts = frame[text_column].tolist()
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(f"rows {bad[:5]} have no text in column {text_column!r} (null or not a "
                        "string)")
    served = list(info.policy_ids)
    default = served or [None]
    use_column = not forced and policy_column and policy_column in frame.columns
    column = frame[policy_column].tolist() if use_column else [None] * len(frame)
    rows, policies, pair_texts = [], [], []
    for i, (text, value) in enumerate(zip(texts, column)):
        wanted = list(forced) or _row_policies(value) or default
        for pid in dict.fromkeys(wanted):
            if pid is not None and pid not in served:
                valid = served or "none (this guard takes no policy)"
                raise DataError(f"row {i}: unknown policy {pid!r}; the guard serves {valid} "
                                "(choose with --policy)")
            rows.append(i)
            policies.append(pid)
            pair_texts.append(text)
    return pd.DataFrame({_PAIR: np.arange(len(rows), dtype=np.int64),
                         ROW: np.asarray(rows, dtype=np.int64),
                         POLICY: pd.Series(policies, dtype=object), _TEXT: pair_texts})


def _row_policies(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if isinstance(v, str) and v.strip()]
    return [str(value)]


def assemble(frame, pairs, probs: np.ndarray, truncated: np.ndarray, threshold: float,
             policy_thresholds: Mapping[str, float] | None = None):
    """The output rows: input columns (renamed on collision) + `OUTPUT_COLUMNS` (pure).

    Args:
        frame: input rows (n, c).
        pairs: `expand_pairs` output (m rows).
        probs, truncated: (m,) per pair, in ``_pair`` order.
        threshold: the decision threshold.
        policy_thresholds: a policy's own threshold, for the pairs under it.
    """
    rename = {c: f"input_{c}" for c in frame.columns if c in OUTPUT_COLUMNS}
    base = frame.rename(columns=rename).iloc[pairs[ROW].to_numpy()].reset_index(drop=True)
    base[ROW] = pairs[ROW].to_numpy()
    base[POLICY] = pairs[POLICY].to_numpy()
    base[PROB] = probs.astype(np.float64)
    per = policy_thresholds or {}
    cuts = np.array([float(per.get(p, threshold)) for p in pairs[POLICY]], dtype=np.float64)
    base[LABEL] = np.where(probs >= cuts, UNSAFE, SAFE)
    base[THRESHOLD] = cuts
    base[TRUNCATED] = truncated.astype(bool)
    return base


def output_kind(uri: str) -> str:
    """``jsonl``, ``csv`` or ``parquet`` for a single output file, else ``folder``."""
    lower = uri.lower().rstrip("/")
    return next((fmt for s, fmt in FILE_SUFFIXES.items() if lower.endswith(s)), "folder")


def run_classify(cfg, connect: Callable[[], None]) -> dict[str, Any]:
    """Classify ``cfg.input`` with ``cfg.model`` and write ``cfg.output_dir``.

    Args:
        cfg: a `guardray.serve.config.ClassifyConfig`.
        connect: connects to Ray (called after every check that needs no Ray has passed).

    Returns:
        Summary: ``rows``, ``pairs``, ``unsafe``, ``truncated``, ``threshold``, ``output``,
        ``files``, ``model``.

    Raises:
        ConfigError, ModelError, DataError, FileExistsError: before Ray starts.
    """
    import ray

    from guardray.data import read_table
    from guardray.serve.guard import resolve_guard

    cfg.check_runnable()
    so = cfg.storage_options or None
    info = resolve_guard(cfg.model, num_cpus=cfg.num_cpus)
    kind = output_kind(cfg.output_dir)
    _check_output(cfg.output_dir, kind, cfg.overwrite, so)
    frame = read_table(cfg.input, fmt=cfg.format, storage_options=so)
    pairs = expand_pairs(frame, cfg.text_column, cfg.policy_column, info,
                         forced=cfg.model.policy_ids)
    log.info("classifying %d rows (%d row-policy pairs) with %s", len(frame), len(pairs),
             info.name)
    connect()
    num_gpus = cfg.num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    probs = np.zeros(len(pairs), dtype=np.float64)
    trunc = np.zeros(len(pairs), dtype=bool)
    if len(pairs):
        from guardray.io.ray_data import to_pandas_with_progress

        ds = ray.data.from_pandas(pairs[[_PAIR, _TEXT, POLICY]])
        ds = ds.map_batches(ClassifyActor, fn_constructor_kwargs={"info": info},
                            batch_size=cfg.batch_size, batch_format="pandas",
                            concurrency=cfg.concurrency, num_cpus=cfg.num_cpus,
                            num_gpus=num_gpus or None)
        out = to_pandas_with_progress(ds, "classify", len(pairs), unit="pair")
        if len(out) != len(pairs):
            raise DataError(f"inference returned {len(out)} rows for {len(pairs)} pairs")
        order = out[_PAIR].to_numpy()
        probs[order] = out[PROB].to_numpy(dtype=np.float64)
        trunc[order] = out[TRUNCATED].to_numpy(dtype=bool)
    result = assemble(frame, pairs, probs, trunc, info.threshold, info.policy_thresholds)
    files = write_output(result, cfg.output_dir, kind, rows_per_shard=cfg.rows_per_shard,
                         overwrite=cfg.overwrite, storage_options=so,
                         manifest=_manifest_args(cfg, info, frame, result))
    summary = {"model": info.name, "version": info.version, "rows": len(frame),
               "pairs": len(result), "unsafe": int((result[LABEL] == UNSAFE).sum()),
               "truncated": int(result[TRUNCATED].sum()), "threshold": info.threshold,
               "policy_thresholds": dict(info.policy_thresholds),
               "output": cfg.output_dir, "files": files}
    log.info("classified %d pairs: %d unsafe, %d truncated -> %s", summary["pairs"],
             summary["unsafe"], summary["truncated"], cfg.output_dir)
    return summary


def _check_output(uri: str, kind: str, overwrite: bool, so) -> None:
    from guardray.io import uris
    from guardray.io.folders import check_output_location

    loc = uris.parse_uri(uri)
    if kind == "folder":
        check_output_location(loc.uri, "output_dir")
        if not overwrite and uris.exists(loc.uri, so) and uris.list_files(loc.uri, so):
            raise FileExistsError(f"output {loc.uri} exists and is not empty; pass "
                                  "--overwrite to replace it")
    else:
        if not loc.is_s3:
            check_output_location(os.path.dirname(loc.path), "output_dir")
        if not overwrite and uris.exists(loc.uri, so):
            raise FileExistsError(f"output {loc.uri} exists; pass --overwrite to replace it")


def _manifest_args(cfg, info: GuardInfo, frame, result) -> dict[str, Any]:
    return {"inputs": [cfg.input], "config": cfg,
            "counts": {"in": len(frame), "out": len(result)},
            "extra": {"model": {"name": info.name, "version": info.version,
                                "path": info.path, "input_format": info.input_format},
                      "policies": list(info.policy_ids), "threshold": info.threshold,
                      "threshold_source": info.threshold_source,
                      "policy_thresholds": dict(info.policy_thresholds),
                      "unsafe": int((result[LABEL] == UNSAFE).sum()),
                      "truncated": int(result[TRUNCATED].sum())}}


def write_output(result, uri: str, kind: str, *, rows_per_shard: int, overwrite: bool,
                 storage_options=None, manifest: dict[str, Any] | None = None) -> list[str]:
    """Write the output rows: a single file, or Parquet shards + manifest in a folder.

    Returns:
        The written data files.
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardray.io import uris

    if kind != "folder":
        with uris.open_atomic(uri, storage_options) as fh:
            if kind == "parquet":
                pq.write_table(pa.Table.from_pandas(result, preserve_index=False), fh)
            elif kind == "csv":
                fh.write(result.to_csv(index=False).encode("utf-8"))
            else:
                text = result.to_json(orient="records", lines=True, force_ascii=False)
                fh.write(text.encode("utf-8"))
        return [uris.parse_uri(uri).uri]

    def write_shards(folder: str) -> list[str]:
        from guardray.io.manifest import write_manifest
        from guardray.io.shards import shard_name

        written = []
        starts = range(0, max(1, len(result)), rows_per_shard)
        for k, start in enumerate(starts):
            part = result.iloc[start:start + rows_per_shard]
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), buf,
                           compression="zstd")
            target = uris.join_uri(folder, shard_name(k))
            with uris.open_atomic(target, storage_options) as fh:
                fh.write(buf.getvalue())
            written.append(target)
        if manifest is not None:
            write_manifest(folder, "classify", storage_options=storage_options, **manifest)
        return written

    loc = uris.parse_uri(uri)
    if loc.is_s3:
        if overwrite and uris.exists(loc.uri, storage_options):  # no stale shards survive
            for name in uris.list_files(loc.uri, storage_options):
                uris.delete_file(uris.join_uri(loc.uri, name), storage_options)
        return write_shards(loc.uri)
    from guardray.io.folders import atomic_folder

    with atomic_folder(loc.path, overwrite=overwrite) as tmp:
        names = [os.path.basename(p) for p in write_shards(str(tmp))]
    return [os.path.join(loc.path, n) for n in names]
