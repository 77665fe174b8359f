"""Splits of sample rows by near-duplicate group (driver + Ray Data).

`group_texts` embeds each distinct normalised text once (Ray Data actors) and assigns every
text a split (`guardray.ingest.groups`); rows whose ``generator`` marks them held out
(`guardray.ingest.mapping.is_held_out`) pull their whole group into ``test``.

`assign_group_splits` applies it to any Ray Dataset of sample rows: what the ingest stage
does to its rows, and what a pipeline can run on a mix of imported and synthetic rows, so a
synthetic paraphrase of a test prompt cannot land in train. Only the ``text`` and
``generator`` columns (with ``policy_id`` and ``label`` for the stratified top-up) and one
embedding per distinct text reach the driver; the split column
is rewritten by ``map_batches`` from a sorted key -> split table in the object store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from guardray import schema as S
from guardray.ingest import groups as G
from guardray.ingest.mapping import is_held_out

logger = logging.getLogger(__name__)


@dataclass
class TextGroups:
    """Splits of the distinct texts of some rows.

    Attributes:
        keys: (t,) sorted uint64 keys of the distinct normalised texts.
        inverse: (n,) each row's index into ``keys``.
        codes: (t,) int8 split codes (`guardray.ingest.groups.SPLIT_CODES`).
        emb: (t, d) embeddings of the texts (None with ``method: exact``).
        stats: group statistics for the manifest.
    """

    keys: np.ndarray
    inverse: np.ndarray
    codes: np.ndarray
    emb: np.ndarray | None
    stats: dict[str, Any]

    def row_splits(self) -> list[str]:
        """The split name of every row."""
        return G.split_names(self.codes[self.inverse])


def group_texts(texts: list[str], generators: list[str], *, groups, split, embedder,
                seed: int, policies: list[str] | None = None, labels=None) -> TextGroups:
    """Group the texts of ``n`` rows and split the groups (embeds on Ray).

    Args:
        texts, generators: per row.
        groups: `GroupSplitSettings`; split: `SplitConfig`; embedder: the dedup embedder
            settings; seed: split seed.
        policies, labels: per row; with ``groups.stratify_min_rows``, each rare (policy,
            label) stratum gets its floor share of validation and test (`G.top_up_strata`).
    """
    from guardray.ingest.embed import embed_texts

    keys = G.text_keys(texts)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    held = np.zeros(len(uniq), bool)
    np.logical_or.at(held, inverse, np.fromiter((is_held_out(g) for g in generators), bool,
                                                len(generators)))
    emb = None
    if groups.method == "embedding" and len(uniq) > 1:
        emb = embed_texts([texts[i] for i in first], embedder)
    strata = None
    if groups.stratify_min_rows and policies is not None and labels is not None and len(uniq):
        pairs = [f"{p}\x1f{int(y)}" for p, y in zip(policies, labels)]
        _, stratum = np.unique(pairs, return_inverse=True)
        strata = np.zeros((len(uniq), int(stratum.max()) + 1), np.int64)
        np.add.at(strata, (inverse.reshape(-1), stratum.reshape(-1)), 1)
    codes, _, stats = G.assign_text_splits(
        uniq, held, emb, threshold=groups.threshold, validation=split.validation,
        test=split.test, seed=seed, block_size=groups.block_size, strata=strata,
        min_rows=groups.stratify_min_rows)
    if stats["texts"] and stats["largest_group"] > groups.warn_group_fraction * stats["texts"]:
        logger.warning("one near-duplicate group holds %d of %d distinct texts (threshold %s): "
                       "it goes to one split, which skews the split fractions",
                       stats["largest_group"], stats["texts"], groups.threshold)
    stats.update(method=groups.method, threshold=groups.threshold)
    return TextGroups(uniq, inverse.astype(np.int64), codes, emb, stats)


def gather_columns(ds, columns: list[str]) -> pa.Table:
    """``columns`` of every row of ``ds`` as one table on the driver."""
    import ray

    tables = [t for t in ray.get(ds.select_columns(columns).to_arrow_refs()) if t.num_rows]
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables([t.select(columns) for t in tables]).combine_chunks()


def _set_split(batch: pa.Table, table_ref) -> pa.Table:
    """``map_batches`` body: the split of each row from its text's key."""
    import ray

    uniq, codes = ray.get(table_ref[0])
    keys = G.text_keys(batch.column(S.TEXT).to_pylist())
    names = np.asarray(S.SPLITS, dtype=object)[codes[np.searchsorted(uniq, keys)]]
    index = batch.schema.get_field_index(S.SPLIT)
    return batch.set_column(index, S.SPLIT, pa.array(names.tolist(), pa.string()))


def _drop_ids(batch: pa.Table, ids_ref) -> pa.Table:
    import pyarrow.compute as pc
    import ray

    ids = ray.get(ids_ref[0])
    return batch.filter(pc.invert(pc.is_in(batch.column(S.ID), value_set=ids)))


def assign_group_splits(ds, *, groups, split, embedder, seed: int = 0,
                        held_out_duplicate_threshold: float | None = None):
    """Rewrite the ``split`` column of a Dataset of sample rows by near-duplicate group.

    Args:
        ds: Ray Dataset with the sample columns.
        groups: `guardray.ingest.GroupSplitSettings`.
        split: `guardray.config.SplitConfig` (validation / test fractions of groups).
        embedder: embedder settings (``DedupSettings().embedder``) for ``method: embedding``.
        seed: split seed.
        held_out_duplicate_threshold: also drop rows that are not held out but duplicate a
            held-out row of the same policy at this cosine (the dedup threshold), so a later
            dedup cannot keep them instead of the held-out copy. None keeps every row.

    Returns:
        ``(lazy Dataset with the new splits, group statistics)``; the statistics count
        dropped rows under ``duplicate_of_held_out``.
    """
    import ray

    from guardray.ingest.groups import shadowed_by_held_out

    meta = gather_columns(ds, [S.ID, S.POLICY_ID, S.TEXT, S.GENERATOR, S.LABEL])
    generators = meta.column(S.GENERATOR).to_pylist()
    grouped = group_texts(meta.column(S.TEXT).to_pylist(), generators, groups=groups,
                          split=split, embedder=embedder, seed=seed,
                          policies=meta.column(S.POLICY_ID).to_pylist(),
                          labels=meta.column(S.LABEL).to_pylist())
    ref = ray.put((grouped.keys, grouped.codes))
    out = ds.map_batches(_set_split, batch_format="pyarrow", fn_kwargs={"table_ref": [ref]})
    stats = dict(grouped.stats, duplicate_of_held_out=0)
    if held_out_duplicate_threshold is not None:
        held = np.fromiter((is_held_out(g) for g in generators), bool, len(generators))
        drop = shadowed_by_held_out(grouped.inverse, meta.column(S.POLICY_ID).to_pylist(), held,
                                    grouped.emb, held_out_duplicate_threshold,
                                    block_size=groups.block_size)
        if drop.any():
            ids = pa.array(meta.column(S.ID).to_pylist(), pa.string()).filter(pa.array(drop))
            out = out.map_batches(_drop_ids, batch_format="pyarrow",
                                  fn_kwargs={"ids_ref": [ray.put(ids)]})
            stats["duplicate_of_held_out"] = int(drop.sum())
    return out, stats
