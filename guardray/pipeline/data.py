"""The training data of a pipeline run: every source in one folder, split and checked.

`build_training_data` turns the shard folders of the earlier stages (the policies' own
examples, the imported rows of the ingest stage, the generate stage's synthetic rows) into
``{output_dir}/data``, the one folder pretraining, fine-tuning and evaluation read:

1. union: all rows, identical (policy, text) rows kept once, imported and seed rows before
   synthetic ones (``data/union``);
2. the dedup stage (`guardray.dedup.run_dedup`) on the union: imported rows against each other
   and against synthetic rows (``data/dedup``);
3. splits by near-duplicate group over the whole mix (`guardray.ingest.group_texts`): a
   synthetic paraphrase of a test prompt cannot land in train, and a group holding a row of a
   held-out source goes to test whole; rows that are not held out but near-copy a held-out
   row of the same policy are dropped (the held-out copy stays); each (policy, label) gets at
   least its floor share of validation and test, up to 10 rows (``groups.stratify_min_rows``);
4. disputed synthetic rows: a per-policy model of the real training rows
   (`guardray.data.disputes`, on the same embeddings) flags generated rows whose label it
   strongly disputes; they are reported, and dropped when ``disputes.drop`` is set;
5. the rows of held-out sources are also written to ``data/cross_source`` (the cross-source
   test set the report uses).

Everything but the dedup and the embeddings runs on the driver with pandas: the mix of a
pipeline run holds thousands of rows, not millions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.io import uris

log = logging.getLogger(__name__)

UNION, DEDUP, CROSS_SOURCE, DISPUTED = "union", "dedup", "cross_source", "disputed"
POLICY_EXAMPLES = "policy-examples"  # generator of the policies' own examples (seed rows)


def is_generated(sources, generators) -> np.ndarray:
    """(n,) bool: rows an LLM generated (synthetic source, not a policy's own example)."""
    return np.fromiter((S.is_synthetic_source(s) and g != POLICY_EXAMPLES
                        for s, g in zip(sources, generators)), bool, len(sources))


def union_frame(folders: list[str], storage_options=None):
    """The rows of ``folders`` (earlier ones first), each (policy, text) id once."""
    import pandas as pd

    from guardray.io import read_shards

    parts = [read_shards(f, storage_options, allow_empty=True).to_pandas() for f in folders]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return frame.drop_duplicates(subset=[S.ID], keep="first").reset_index(drop=True)


def _write(frame, folder: str, so, prefix: str = "part") -> None:
    from guardray.io import write_shard

    write_shard(frame[list(S.COLUMNS)], folder, index=0, prefix=prefix, if_exists="overwrite",
                storage_options=so)


def build_training_data(cfg, folders: list[str]) -> dict[str, Any]:
    """Build ``{cfg.output_dir}/data`` from ``folders`` (see the module docstring).

    Args:
        cfg: the `PipelineConfig` (its ``data`` section, seed, splits, output_dir).
        folders: shard folders, in priority order (imported and seed rows first).

    Returns:
        The summary also written to the folder's manifest: counts per policy, label, split
        and source kind; dedup, group and dispute figures.
    """
    from guardray.data.disputes import disputed
    from guardray.dedup import DedupConfig, run_dedup
    from guardray.ingest import group_texts, is_held_out, shadowed_by_held_out
    from guardray.io import read_shards, write_manifest

    started = time.time()
    d, so = cfg.data, cfg.storage_options or None
    out = uris.join_uri(uris.parse_uri(cfg.output_dir).uri, "data")
    union = union_frame(folders, so)
    _write(union, uris.join_uri(out, UNION), so)
    dedup_dir = uris.join_uri(out, DEDUP)
    dedup = run_dedup(DedupConfig(**d.dedup.model_dump(), input_dir=uris.join_uri(out, UNION),
                                  output_dir=dedup_dir, overwrite=True, ray=cfg.ray,
                                  storage_options=cfg.storage_options))
    rows = read_shards(dedup_dir, so).to_pandas()
    texts, gens = rows[S.TEXT].tolist(), rows[S.GENERATOR].tolist()
    grouped = group_texts(texts, gens, groups=d.groups, split=cfg.splits,
                          embedder=d.dedup.embedder, seed=cfg.seed,
                          policies=rows[S.POLICY_ID].tolist(), labels=rows[S.LABEL].tolist())
    rows[S.SPLIT] = grouped.row_splits()
    held = np.fromiter((is_held_out(g) for g in gens), bool, len(gens))
    shadowed = shadowed_by_held_out(grouped.inverse, rows[S.POLICY_ID].tolist(), held,
                                    grouped.emb, d.dedup.threshold,
                                    block_size=d.groups.block_size)
    generated = is_generated(rows[S.SOURCE].tolist(), gens)
    flags = np.zeros(len(rows), bool)
    p_unsafe = np.full(len(rows), np.nan)
    if d.disputes.enabled and grouped.emb is not None:
        emb = grouped.emb[grouped.inverse]
        train = (rows[S.SPLIT] == "train").to_numpy() & ~shadowed
        flags, p_unsafe = disputed(emb, rows[S.LABEL].to_numpy(), rows[S.POLICY_ID].to_numpy(),
                                   train & ~generated, generated & ~shadowed,
                                   confidence=d.disputes.confidence)
    flagged = rows[flags].assign(p_unsafe=p_unsafe[flags])
    _write_table(flagged, uris.join_uri(out, DISPUTED, "disputed.parquet"), so)
    keep = ~shadowed & ~(flags & d.disputes.drop)
    final = rows[keep].reset_index(drop=True)
    _write(final, out, so)
    cross = final[np.fromiter((is_held_out(g) for g in final[S.GENERATOR]), bool, len(final))]
    _write(cross if len(cross) else final.iloc[:0], uris.join_uri(out, CROSS_SOURCE), so)
    summary = {
        "union": len(union), "after_dedup": len(rows),
        "dedup_removed": dedup["counts"]["in"] - dedup["counts"]["out"],
        "duplicate_of_held_out": int(shadowed.sum()),
        "disputed": _dispute_counts(rows, flags, generated, d.disputes),
        "rows": len(final), "cross_source_rows": len(cross),
        "counts": _counts(final), "groups": grouped.stats,
        "seconds": round(time.time() - started, 1),
    }
    write_manifest(out, "data", inputs=list(folders), config=d,
                   counts={"in": len(union), "out": len(final),
                           "dropped": {"near_duplicate": summary["dedup_removed"],
                                       "duplicate_of_held_out": summary["duplicate_of_held_out"],
                                       "disputed": int(flags.sum()) if d.disputes.drop else 0}},
                   extra=summary, storage_options=so)
    log.info("training data: %d rows in %s (%d cross-source test rows; %d synthetic rows "
             "disputed%s)", len(final), out, len(cross), int(flags.sum()),
             ", dropped" if d.disputes.drop else ", kept")
    return summary


def _write_table(frame, target: str, so) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
    uris.write_bytes_atomic(target, buf.getvalue(), so)


def _kind(source: str, generator: str) -> str:
    """``policy examples`` / ``synthetic`` / ``imported`` (with held-out imports apart)."""
    from guardray.ingest import is_held_out

    if generator == POLICY_EXAMPLES:
        return "policy examples"
    if S.is_synthetic_source(source):
        return "synthetic"
    return "imported (held out)" if is_held_out(generator) else "imported"


def _counts(frame) -> dict[str, dict[str, int]]:
    """``{policy: {"<kind> <label> <split>": n}}``."""
    out: dict[str, dict[str, int]] = {}
    kinds = [_kind(s, g) for s, g in zip(frame[S.SOURCE], frame[S.GENERATOR])]
    for policy, kind, label, split in zip(frame[S.POLICY_ID], kinds, frame[S.LABEL],
                                          frame[S.SPLIT]):
        key = f"{kind} {S.LABEL_NAMES[int(label)]} {split}"
        per = out.setdefault(str(policy), {})
        per[key] = per.get(key, 0) + 1
    return out


def _dispute_counts(rows, flags: np.ndarray, generated: np.ndarray, settings) -> dict[str, Any]:
    """Per policy: generated rows checked and flagged (by their label)."""
    out: dict[str, Any] = {"enabled": settings.enabled, "confidence": settings.confidence,
                           "dropped": bool(settings.drop), "per_policy": {}}
    for policy in sorted(set(rows[S.POLICY_ID])):
        mask = (rows[S.POLICY_ID] == policy).to_numpy() & generated
        labels = rows[S.LABEL].to_numpy()
        out["per_policy"][policy] = {
            "generated": int(mask.sum()), "flagged": int((flags & mask).sum()),
            "flagged_unsafe": int((flags & mask & (labels == 1)).sum()),
            "flagged_safe": int((flags & mask & (labels == 0)).sum())}
    return out
