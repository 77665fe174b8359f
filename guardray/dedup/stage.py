"""The dedup stage on Ray Data: exact, then semantic near-duplicate removal.

`dedup_dataset` is what the generation pipeline calls in-process; `run_dedup` is the job body
(read shards, dedup, write kept shards + removed rows + manifest).

Data flow (only small per-row arrays and the embeddings ever reach the driver):

1. ``map_batches`` adds two uint64 columns to every row: a *row key* (hash of all its values,
   `guardray.dedup.normalize.row_key`) and the hash of its normalised text. The keyed Dataset
   is materialised once: every later pass reads it from the object store.
2. The driver gathers ``(id, policy_id, row key, text hash)`` and decides exact duplicates and
   the processing order (`guardray.dedup.plan`).
3. Survivors are filtered by row key (a sorted key array shared through the object store) and
   embedded by an actor pool (`guardray.dedup.embed`); the driver gathers the embeddings into
   one ``(survivors, dim)`` array in processing order (1M x 384 float32 = 1.5 GB; float16
   halves it) and runs the chosen method per scope (`guardray.dedup.plan.near_dedup`).
4. Kept rows are selected by row key in ``map_batches`` (lazy Dataset); removed rows are
   gathered with their text and their kept row's text into the removed-rows table.

Identical copies of one row (same values everywhere) share a row key: one copy is kept, the
others are recorded as exact duplicates of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from guardray import schema
from guardray.dedup import plan
from guardray.dedup import removed as R
from guardray.dedup.config import DedupConfig
from guardray.dedup.embed import EMBEDDING, embed_dataset
from guardray.dedup.normalize import row_key, text_hashes
from guardray.dedup.semantic import GlobalParams
from guardray.progress import Progress

logger = logging.getLogger(__name__)

ROW_KEY = "_dedup_row_key"
TEXT_HASH = "_dedup_text_hash"


@dataclass
class DedupOutput:
    """Everything `dedup_dataset_detailed` produces.

    Attributes:
        kept: lazy Ray Dataset of the kept rows (sample schema).
        removed: removed-rows table (`guardray.dedup.removed.removed_schema`).
        counts: manifest counts ``{"in", "out", "dropped": {reason: n}}``.
        extra: per-scope counts, method statistics and timings (for the manifest).
    """

    kept: Any
    removed: pa.Table
    counts: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def dedup_dataset(ds, cfg: DedupConfig):
    """Deduplicate a Ray Dataset of sample rows.

    Args:
        ds: ``ray.data.Dataset`` with the sample columns (`guardray.schema.COLUMNS`).
        cfg: `DedupConfig` (scope, method, threshold, embedder, global-method knobs).

    Returns:
        ``(kept_ds, removed_table, counts)``; see `DedupOutput`.
    """
    out = dedup_dataset_detailed(ds, cfg)
    return out.kept, out.removed, out.counts


def dedup_dataset_detailed(ds, cfg: DedupConfig, *, progress: bool = True) -> DedupOutput:
    """`dedup_dataset` with the statistics kept (`DedupOutput`)."""
    _check_columns(ds)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    keyed = ds.select_columns(list(schema.COLUMNS)).map_batches(
        _add_keys, batch_format="pyarrow", zero_copy_batch=True).materialize()
    meta = _gather(keyed.select_columns([schema.ID, schema.POLICY_ID, ROW_KEY, TEXT_HASH]),
                   [schema.ID, schema.POLICY_ID, ROW_KEY, TEXT_HASH])
    n = meta.num_rows
    ids, policies = meta.column(schema.ID), meta.column(schema.POLICY_ID)
    keys = _u64(meta.column(ROW_KEY))
    plan.check_row_keys(ids, keys)
    scopes, names = plan.scope_codes(policies, cfg.scope)
    order = plan.row_order(ids, keys, scopes)
    exact_rep = plan.exact_dedup(order, scopes, _u64(meta.column(TEXT_HASH)))
    timings["keys_and_exact"] = round(time.perf_counter() - t0, 3)

    rep = exact_rep.copy()  # final representative (row position) of each removed row, else -1
    sim = np.where(exact_rep >= 0, 1.0, 0.0).astype(np.float32)
    reason = np.where(exact_rep >= 0, 1, 0).astype(np.int8)  # 0 kept, 1 exact, 2 near
    survivors = order[exact_rep[order] < 0]  # row positions, in processing order
    stats: dict[str, dict] = {}
    if cfg.method != "exact_only" and len(survivors) > 1:
        t1 = time.perf_counter()
        if cfg.method == "global" and cfg.global_method.distributed:
            outcome = _distributed(keyed, keys[survivors], scopes[survivors], names, cfg)
            timings["embed_and_near_dedup"] = round(time.perf_counter() - t1, 3)
        else:
            emb = _embed_survivors(keyed, keys[survivors], cfg)
            timings["embed"] = round(time.perf_counter() - t1, 3)
            t2 = time.perf_counter()
            outcome = plan.near_dedup(
                emb, scopes[survivors], names, method=cfg.method, threshold=cfg.threshold,
                per_batch_size=cfg.per_batch_size, params=_global_params(cfg), progress=progress)
            del emb
            timings["near_dedup"] = round(time.perf_counter() - t2, 3)
        stats = outcome.stats
        near = ~outcome.result.keep
        rep[survivors[near]] = survivors[outcome.result.rep[near]]
        sim[survivors[near]] = outcome.result.sim[near]
        reason[survivors[near]] = 2
        # an exact duplicate whose text twin was then removed as a near-duplicate points at
        # the twin's kept row, with the twin's similarity
        chained = (reason == 1) & (reason[np.maximum(exact_rep, 0)] == 2)
        rep[chained] = rep[exact_rep[chained]]
        sim[chained] = sim[exact_rep[chained]]

    t3 = time.perf_counter()
    kept_pos = np.flatnonzero(rep < 0)
    kept = _select_kept(keyed, keys, kept_pos)
    removed_table = _removed_table(keyed, meta, keys, order, rep, sim, reason, scopes, names, cfg)
    timings["select"] = round(time.perf_counter() - t3, 3)
    dropped = {plan.EXACT: int((reason == 1).sum()), plan.NEAR: int((reason == 2).sum())}
    counts = {"in": n, "out": len(kept_pos), "dropped": dropped}
    per_scope = {}
    for code, name in enumerate(names):
        mask = scopes == code
        if mask.any():
            per_scope[name] = {"in": int(mask.sum()), "out": int((mask & (rep < 0)).sum()),
                               plan.EXACT: int((mask & (reason == 1)).sum()),
                               plan.NEAR: int((mask & (reason == 2)).sum())}
    logger.info("dedup: %d rows in, %d out, dropped %s", n, counts["out"], counts["dropped"])
    extra = {"per_scope": per_scope, "method_stats": stats, "seconds": timings,
             "scope": cfg.scope, "method": cfg.method, "threshold": cfg.threshold}
    return DedupOutput(kept, removed_table, counts, extra)


def _check_columns(ds) -> None:
    names = ds.schema().names if ds.schema() is not None else []
    missing = [c for c in schema.COLUMNS if c not in names]
    if missing:
        raise ValueError(f"dedup input lacks sample column(s) {missing}; it has {names}")


def _global_params(cfg: DedupConfig) -> GlobalParams:
    g = cfg.global_method
    return GlobalParams(
        n_clusters=g.n_clusters, target_cluster_size=g.target_cluster_size, probes=g.probes,
        max_neighbors=g.max_neighbors, max_cluster_size=g.max_cluster_size, seed=cfg.seed,
        niter=g.niter, max_points_per_centroid=g.max_points_per_centroid,
        block_size=g.block_size)


def _u64(column) -> np.ndarray:
    return np.asarray(column.to_numpy(), dtype=np.uint64)


# ----------------------------------------------------------------- map_batches bodies


def _add_keys(batch: pa.Table) -> pa.Table:
    """Append the row key and the normalised-text hash (both uint64) to a sample batch."""
    columns = [batch.column(c).to_pylist() for c in schema.COLUMNS]
    keys = np.fromiter((row_key(values) for values in zip(*columns)), np.uint64, batch.num_rows)
    hashes = text_hashes(batch.column(schema.TEXT).to_pylist())
    return batch.append_column(ROW_KEY, pa.array(keys, pa.uint64())).append_column(
        TEXT_HASH, pa.array(hashes, pa.uint64()))


def _select_keys(batch: pa.Table, keys_ref, columns: list[str]) -> pa.Table:
    """Rows whose row key is in the sorted key array behind ``keys_ref``; only ``columns``."""
    import ray

    keys = ray.get(keys_ref[0])
    batch_keys = _u64(batch.column(ROW_KEY))
    return batch.filter(pa.array(_isin_sorted(batch_keys, keys))).select(columns)


def _isin_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def _filter(keyed, keys: np.ndarray, columns: list[str]):
    """Lazy Dataset of the keyed rows whose row key is in ``keys``."""
    import ray

    ref = ray.put(np.unique(keys))
    return keyed.map_batches(_select_keys, batch_format="pyarrow",
                             fn_kwargs={"keys_ref": [ref], "columns": columns})


def _gather(ds, columns: list[str]) -> pa.Table:
    """All rows of a (small-columned) Dataset as one table on the driver."""
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    if not tables:
        return pa.table({c: pa.array([], _type_of(c)) for c in columns})
    return pa.concat_tables([t.select(columns) for t in tables]).combine_chunks()


def _type_of(column: str) -> pa.DataType:
    if column in (ROW_KEY, TEXT_HASH):
        return pa.uint64()
    return schema.arrow_schema().field(column).type


# ----------------------------------------------------------------- steps


def _embed_survivors(keyed, survivor_keys: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Embeddings of the survivors, ``(len(survivor_keys), dim)``, in the given order."""
    sort_idx = np.argsort(survivor_keys, kind="stable")
    sorted_keys = survivor_keys[sort_idx]
    filtered = _filter(keyed, survivor_keys, [ROW_KEY, schema.TEXT])
    emb: np.ndarray | None = None
    filled = np.zeros(len(survivor_keys), bool)
    progress = Progress("dedup: embedding", len(survivor_keys), unit="row")
    for batch in embed_dataset(filtered, cfg.embedder, [ROW_KEY]).iter_batches(
            batch_format="numpy", batch_size=None):
        vectors = np.asarray(batch[EMBEDDING])
        progress.update(len(vectors))
        if emb is None:
            emb = np.empty((len(survivor_keys), vectors.shape[1]), vectors.dtype)
        target = sort_idx[np.searchsorted(sorted_keys, batch[ROW_KEY].astype(np.uint64))]
        emb[target] = vectors
        filled[target] = True
    progress.close()
    if emb is None or not filled.all():
        raise RuntimeError(f"embedding returned {int(filled.sum())} of {len(survivor_keys)} rows")
    return emb


