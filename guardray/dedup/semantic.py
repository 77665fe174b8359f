"""Global near-duplicate removal in the SemDeDup style, with bounded memory (pure numpy + faiss).

Algorithm (`global_dedup`), for ``n`` L2-normalised rows in processing order:

1. **Partition** (`guardray.dedup.partition`): spherical k-means with
   ``k = ceil(n / target_cluster_size)`` clusters; every row gets a home cluster and its
   ``probes`` nearest clusters; clusters above ``max_cluster_size`` rows are split.
2. **Within-cluster pairwise cosine** (`cluster_edges`): for each cluster ``c``, the cosines
   between its members (home ``c``) and its members plus guests (rows probing ``c``), in
   ``block_size x block_size`` tiles. Pairs at or above the threshold become edges
   *later row -> earlier row*; each row keeps only its ``max_neighbors`` earliest earlier
   neighbours. Memory is bounded by the tile and by ``n * max_neighbors`` edges: all pairs
   (quadratic) are never materialised, not even inside a big near-duplicate group.
3. **Representative rule** (`guardray.dedup.greedy.greedy_from_neighbors`): rows in order;
   a row is removed when one of its listed earlier neighbours is kept (the earliest kept one
   is its representative). For a row whose list was cut and whose listed neighbours were all
   removed, the fallback compares it with every kept earlier candidate of its clusters, so the
   result is exactly the rule of `guardray.dedup.greedy.exact_greedy` restricted to candidate
   pairs (pairs sharing a home/probe cluster).

Cost: k-means and assignment O(n k d) (one GEMM: cheap on a GPU; on CPU it dominates above a
few million rows), pairwise O(n * probes * cluster_size * d) — linear in ``n`` at a fixed
cluster size. A pair is missed only when neither row's home is among the other's probes; the
recall of exact near-duplicate pairs is measured in the tests and the benchmark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from guardray.dedup import partition as part
from guardray.dedup.greedy import GreedyResult, check_embeddings, greedy_from_neighbors

logger = logging.getLogger(__name__)


@dataclass
class GlobalParams:
    """Knobs of `global_dedup` (see the module docstring).

    Attributes:
        n_clusters: k-means clusters; None: ``ceil(n / target_cluster_size)``.
        target_cluster_size: rows per cluster when ``n_clusters`` is None.
        probes: nearest clusters per row (1 = plain SemDeDup; 2-3 recover border pairs).
        max_neighbors: earliest earlier neighbours kept per row (bounds edge memory).
        max_cluster_size: split clusters above this many home rows (None: 8 x target).
        seed: k-means seed.
        niter: k-means iterations.
        max_points_per_centroid: k-means training sample per centroid.
        block_size: tile edge of the within-cluster similarity blocks.
    """

    n_clusters: int | None = None
    target_cluster_size: int = 1000
    probes: int = 2
    max_neighbors: int = 32
    max_cluster_size: int | None = None
    seed: int = 0
    niter: int = 10
    max_points_per_centroid: int = 64
    block_size: int = 2048


@dataclass
class GlobalStats:
    """What `global_dedup` did (written to the manifest)."""

    n: int = 0
    n_clusters: int = 0
    largest_cluster: int = 0
    candidate_edges: int = 0
    truncated_rows: int = 0
    fallback_checks: int = 0
    unresolved: int = 0  # cut rows kept without the fallback check (distributed path)
    seconds: dict[str, float] = field(default_factory=dict)


def global_dedup(
    emb: np.ndarray, threshold: float, params: GlobalParams | None = None, *, progress: bool = False
) -> tuple[GreedyResult, GlobalStats]:
    """Near-duplicate removal over all rows of one scope (SemDeDup partition + greedy rule).

    Args:
        emb: ``(n, d)`` L2-normalised embeddings, rows in processing order.
        threshold: cosine in (0, 1] at or above which rows are near-duplicates.
        params: `GlobalParams` (defaults if None).
        progress: show a tqdm bar over clusters.

    Returns:
        ``(result, stats)``.
    """
    import time

    params = params or GlobalParams()
    emb = check_embeddings(emb, threshold, keep_float16=True)  # tiles are cast to float32
    n = len(emb)
    stats = GlobalStats(n=n)
    if n < 2:
        return GreedyResult.all_kept(n), stats
    t0 = time.perf_counter()
    k = min(n, params.n_clusters or part.n_clusters_for(n, params.target_cluster_size))
    max_size = params.max_cluster_size or 8 * max(params.target_cluster_size, -(-n // k))
    _, assignment = part.partition(
        emb, k, params.probes, seed=params.seed, niter=params.niter,
        max_points_per_centroid=params.max_points_per_centroid, max_cluster_size=max_size,
    )
    k = int(assignment.max()) + 1
    members, guests = part.cluster_lists(assignment, k)
    stats.n_clusters = k
    stats.largest_cluster = max(len(m) for m in members)
    t1 = time.perf_counter()
    stats.seconds["partition"] = round(t1 - t0, 3)

    edges = _all_edges(emb, members, guests, threshold, params, progress)
    indptr, nbr, sims, truncated = edges
    stats.candidate_edges = len(nbr)
    stats.truncated_rows = int(truncated.sum())
    t2 = time.perf_counter()
    stats.seconds["pairwise"] = round(t2 - t1, 3)

    calls = [0]

    def fallback(i: int, keep: np.ndarray):
        calls[0] += 1
        return _earliest_kept_candidate(emb, i, keep, assignment, members, guests, threshold)

    result, _ = greedy_from_neighbors(n, indptr, nbr, sims, truncated, fallback)
    stats.fallback_checks = calls[0]
    stats.seconds["resolve"] = round(time.perf_counter() - t2, 3)
    logger.info("global dedup: %d rows, %d clusters (largest %d), %d candidate edges, %d removed, "
                "%s", n, k, stats.largest_cluster, stats.candidate_edges, result.n_removed,
                stats.seconds)
    return result, stats


def _all_edges(emb, members, guests, threshold, params: GlobalParams, progress: bool):
    """Edges of every cluster, merged and cut to each row's earliest ``max_neighbors``."""
    from guardray.progress import Progress

    later_parts, earlier_parts, sim_parts, cut_rows = [], [], [], []
    bar = Progress("dedup pairwise", len(members), unit="cluster", enabled=progress)
    for c in range(len(members)):
        later, earlier, sim, cut = cluster_edges(
            emb, members[c], guests[c], threshold,
            max_neighbors=params.max_neighbors, block_size=params.block_size,
        )
        if len(later):
            later_parts.append(later)
            earlier_parts.append(earlier)
            sim_parts.append(sim)
        if len(cut):
            cut_rows.append(cut)
        bar.update(1)
    bar.close()
    cut = np.concatenate(cut_rows) if cut_rows else np.empty(0, np.int64)
    if not later_parts:
        return merge_edges(*_empty_edges()[:3], cut, len(emb), params.max_neighbors)
    return merge_edges(np.concatenate(later_parts), np.concatenate(earlier_parts),
                       np.concatenate(sim_parts), cut, len(emb), params.max_neighbors)


