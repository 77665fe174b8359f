"""The global method with its pairwise step distributed on Ray Data (the 10M+ row path).

Same algorithm as `guardray.dedup.semantic.global_dedup`, but the embeddings never gather on
the driver:

1. the driver picks a seeded sample of ranks per scope (``max_points_per_centroid`` per
   centroid), gathers only those embeddings and trains each scope's spherical k-means;
2. ``map_batches`` gives every row its ``probes`` nearest centroids of its own scope and emits
   one copy of the row per probe (``cluster``, ``rank``, ``is_member``, ``embedding``);
3. ``groupby(cluster).map_groups`` runs `guardray.dedup.semantic.cluster_edges` on each cluster
   (members x members and guests x members, tiled) and emits only the edges;
4. the driver merges the edges (at most ``max_neighbors`` per row) and applies the
   representative rule (`guardray.dedup.greedy.greedy_from_neighbors`).

Differences from the in-process method: clusters are not split when oversized, and a row whose
neighbour list was cut and whose listed neighbours were all removed is kept without the exact
fallback check (counted as ``unresolved`` in the statistics; 0 unless a near-duplicate group
has more than ``max_neighbors`` members). The shuffle moves ``probes`` copies of every
embedding: use ``embedder.dtype=float16`` to halve it.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from guardray.dedup import partition as part
from guardray.dedup.greedy import GreedyResult, greedy_from_neighbors
from guardray.dedup.semantic import GlobalParams, GlobalStats, cluster_edges, merge_edges

logger = logging.getLogger(__name__)

RANK = "_dedup_rank"  # a row's position in the processing order (0..m-1)
CLUSTER = "_dedup_cluster"
MEMBER = "_dedup_member"
LATER, EARLIER, SIM = "_dedup_later", "_dedup_earlier", "_dedup_sim"


def distributed_global_dedup(
    ds, scopes: np.ndarray, threshold: float, params: GlobalParams | None = None, *,
    embedding_column: str = "embedding", num_partitions: int | None = None,
) -> tuple[GreedyResult, dict[int, GlobalStats]]:
    """Global near-duplicate removal of a Dataset of embeddings, per scope.

    Args:
        ds: Ray Dataset with ``RANK`` (int, ``0..m-1``, each once) and ``embedding_column``
            (L2-normalised vectors). Consumed twice: materialise it first.
        scopes: ``(m,)`` scope code of each rank (rows of a scope are never compared with other
            scopes; codes non-decreasing in rank).
        threshold: cosine threshold in (0, 1].
        params: `GlobalParams` (``max_cluster_size`` is ignored here).
        embedding_column: name of the embedding column.
        num_partitions: shuffle partitions of the groupby (default: number of clusters,
            at most 64).

    Returns:
        ``(result over ranks, {scope code: GlobalStats})``.
    """
    import ray

    params = params or GlobalParams()
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (a cosine similarity), got {threshold}")
    m = len(scopes)
    if m == 0:
        return GreedyResult.all_kept(0), {}
    t0 = time.perf_counter()
    bounds = np.flatnonzero(np.r_[True, scopes[1:] != scopes[:-1], True])
    rng = np.random.default_rng(params.seed)
    sizes, ks, samples = [], [], []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        size = int(stop - start)
        k = min(size, params.n_clusters or part.n_clusters_for(size, params.target_cluster_size))
        take = min(size, k * params.max_points_per_centroid)
        samples.append(start + np.sort(rng.choice(size, take, replace=False)))
        sizes.append(size)
        ks.append(k)
    sample_ranks = np.concatenate(samples)
    sample_emb = _gather_ranks(ds, sample_ranks, embedding_column)
    centroids, offsets, pos = [], [0], 0
    for i, k in enumerate(ks):
        rows = sample_emb[pos : pos + len(samples[i])]
        pos += len(samples[i])
        centroids.append(part.train_centroids(
            rows, k, seed=params.seed, niter=params.niter,
            max_points_per_centroid=params.max_points_per_centroid))
        offsets.append(offsets[-1] + k)
    t1 = time.perf_counter()

    scope_index = np.repeat(np.arange(len(ks)), sizes)  # rank -> index of its scope run
    state = ray.put({"centroids": centroids, "offsets": np.array(offsets), "scope": scope_index,
                     "probes": params.probes})
    assigned = ds.map_batches(_assign, batch_format="numpy", fn_kwargs={
        "state_ref": [state], "embedding_column": embedding_column})
    total_k = offsets[-1]
    grouped = assigned.groupby(CLUSTER, num_partitions=num_partitions or max(1, min(total_k, 64)))
    edges_ds = grouped.map_groups(_edges, batch_format="numpy", fn_kwargs={
        "threshold": float(threshold), "max_neighbors": params.max_neighbors,
        "block_size": params.block_size, "embedding_column": embedding_column})
    later, earlier, sims = [], [], []
    for batch in edges_ds.iter_batches(batch_format="numpy", batch_size=None):
        later.append(batch[LATER])
        earlier.append(batch[EARLIER])
        sims.append(batch[SIM])
    t2 = time.perf_counter()
    later = np.concatenate(later).astype(np.int64) if later else np.empty(0, np.int64)
    earlier = np.concatenate(earlier).astype(np.int64) if earlier else np.empty(0, np.int64)
    sims = np.concatenate(sims).astype(np.float32) if sims else np.empty(0, np.float32)
    cut = later[earlier < 0]  # rows some cluster cut to max_neighbors
    real = earlier >= 0
    indptr, nbr, nsim, truncated = merge_edges(later[real], earlier[real], sims[real], cut, m,
                                               params.max_neighbors)
    result, unresolved = greedy_from_neighbors(m, indptr, nbr, nsim, truncated, None)
    t3 = time.perf_counter()
    stats = {}
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        st = GlobalStats(n=int(stop - start), n_clusters=ks[i])
        st.candidate_edges = int(((later[real] >= start) & (later[real] < stop)).sum())
        st.truncated_rows = int(truncated[start:stop].sum())
        # a cut row still kept had no kept row among its listed neighbours: not checked
        st.unresolved = int((truncated[start:stop] & result.keep[start:stop]).sum())
        st.seconds = {"partition": round(t1 - t0, 3), "pairwise": round(t2 - t1, 3),
                      "resolve": round(t3 - t2, 3)}
        stats[int(scopes[start])] = st
    logger.info("distributed global dedup: %d rows, %d clusters, %d edges, %d removed, "
                "%d unresolved, %.1f s", m, total_k, len(nbr), result.n_removed, unresolved,
                t3 - t0)
    return result, stats


def _gather_ranks(ds, ranks: np.ndarray, embedding_column: str) -> np.ndarray:
    """Embeddings of the given (sorted) ranks, in that order."""
    import ray

    ref = ray.put(ranks)
    picked = ds.map_batches(_pick, batch_format="numpy", fn_kwargs={
        "ranks_ref": [ref], "embedding_column": embedding_column})
    out = None
    for batch in picked.iter_batches(batch_format="numpy", batch_size=None):
        vec = np.asarray(batch[embedding_column], dtype=np.float32)
        if out is None:
            out = np.zeros((len(ranks), vec.shape[1]), np.float32)
        out[np.searchsorted(ranks, batch[RANK])] = vec
    if out is None:
        raise RuntimeError("no embeddings came back for the k-means sample")
    return out


def _pick(batch: dict, ranks_ref, embedding_column: str) -> dict:
    import ray

    ranks = ray.get(ranks_ref[0])
    r = np.asarray(batch[RANK], np.int64)
    pos = np.minimum(np.searchsorted(ranks, r), len(ranks) - 1)
    mask = ranks[pos] == r
    return {RANK: r[mask], embedding_column: np.asarray(batch[embedding_column])[mask]}


def _assign(batch: dict, state_ref, embedding_column: str) -> dict:
    """One output row per (row, probed cluster of its scope); column 0 of the probes is home."""
    import ray

    state = ray.get(state_ref[0])
    ranks = np.asarray(batch[RANK], np.int64)
    emb = np.asarray(batch[embedding_column])
    scope = state["scope"][ranks]
    p_max = state["probes"]
    clusters = np.full((len(ranks), p_max), -1, np.int64)
    for s in np.unique(scope):
        rows = np.flatnonzero(scope == s)
        cent = state["centroids"][s]
        p = min(p_max, len(cent))
        sims = emb[rows].astype(np.float32) @ cent.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :p]
        clusters[rows, :p] = state["offsets"][s] + top
    valid = clusters >= 0
    row_of = np.repeat(np.arange(len(ranks)), valid.sum(axis=1))
    member = np.zeros_like(valid)
    member[:, 0] = True
    return {CLUSTER: clusters[valid], RANK: ranks[row_of], MEMBER: member[valid],
            embedding_column: emb[row_of]}


def _edges(group: dict, threshold: float, max_neighbors: int, block_size: int,
           embedding_column: str) -> dict:
    """Edges (later rank, earlier rank, cosine) of one cluster; cut rows as earlier = -1."""
    order = np.argsort(np.asarray(group[RANK], np.int64), kind="stable")
    ranks = np.asarray(group[RANK], np.int64)[order]
    first = np.r_[True, ranks[1:] != ranks[:-1]]  # identical copies of a row share its rank
    order, ranks = order[first], ranks[first]
    member = np.asarray(group[MEMBER], bool)[order]
    emb = np.ascontiguousarray(np.asarray(group[embedding_column])[order], dtype=np.float32)
    later, earlier, sim, cut = cluster_edges(
        emb, np.flatnonzero(member), np.flatnonzero(~member), threshold,
        max_neighbors=max_neighbors, block_size=block_size)
    return {LATER: np.concatenate([ranks[later], ranks[cut]]),
            EARLIER: np.concatenate([ranks[earlier], np.full(len(cut), -1, np.int64)]),
            SIM: np.concatenate([sim, np.zeros(len(cut), np.float32)])}