def _distributed(
    keyed, survivor_keys, survivor_scopes, names, cfg: DedupConfig
) -> plan.NearOutcome:
    """Embed the survivors into the object store and run `distributed_global_dedup`."""
    import ray

    from guardray.dedup.distributed import distributed_global_dedup

    sort_idx = np.argsort(survivor_keys, kind="stable")
    ref = ray.put({"keys": survivor_keys[sort_idx], "rank": sort_idx})
    embedded = embed_dataset(_filter(keyed, survivor_keys, [ROW_KEY, schema.TEXT]), cfg.embedder,
                             [ROW_KEY]).map_batches(_add_rank, batch_format="numpy",
                                                   fn_kwargs={"state_ref": [ref]}).materialize()
    result, stats = distributed_global_dedup(embedded, survivor_scopes, cfg.threshold,
                                             _global_params(cfg), embedding_column=EMBEDDING)
    out: dict[str, dict] = {}
    for code, st in stats.items():
        mask = survivor_scopes == code
        out[names[code]] = {**plan._stats_dict(st), "rows": st.n,
                            "near_removed": int((mask & ~result.keep).sum())}
    return plan.NearOutcome(result, out)


def _add_rank(batch: dict, state_ref) -> dict:
    """Replace the row key by the survivor's rank (its position in the processing order)."""
    import ray

    from guardray.dedup.distributed import RANK

    state = ray.get(state_ref[0])
    pos = np.searchsorted(state["keys"], np.asarray(batch[ROW_KEY], np.uint64))
    return {RANK: state["rank"][pos], EMBEDDING: batch[EMBEDDING]}


