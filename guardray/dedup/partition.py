"""k-means partition of embeddings for SemDeDup-style search (pure: faiss + numpy, no Ray/files).

SemDeDup (Abbas et al. 2023) and NeMo Curator cluster the embeddings with k-means and compare
rows only inside a cluster. guardray does the same with two additions:

- **multi-probe**: each row has a *home* cluster (nearest centroid) and ``probes`` nearest
  clusters (home included). A pair is a candidate when one row's home is among the other's
  probes, so near-duplicates that straddle a cluster border are still compared (the
  recall-vs-probes trade-off is measured in ``benchmarks/bench_dedup.py``);
- **oversized clusters are split**: a cluster larger than ``max_cluster_size`` is re-clustered
  into smaller ones, so the within-cluster cost (quadratic in cluster size) stays bounded.

Centroids come from ``faiss.Kmeans(spherical=True)`` (unit-norm centroids, inner-product
assignment: the right geometry for cosine), seeded, trained on at most
``max_points_per_centroid * k`` sampled rows.
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

ASSIGN_CHUNK = 65536  # rows per faiss search call: bounds the (chunk, k) distance buffer


def n_clusters_for(n: int, target_cluster_size: int) -> int:
    """Number of k-means clusters for ``n`` rows: ``ceil(n / target_cluster_size)``, >= 1.

    A fixed *cluster size* (not a fixed count) keeps the within-cluster work linear in ``n``.
    """
    if target_cluster_size < 1:
        raise ValueError(f"target_cluster_size must be >= 1, got {target_cluster_size}")
    return max(1, math.ceil(n / target_cluster_size))


def train_centroids(
    emb: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    niter: int = 20,
    max_points_per_centroid: int = 128,
) -> np.ndarray:
    """Spherical k-means centroids of ``emb``.

    Args:
        emb: ``(n, d)`` float32 or float16, L2-normalised.
        k: number of centroids (``1 <= k <= n``).
        seed: faiss's sampling/initialisation seed (same seed, same data: same centroids).
        niter: Lloyd iterations.
        max_points_per_centroid: training sample is at most this times ``k`` rows.

    Returns:
        ``(k, d)`` float32 unit-norm centroids.
    """
    import faiss

    n, d = emb.shape
    if not 1 <= k <= max(n, 1):
        raise ValueError(f"k must be in [1, {n}] for {n} rows, got {k}")
    if k == 1:
        c = emb.mean(axis=0, keepdims=True, dtype=np.float64)
        norm = np.linalg.norm(c)
        return (c / norm if norm > 0 else np.eye(1, d)).astype(np.float32)
    # sample here (seeded) rather than in faiss: only the sample is cast to float32
    take = min(n, k * max_points_per_centroid)
    rows = slice(None)
    if take < n:
        rows = np.sort(np.random.default_rng(seed).choice(n, take, replace=False))
    km = faiss.Kmeans(
        d, k, niter=niter, seed=int(seed) & 0x7FFFFFFF, spherical=True, verbose=False,
        max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1,
    )
    km.train(np.ascontiguousarray(emb[rows], dtype=np.float32))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def assign(emb: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """The ``probes`` nearest centroids (by inner product) of each row, nearest first.

    Returns:
        ``(n, min(probes, k))`` int32; column 0 is the home cluster.
    """
    import faiss

    k, d = centroids.shape
    p = max(1, min(probes, k))
    index = faiss.IndexFlatIP(d)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    out = np.empty((len(emb), p), np.int32)
    for start in range(0, len(emb), ASSIGN_CHUNK):
        chunk = np.ascontiguousarray(emb[start : start + ASSIGN_CHUNK], dtype=np.float32)
        _, ids = index.search(chunk, p)
        out[start : start + len(chunk)] = ids
    return out


def partition(
    emb: np.ndarray,
    k: int,
    probes: int,
    *,
    seed: int = 0,
    niter: int = 20,
    max_points_per_centroid: int = 128,
    max_cluster_size: int | None = None,
    max_split_rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Train centroids, assign every row its probes, and split clusters that are too large.

    A cluster with more than ``max_cluster_size`` home rows is replaced by
    ``ceil(size / (max_cluster_size / 2))`` centroids trained on its rows, then every row is
    re-assigned (at most ``max_split_rounds`` times: rows that are exact copies of one another
    cannot be split by any centroid).

    Returns:
        ``(centroids (k', d), probes (n, p) int32)`` with column 0 the home cluster.
    """
    centroids = train_centroids(emb, k, seed=seed, niter=niter,
                                max_points_per_centroid=max_points_per_centroid)
    assignment = assign(emb, centroids, probes)
    for round_ in range(max_split_rounds if max_cluster_size else 0):
        sizes = np.bincount(assignment[:, 0], minlength=len(centroids))
        big = np.flatnonzero(sizes > max_cluster_size)
        if not len(big):
            break
        logger.info("splitting %d oversized cluster(s) (largest %d rows > %d), round %d",
                    len(big), sizes.max(), max_cluster_size, round_ + 1)
        parts = [np.delete(centroids, big, axis=0)]
        for c in big:
            rows = np.flatnonzero(assignment[:, 0] == c)
            sub_k = min(len(rows), math.ceil(len(rows) / max(1, max_cluster_size // 2)))
            parts.append(train_centroids(emb[rows], sub_k, seed=seed + 1 + int(c), niter=niter,
                                         max_points_per_centroid=max_points_per_centroid))
        centroids = np.concatenate(parts)
        assignment = assign(emb, centroids, probes)
    return centroids, assignment


def cluster_lists(assignment: np.ndarray, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Members (home == c) and guests (c among the other probes) of each cluster.

    Returns:
        ``(members, guests)``: two lists of ``k`` int64 arrays of row indices, each ascending.
    """
    n, p = assignment.shape
    home = assignment[:, 0]
    order = np.argsort(home, kind="stable")  # stable: rows stay ascending inside a cluster
    bounds = np.searchsorted(home[order], np.arange(k + 1))
    members = [order[bounds[c] : bounds[c + 1]] for c in range(k)]
    if p == 1:
        return members, [np.empty(0, np.int64) for _ in range(k)]
    others = assignment[:, 1:].ravel()
    rows = np.repeat(np.arange(n), p - 1)
    order = np.lexsort((rows, others))
    bounds = np.searchsorted(others[order], np.arange(k + 1))
    guests = [rows[order[bounds[c] : bounds[c + 1]]] for c in range(k)]
    return members, guests