def merge_edges(later, earlier, sim, cut, n: int, max_neighbors: int):
    """Merge edges found in several clusters into CSR lists of each row's earliest neighbours.

    Args:
        later, earlier, sim: edge arrays (any order; a pair may appear more than once).
        cut: rows whose list some cluster already cut to ``max_neighbors``.
        n: number of rows.
        max_neighbors: neighbours kept per row.

    Returns:
        ``(indptr (n+1,), neighbors, sims, truncated (n,) bool)`` for
        `guardray.dedup.greedy.greedy_from_neighbors`.
    """
    truncated = np.zeros(n, bool)
    truncated[np.asarray(cut, np.int64)] = True
    if not len(later):
        return np.zeros(n + 1, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), truncated
    # A pair can be found in two clusters (each row's home probed by the other): keep one.
    order = np.lexsort((earlier, later))
    later, earlier, sim = later[order], earlier[order], sim[order]
    dup = np.zeros(len(later), bool)
    dup[1:] = (later[1:] == later[:-1]) & (earlier[1:] == earlier[:-1])
    later, earlier, sim = later[~dup], earlier[~dup], sim[~dup]
    keep, over = _cap_per_row(later, max_neighbors)
    truncated[over] = True
    later, earlier, sim = later[keep], earlier[keep], sim[keep]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(later, minlength=n), out=indptr[1:])
    return indptr, earlier.astype(np.int64), sim.astype(np.float32), truncated