def _select_kept(keyed, keys: np.ndarray, kept_pos: np.ndarray):
    """Lazy Dataset of the kept rows; identical copies of a kept row appear once."""
    import ray

    columns = list(schema.COLUMNS)
    kept_keys = keys[kept_pos]
    copies = np.isin(keys, kept_keys) & ~np.isin(np.arange(len(keys)), kept_pos)
    dup_keys = np.unique(keys[copies])
    if not len(dup_keys):
        return _filter(keyed, kept_keys, columns)
    single = _filter(keyed, np.setdiff1d(kept_keys, dup_keys), columns)
    dups = _gather(_filter(keyed, dup_keys, [*columns, ROW_KEY]), [*columns, ROW_KEY])
    first = np.unique(_u64(dups.column(ROW_KEY)), return_index=True)[1]
    one_each = dups.take(pa.array(first)).select(columns)
    return single.union(ray.data.from_arrow(one_each))


def _removed_table(keyed, meta, keys, order, rep, sim, reason, scopes, names, cfg) -> pa.Table:
    """The removed-rows table, rows in processing order."""
    removed_pos = order[rep[order] >= 0]
    if not len(removed_pos):
        return R.removed_schema().empty_table()
    rep_pos = rep[removed_pos]
    need = np.concatenate([keys[removed_pos], keys[rep_pos]])
    texts = _gather(_filter(keyed, need, [ROW_KEY, schema.TEXT]), [ROW_KEY, schema.TEXT])
    text_keys, first = np.unique(_u64(texts.column(ROW_KEY)), return_index=True)
    text_col = texts.column(schema.TEXT).take(pa.array(first))

    def text_of(pos: np.ndarray) -> pa.Array:
        return text_col.take(pa.array(np.searchsorted(text_keys, keys[pos])))

    ids, policies = meta.column(schema.ID), meta.column(schema.POLICY_ID)
    method = np.where(reason[removed_pos] == 1, "exact", cfg.method)
    return R.removed_table({
        R.REMOVED_ID: ids.take(pa.array(removed_pos)),
        R.KEPT_ID: ids.take(pa.array(rep_pos)),
        R.SIMILARITY: sim[removed_pos],
        R.REASON: np.where(reason[removed_pos] == 1, plan.EXACT, plan.NEAR).tolist(),
        R.METHOD: method.tolist(),
        R.SCOPE: [names[c] for c in scopes[removed_pos]],
        R.POLICY_ID: policies.take(pa.array(removed_pos)),
        R.KEPT_POLICY_ID: policies.take(pa.array(rep_pos)),
        R.TEXT: text_of(removed_pos),
        R.KEPT_TEXT: text_of(rep_pos),
    })


