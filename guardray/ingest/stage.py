"""The ingest stage: read sources, map them to policies, dedup, split by group, write shards.

Steps (``run_ingest``):

1. `check_config` (no Ray, seconds): policies load, rules name only loaded policies, every
   package is installed at the pinned version with its files present, the output folder is
   free (or ``overwrite``).
2. `prepare_rows` (driver): each source's records are read, cleaned, capped and mapped by its
   rules (`guardray.ingest.mapping`); rows that repeat a (policy, text) across sources are
   kept once, and dropped when their labels disagree.
3. The existing dedup stage (`guardray.dedup.dedup_dataset`, exact + semantic, per policy by
   default) removes duplicates among the imported rows; a kept row whose removed duplicate
   had the other label is dropped too (``drop_label_conflicts``).
4. `guardray.ingest.split.assign_group_splits`: splits by near-duplicate group; held-out rows
   and their groups go to ``test``.
5. Shards (atomic, content-named) and ``manifest.json`` with provenance, counts per
   source x policy x label x split, dropped rows by reason, held-out sources. The dedup
   stage's removed rows go to ``removed/dedup-removed.parquet``.

The manifest (``manifest.json``): ``inputs`` are the provenance strings read; ``counts`` are
rows (one per policy x text): ``in`` mapped by the rules, ``out`` written, ``dropped`` by
reason (cross-source duplicates and label conflicts, duplicates of held-out rows, the dedup
stage's exact/near duplicates, dedup label conflicts). ``extra`` holds:

- ``counts``: ``by_source`` ``{source: {policy: {safe|unsafe: {split: n}}}}``, ``totals``
  ``{policy: ...}`` and ``held_out`` (the cross-source test rows) the same way;
- ``held_out_sources`` / ``held_out_categories`` and ``generator_format``
  (``ingest:<source>[:held_out]``: how a row says where it came from and if it is held out);
- ``sources``: per source, its files (location, provenance, SHA-256, records), records read
  and used, record-level drops (empty, too long, duplicate in source, over the source cap)
  and row-level ones (over a rule cap), and per rule and policy: matched / rows / capped;
- ``groups`` (near-duplicate groups: texts, groups, largest, pulled into test), ``dedup``
  (the dedup stage's counts), ``label_conflicts``, ``disabled_sources``, ``seconds``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.ingest import mapping as M
from guardray.ingest.config import IngestConfig

logger = logging.getLogger(__name__)

REMOVED_DIR = "removed"
REMOVED_FILE = "dedup-removed.parquet"
DROP_NEAR_CONFLICT = "duplicate_label_conflict"
DROP_SHADOWED = "duplicate_of_held_out"
# columns of the dedup stage's removed-rows table (its documented file format)
_REMOVED_ID, _KEPT_ID, _REASON = "removed_id", "kept_id", "reason"


# --------------------------------------------------------------------------- checks


def check_config(cfg: IngestConfig) -> list[str]:
    """Cheap checks before Ray starts; returns the loaded policy ids.

    Raises:
        ConfigError: bad policy files, a rule naming an unknown policy, an occupied
            output folder without ``overwrite``.
        MissingDependencyError: a package source's package is missing or another version.
        DatasetError: a package file pattern matches nothing.
    """
    from guardray.config import ConfigError
    from guardray.ingest.sources import package_files, path_files
    from guardray.policies import load_policies

    ids = [p.id for p in load_policies(cfg.policies)]
    for src in cfg.enabled_sources:
        bad = M.missing_policies(src, ids)
        if bad and cfg.other_policies == "skip":
            logger.info("source %s: rules for policies this run does not load (%s) are skipped",
                     src.name, ", ".join(sorted({p for _, p in bad})))
        elif bad:
            i, p = bad[0]
            raise ConfigError(f"source {src.name!r}: rules[{i}]: unknown policy id {p!r}; "
                              f"loaded policies: {', '.join(sorted(ids))} (from "
                              f"{', '.join(cfg.policies)})")
        if src.package is not None:
            package_files(src)
        elif src.path is not None:
            path_files(src)
    _existing_shards(cfg)
    return ids


def _existing_shards(cfg: IngestConfig) -> list[str]:
    from guardray.config import ConfigError
    from guardray.io import list_shards, parse_uri

    dst = parse_uri(cfg.output_dir).uri
    try:
        existing = list_shards(dst, cfg.storage_options or None)
    except FileNotFoundError:
        existing = []
    if existing and not cfg.overwrite:
        raise ConfigError(f"output_dir: {dst!r} already holds {len(existing)} shard(s); pass "
                          "overwrite=true to replace them, or choose another output_dir")
    return existing


# --------------------------------------------------------------------------- driver side


def prepare_rows(cfg: IngestConfig, policy_ids: list[str]) -> tuple[Any, dict[str, Any]]:
    """Read, clean, cap and map every enabled source; resolve cross-source duplicates.

    Runs on the driver without Ray.

    Returns:
        ``(frame, report)``: the frame has the sample columns plus the private columns of
        `guardray.ingest.mapping` (held-out flag, source name); the report has per-source
        inputs and counts, dropped rows by reason and conflict examples.
    """
    import pandas as pd

    from guardray.ingest.sources import read_source

    parts, sources, inputs = [], {}, []
    for order, src in enumerate(cfg.enabled_sources):
        records, src_inputs = read_source(src, cfg.storage_options or None)
        read = len(records)
        records, dropped = M.clean_records(
            records, replace=src.replace, min_chars=cfg.min_chars, max_chars=cfg.max_chars,
            by_policy=src.policy_column is not None)
        records, capped = M.cap_records(records, src.cap, seed=cfg.seed, salt=src.name)
        if capped:
            dropped[M.DROP_SOURCE_CAP] += capped
        rows, stats = M.map_records(records, src, policy_ids, seed=cfg.seed, order=order,
                                    skip_unknown=cfg.other_policies == "skip")
        dropped.update(stats["dropped"])
        parts.append(rows)
        inputs += src_inputs
        sources[src.name] = {
            "inputs": src_inputs, "records_read": read, "records_used": len(records),
            "records_in_no_row": stats["unmapped"], "dropped": dict(dropped),
            "rules": stats["rules"], "rows": len(rows), "held_out": src.held_out,
            "held_out_categories": list(src.held_out_categories)}
        logger.info("source %s: %d records read, %d used, %d rows for %s", src.name, read,
                    len(records), len(rows), sorted(rows[S.POLICY_ID].unique().tolist()))
    rows = pd.concat(parts, ignore_index=True) if parts else M.empty_rows()
    mapped = len(rows)
    rows, dropped, conflicts = M.resolve_duplicates(rows, drop_conflicts=cfg.drop_label_conflicts)
    report = {"sources": sources, "inputs": inputs, "mapped_rows": mapped,
              "dropped": dict(dropped), "conflicts": conflicts}
    return M.to_sample_frame(rows), report


# --------------------------------------------------------------------------- Ray side


def dedup_rows(frame, cfg: IngestConfig):
    """The dedup stage (public API) on the rows, then kept rows whose duplicates disagreed.

    Returns:
        ``(kept Dataset (materialised), removed-rows table, dedup counts, label conflicts
        {"near_duplicate_rows", "kept_rows_dropped"})``.
    """
    import ray

    from guardray.dedup import DedupConfig, dedup_dataset
    from guardray.io import to_sample_table

    labels = dict(zip(frame[S.ID], frame[S.LABEL].astype(int)))
    # rows sorted by length: dedup embeds them in this order, and batches of similar lengths
    # pad far less (a long jailbreak pads a whole batch of chit-chat)
    ordered = frame.iloc[np.argsort(frame[S.TEXT].str.len().to_numpy(), kind="stable")]
    ds = ray.data.from_arrow(to_sample_table(ordered[list(S.COLUMNS)], where="ingest rows"))
    kept, removed, counts = dedup_dataset(ds, DedupConfig.model_validate(cfg.dedup.model_dump()))
    conflict_ids, n_conflict = label_conflicts(removed, labels)
    dropped = 0
    if cfg.drop_label_conflicts and conflict_ids:
        dropped = len(conflict_ids)
        kept = kept.map_batches(_drop_ids, batch_format="pyarrow",
                                fn_kwargs={"ids_ref": [ray.put(sorted(conflict_ids))]})
    return kept.materialize(), removed, counts, {"near_duplicate_rows": n_conflict,
                                                 "kept_rows_dropped": dropped}


def label_conflicts(removed, labels: dict[str, int]) -> tuple[set[str], int]:
    """Kept ids whose removed duplicates had another label, and how many removed rows did."""
    kept_ids, n = set(), 0
    if removed is None or removed.num_rows == 0:
        return kept_ids, 0
    for rid, kid in zip(removed.column(_REMOVED_ID).to_pylist(),
                        removed.column(_KEPT_ID).to_pylist()):
        if rid in labels and kid in labels and labels[rid] != labels[kid]:
            kept_ids.add(kid)
            n += 1
    return kept_ids, n


def _drop_ids(batch, ids_ref):
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    ids = ray.get(ids_ref[0])
    return batch.filter(pc.invert(pc.is_in(batch.column(S.ID), pa.array(ids, pa.string()))))


def counts_table(final) -> dict[str, Any]:
    """Nested counts of the written rows: ``{source name: {policy: {label: {split: n}}}}``
    plus ``totals`` ``{policy: {label: {split: n}}}`` and ``held_out`` rows the same way."""
    by_source: dict = {}
    totals: dict = {}
    held: dict = {}
    for gen, pol, lab, split in zip(final[S.GENERATOR], final[S.POLICY_ID], final[S.LABEL],
                                    final[S.SPLIT]):
        name = M.ingest_source_name(gen) or gen
        label = S.LABEL_NAMES[int(lab)]
        for table in (by_source.setdefault(name, {}), totals) + (
                (held,) if M.is_held_out(gen) else ()):
            cell = table.setdefault(pol, {}).setdefault(label, {})
            cell[split] = cell.get(split, 0) + 1
    return {"by_source": by_source, "totals": totals, "held_out": held}


def split_rows(frame, cfg: IngestConfig):
    """Assign splits by near-duplicate group and drop rows that duplicate a held-out row.

    Returns:
        ``(frame, group statistics, rows dropped as duplicates of held-out rows)``.
    """
    from guardray.ingest.groups import shadowed_by_held_out
    from guardray.ingest.split import group_texts

    grouped = group_texts(frame[S.TEXT].tolist(), frame[S.GENERATOR].tolist(),
                          groups=cfg.groups, split=cfg.split, embedder=cfg.dedup.embedder,
                          seed=cfg.seed, policies=frame[S.POLICY_ID].tolist(),
                          labels=frame[S.LABEL].tolist())
    frame = frame.assign(**{S.SPLIT: grouped.row_splits()})
    shadow = shadowed_by_held_out(grouped.inverse, frame[S.POLICY_ID].tolist(),
                                  frame[M.HELD_OUT].to_numpy(bool), grouped.emb,
                                  cfg.dedup.threshold, block_size=cfg.groups.block_size)
    return frame[~shadow].reset_index(drop=True), grouped.stats, int(shadow.sum())


def run_ingest(cfg: IngestConfig) -> dict[str, Any]:
    """The ingest job body (Ray must be initialised; ``jobs/ingest.py`` does it).

    Nothing in ``output_dir`` changes before the new shards are written; stale shards are
    deleted after that.

    Returns:
        ``{"counts", "shards", "manifest", "totals"}``.
    """
    import pyarrow.parquet as pq

    from guardray.data import DatasetError
    from guardray.ingest.split import gather_columns
    from guardray.io import (
        join_uri,
        parse_uri,
        uris,
        write_dataset_shards,
        write_manifest,
        write_shard,
    )

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    policy_ids = check_config(cfg)
    existing = _existing_shards(cfg)
    so = cfg.storage_options or None
    dst = parse_uri(cfg.output_dir).uri

    frame, report = prepare_rows(cfg, policy_ids)
    seconds["read_and_map"] = round(time.perf_counter() - started, 3)
    dropped: Counter = Counter(report["dropped"])
    if frame.empty:
        raise DatasetError(f"no rows to import: every source's rows were dropped or matched no "
                           f"rule (dropped: {dict(dropped) or 'none'}); check the rules")

    t = time.perf_counter()
    frame, group_stats, shadowed = split_rows(frame, cfg)
    if shadowed:
        dropped[DROP_SHADOWED] += shadowed
    seconds["group_split"] = round(time.perf_counter() - t, 3)

    t = time.perf_counter()
    kept, removed, dedup_counts, conflicts = dedup_rows(frame, cfg)
    dropped.update(dedup_counts.get("dropped", {}))
    if conflicts["kept_rows_dropped"]:
        dropped[DROP_NEAR_CONFLICT] += conflicts["kept_rows_dropped"]
    seconds["dedup"] = round(time.perf_counter() - t, 3)

    written = write_dataset_shards(kept, dst, storage_options=so)
    if not written:
        written = [write_shard(S.arrow_schema().empty_table(), dst, index=0,
                               if_exists="overwrite", storage_options=so)]
    for stale in sorted(set(existing) - set(written)):
        uris.delete_file(stale, so)
    removed_uri = join_uri(dst, REMOVED_DIR, REMOVED_FILE)
    with uris.open_atomic(removed_uri, so) as handle:
        pq.write_table(removed, handle, compression="zstd")

    final = gather_columns(kept, [S.GENERATOR, S.POLICY_ID, S.LABEL, S.SPLIT]).to_pydict()
    table = counts_table(final)
    counts = {"in": report["mapped_rows"], "out": len(final[S.SPLIT]), "dropped": dict(dropped)}
    seconds["total"] = round(time.perf_counter() - started, 3)
    extra = {
        "policies": policy_ids,
        "held_out_sources": [s.name for s in cfg.enabled_sources if s.held_out],
        "held_out_categories": {s.name: s.held_out_categories for s in cfg.enabled_sources
                                if s.held_out_categories},
        "generator_format": f"{M.GENERATOR_PREFIX}<source>[{M.HELD_OUT_SUFFIX}]",
        "counts": table,
        "sources": report["sources"],
        "label_conflicts": {"exact_examples": report["conflicts"], **conflicts},
        "dedup": dedup_counts,
        "groups": group_stats,
        "disabled_sources": [s.name for s in cfg.sources if not s.enabled],
        "shards": len(written),
        "removed_file": removed_uri,
        "seconds": seconds,
    }
    manifest = write_manifest(dst, "ingest", inputs=[i["provenance"] for i in report["inputs"]],
                              config=cfg, counts=counts, extra=extra, storage_options=so)
    logger.info("ingest: %d rows written (%s); manifest %s", counts["out"], table["totals"],
                manifest)
    return {"counts": counts, "shards": written, "manifest": manifest,
            "totals": table["totals"]}