def _cap_per_row(later: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """For edges sorted by (later, earlier): mask of the first ``cap`` per row, rows over cap."""
    if not len(later):
        return np.ones(0, bool), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]])
    counts = np.diff(np.r_[starts, len(later)])
    rank = np.arange(len(later)) - np.repeat(starts, counts)
    return rank < cap, later[starts[counts > cap]]


def cluster_edges(
    emb: np.ndarray,
    members: np.ndarray,
    guests: np.ndarray,
    threshold: float,
    *,
    max_neighbors: int = 32,
    block_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Near-duplicate edges of one cluster: member x member and guest x member pairs.

    Args:
        emb: all embeddings ``(n, d)``, float32 or float16 (only the cluster's rows are read,
            and cast to float32 tile by tile).
        members: ascending row indices whose home is this cluster.
        guests: ascending row indices that probe this cluster from another home.
        threshold: cosine threshold.
        max_neighbors: keep each row's earliest this many earlier neighbours.
        block_size: similarity tile edge.

    Returns:
        ``(later, earlier, sim, cut)``: edges sorted by (later, earlier) with
        ``earlier < later`` and ``sim >= threshold``; ``cut`` lists rows whose list was cut.
    """
    later_p, earlier_p, sim_p = [], [], []
    m = len(members)
    if m == 0:
        return _empty_edges()
    mem_emb = emb[members].astype(np.float32, copy=False)
    for q0 in range(0, m, block_size):  # member x member, upper triangle only (each pair once)
        q = mem_emb[q0 : q0 + block_size]
        for c0 in range(q0, m, block_size):
            s = q @ mem_emb[c0 : c0 + block_size].T
            if c0 == q0:
                s = np.triu(s, k=1)  # zero is below any valid threshold (threshold > 0)
            a, b = np.nonzero(s >= threshold)
            if len(a):
                earlier_p.append(members[q0 + a])  # members ascending: q0+a < c0+b
                later_p.append(members[c0 + b])
                sim_p.append(s[a, b])
    for g0 in range(0, len(guests), block_size):  # guest x member
        g_rows = guests[g0 : g0 + block_size]
        q = emb[g_rows].astype(np.float32, copy=False)
        for c0 in range(0, m, block_size):
            s = q @ mem_emb[c0 : c0 + block_size].T
            a, b = np.nonzero(s >= threshold)
            if len(a):
                gi, mi = g_rows[a], members[c0 + b]
                later_p.append(np.maximum(gi, mi))
                earlier_p.append(np.minimum(gi, mi))
                sim_p.append(s[a, b])
    if not later_p:
        return _empty_edges()
    later = np.concatenate(later_p)
    earlier = np.concatenate(earlier_p)
    sim = np.concatenate(sim_p).astype(np.float32)
    order = np.lexsort((earlier, later))
    later, earlier, sim = later[order], earlier[order], sim[order]
    keep, cut = _cap_per_row(later, max_neighbors)
    return later[keep], earlier[keep], sim[keep], cut


def _empty_edges():
    e = np.empty(0, np.int64)
    return e, e, np.empty(0, np.float32), e


def _earliest_kept_candidate(emb, i, keep, assignment, members, guests, threshold):
    """Earliest kept row ``j < i`` among ``i``'s candidates with cosine >= threshold, or None.

    Candidates: members of ``i``'s probed clusters and guests of ``i``'s home cluster.
    """
    pools = [members[c] for c in assignment[i]] + [guests[assignment[i, 0]]]
    cand = np.unique(np.concatenate(pools))
    cand = cand[(cand < i) & keep[cand]]
    if not len(cand):
        return None
    s = emb[cand].astype(np.float32) @ emb[i].astype(np.float32)
    hit = np.flatnonzero(s >= threshold)
    if not len(hit):
        return None
    return int(cand[hit[0]]), float(s[hit[0]])