# ----------------------------------------------------------------- job body


def check_paths(cfg: DedupConfig) -> tuple[list[str], list[str]]:
    """Check the job's folders before any work: a bad path fails in a second, not after Ray.

    Every input shard's footer and constrained columns (label, split, source) are read here
    (`guardray.io.shards.check_shard_values`), so a truncated, zero-byte or foreign file, or a
    label of 7, is named by file (and row) before Ray starts. The output location must be a
    writable folder (`guardray.io.folders.check_output_location`).

    Returns:
        ``(input shards, shards already in the output folder)``.

    Raises:
        ConfigError: input and output are the same folder; the input folder is missing or
            holds no shards; the output folder holds shards and ``overwrite`` is false.
        CorruptShardError / ShardSchemaError: an input shard, by name.
        NotADirectoryError / StorageError: the output location is a file, or not writable.
    """
    from guardray.config import ConfigError
    from guardray.io import shards, uris
    from guardray.io.folders import check_output_location

    so = cfg.storage_options or None
    src, dst = uris.parse_uri(cfg.input_dir).uri, uris.parse_uri(cfg.output_dir).uri
    if src.rstrip("/") == dst.rstrip("/"):
        raise ConfigError(f"output_dir must differ from input_dir (both {src!r})")
    try:
        inputs = shards.list_shards(src, so)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ConfigError(f"input_dir: {exc}") from None
    if not inputs:
        raise ConfigError(f"input_dir: no shards (*.parquet) in {src!r}; check the path, or run "
                          "the stage that writes it first")
    for path in inputs:
        shards.check_shard_values(path, so)
    check_output_location(dst, "output_dir")
    try:
        existing = shards.list_shards(dst, so)
    except FileNotFoundError:
        existing = []
    if existing and not cfg.overwrite:
        raise ConfigError(f"output_dir: {dst!r} already holds {len(existing)} shard(s); pass "
                          "overwrite=true to replace them, or choose another output_dir")
    return inputs, existing


