"""Driver-side decisions of the dedup stage, on small per-row arrays (pure: numpy + pyarrow).

The stage gathers, for every input row, its ``id``, its scope, a 64-bit *row key* (hash of
all its columns, see `guardray.dedup.stage`) and the 64-bit hash of its normalised text.
From those this module decides, without touching texts or Ray:

1. the processing order: by scope, then ``id``, then row key. ``id`` is a content hash, so
   the order (and therefore which row of a group is kept) does not depend on sharding or on
   the order rows arrived in;
2. exact duplicates: within a scope, rows with equal normalised-text hashes; the first row
   in the order is kept and represents the others (identical copies of one row included);
3. near-duplicates among the rows that survived step 2, per scope, with the chosen method
   (`near_dedup`), from embeddings aligned to that order.

All arrays are indexed by the row's position in the gathered metadata ("row position").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from guardray.dedup.greedy import GreedyResult, exact_greedy, per_batch_greedy
from guardray.dedup.semantic import GlobalParams, GlobalStats, global_dedup

EXACT, NEAR = "exact_duplicate", "near_duplicate"  # removal reasons (manifest `dropped` keys)


class RowKeyCollisionError(RuntimeError):
    """Two different rows got the same 64-bit row key (astronomically rare)."""


def scope_codes(policy_ids: pa.Array, scope: str) -> tuple[np.ndarray, list[str]]:
    """Integer scope of each row: its policy (``scope="policy"``) or 0 for all (``"global"``).

    Returns:
        ``(codes (n,) int32, names)`` with ``names[code]`` the scope's name (``"*"`` = global).
    """
    if scope == "global":
        return np.zeros(len(policy_ids), np.int32), ["*"]
    if scope != "policy":
        raise ValueError(f"scope must be 'policy' or 'global', got {scope!r}")
    # codes follow sorted policy names: the order never depends on which policy came first
    names = sorted(pc.unique(policy_ids).to_pylist())
    codes = pc.index_in(policy_ids, value_set=pa.array(names, pa.string()))
    return codes.to_numpy(zero_copy_only=False).astype(np.int32), names


def row_order(ids: pa.Array, keys: np.ndarray, scopes: np.ndarray) -> np.ndarray:
    """Row positions sorted by (scope, id, row key): the processing order."""
    if not len(keys):
        return np.zeros(0, np.int64)
    table = pa.table({"s": pa.array(scopes), "i": ids, "k": pa.array(keys)})
    order = pc.sort_indices(table, sort_keys=[("s", "ascending"), ("i", "ascending"),
                                              ("k", "ascending")])
    return order.to_numpy().astype(np.int64)


def check_row_keys(ids: pa.Array, keys: np.ndarray) -> None:
    """Rows with the same row key must have the same id (else a 64-bit collision).

    Raises:
        RowKeyCollisionError: naming the two ids.
    """
    if len(keys) < 2:
        return
    order = np.argsort(keys, kind="stable")
    same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if not len(same):
        return
    a = pc.take(ids, pa.array(order[same])).to_pylist()
    b = pc.take(ids, pa.array(order[same + 1])).to_pylist()
    for x, y in zip(a, b):
        if x != y:
            raise RowKeyCollisionError(f"rows {x!r} and {y!r} have the same 64-bit row key; "
                                       "rerun with one of them removed and report this")


def exact_dedup(order: np.ndarray, scopes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Representative of each exact duplicate: the first row in ``order`` with its (scope, hash).

    Returns:
        ``(n,)`` int64: the representative's row position, or -1 for a kept row.
    """
    n = len(order)
    rep = np.full(n, -1, np.int64)
    if n < 2:
        return rep
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    idx = np.lexsort((rank, hashes, scopes))
    s, h = scopes[idx], hashes[idx]
    first = np.r_[True, (s[1:] != s[:-1]) | (h[1:] != h[:-1])]
    leader = idx[first][np.cumsum(first) - 1]
    removed = leader != idx
    rep[idx[removed]] = leader[removed]
    return rep


@dataclass
class NearOutcome:
    """`near_dedup` result over the survivors of exact dedup (in processing order)."""

    result: GreedyResult
    stats: dict[str, dict]


def near_dedup(
    emb: np.ndarray,
    scopes: np.ndarray,
    names: list[str],
    *,
    method: str,
    threshold: float,
    per_batch_size: int = 1024,
    params: GlobalParams | None = None,
    progress: bool = False,
) -> NearOutcome:
    """Near-duplicate removal inside each scope.

    Args:
        emb: ``(m, d)`` embeddings of the survivors, in processing order (scopes contiguous).
        scopes: ``(m,)`` scope code of each survivor (non-decreasing).
        names: scope names by code.
        method: ``global`` (`guardray.dedup.semantic.global_dedup`), ``per_batch``
            (`guardray.dedup.greedy.per_batch_greedy`) or ``exact`` (all pairs; tests).
        threshold: cosine threshold.
        per_batch_size: batch size of ``per_batch``.
        params: knobs of ``global``.
        progress: progress bars.

    Returns:
        `NearOutcome`: a `GreedyResult` over the ``m`` survivors (representatives are survivor
        indices) and per-scope statistics.
    """
    m = len(scopes)
    result = GreedyResult.all_kept(m)
    stats: dict[str, dict] = {}
    if m == 0:
        return NearOutcome(result, stats)
    if np.any(np.diff(scopes) < 0):
        raise ValueError("survivors must be grouped by scope (sorted by scope code)")
    bounds = np.flatnonzero(np.r_[True, scopes[1:] != scopes[:-1], True])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = emb[start:stop]
        name = names[int(scopes[start])]
        if method == "global":
            res, gstats = global_dedup(part, threshold, params, progress=progress)
            stats[name] = _stats_dict(gstats)
        elif method == "per_batch":
            res = per_batch_greedy(part, threshold, per_batch_size)
        elif method == "exact":
            res = exact_greedy(part, threshold)
        else:
            raise ValueError(f"method must be 'global', 'per_batch' or 'exact', got {method!r}")
        stats.setdefault(name, {})["rows"] = int(stop - start)
        stats[name]["near_removed"] = res.n_removed
        result.keep[start:stop] = res.keep
        result.rep[start:stop] = np.where(res.rep >= 0, res.rep + start, -1)
        result.sim[start:stop] = res.sim
    return NearOutcome(result, stats)


def _stats_dict(s: GlobalStats) -> dict:
    return {"clusters": s.n_clusters, "largest_cluster": s.largest_cluster,
            "candidate_edges": s.candidate_edges, "truncated_rows": s.truncated_rows,
            "fallback_checks": s.fallback_checks, "unresolved": s.unresolved,
            "seconds": dict(s.seconds)}