def run_dedup(cfg: DedupConfig) -> dict[str, Any]:
    """Read ``cfg.input_dir``, dedup, write kept shards, removed rows and the manifest.

    Ray must already be initialised (``jobs/dedup.py`` does it). Nothing in the output folder
    changes before the new shards are written; old shards are deleted only after that.

    Returns:
        ``{"counts", "shards", "removed", "manifest"}``.

    Raises:
        ConfigError / CorruptShardError / ShardSchemaError / StorageError: bad folders or
            shards (see `check_paths`); a shard whose data pages do not decode, by name.
    """
    from guardray.io import read_shards_dataset, shards, uris, write_dataset_shards, write_manifest
    from guardray.io.ray_data import shard_read_errors

    so = cfg.storage_options or None
    inputs, existing = check_paths(cfg)
    src, dst = uris.parse_uri(cfg.input_dir).uri, uris.parse_uri(cfg.output_dir).uri
    started = time.perf_counter()
    ds = read_shards_dataset(src, so, check_schema=False)  # check_paths read the footers
    with shard_read_errors(inputs, so):  # corrupt data pages: CorruptShardError by file
        out = dedup_dataset_detailed(ds, cfg)
        written = write_dataset_shards(out.kept, dst, storage_options=so)
    if not written:  # no kept rows: an empty shard tells "ran, kept nothing" from "never ran"
        written = [shards.write_shard(schema.arrow_schema().empty_table(), dst, index=0,
                                      if_exists="overwrite", storage_options=so)]
    for stale in sorted(set(existing) - set(written)):
        uris.delete_file(stale, so)
    removed_uri = R.write_removed(out.removed, dst, so)
    out.extra["seconds"]["total"] = round(time.perf_counter() - started, 3)
    manifest = write_manifest(
        dst, "dedup", inputs=[src], config=cfg, counts=out.counts,
        extra={**out.extra, "shards": len(written), "removed_file": removed_uri},
        storage_options=so)
    return {"counts": out.counts, "shards": written, "removed": removed_uri, "manifest": manifest}
