"""Quality measures of a dedup result against exact all-pairs (pure numpy + faiss).

- `exact_pairs`: every pair with cosine >= threshold, by tiled all-pairs (O(n^2 d) time,
  O(tile^2) memory): feasible to ~10^5 rows on a CPU.
- `pair_recall`: the share of those pairs that the result resolved, i.e. that do not survive
  with *both* rows kept. The exact greedy rule scores 1.0 by construction.
- `sampled_pair_recall`: the same, estimated from the exact neighbours of a random sample of
  rows (for sizes where all pairs are too costly: 1M rows x 2000 queries is one GEMM pass).
- `agreement`: share of rows whose keep/remove decision equals a reference's.
- `candidate_coverage`: share of pairs a partition makes candidates (one row's home among the
  other's probes): the upper bound the partition puts on recall.
"""

from __future__ import annotations

import numpy as np

from guardray.dedup.greedy import GreedyResult, check_embeddings


def exact_pairs(emb: np.ndarray, threshold: float, *, block_size: int = 4096):
    """All pairs ``i < j`` with ``cos >= threshold``.

    Returns:
        ``(i, j, sim)``: int64, int64, float32 arrays sorted by ``(i, j)``.
    """
    emb = check_embeddings(emb, threshold)
    n = len(emb)
    parts_i, parts_j, parts_s = [], [], []
    for r0 in range(0, n, block_size):
        rows = emb[r0 : r0 + block_size]
        for c0 in range(r0, n, block_size):
            s = rows @ emb[c0 : c0 + block_size].T
            if c0 == r0:
                s = np.triu(s, k=1)
            a, b = np.nonzero(s >= threshold)
            parts_i.append(r0 + a)
            parts_j.append(c0 + b)
            parts_s.append(s[a, b])
    if not parts_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    i, j, s = (np.concatenate(p) for p in (parts_i, parts_j, parts_s))
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), s[order].astype(np.float32)


def pair_recall(i: np.ndarray, j: np.ndarray, keep: np.ndarray) -> float:
    """Share of near-duplicate pairs ``(i, j)`` not both kept (1.0 when there are no pairs)."""
    if not len(i):
        return 1.0
    return float(1.0 - np.mean(keep[i] & keep[j]))


def sampled_pair_recall(
    emb: np.ndarray, keep: np.ndarray, threshold: float, *, n_queries: int = 2000, seed: int = 0,
    block_size: int = 65536,
) -> tuple[float, int]:
    """`pair_recall` estimated from the exact neighbours of ``n_queries`` random rows.

    Each sampled row is compared with all ``n`` rows; every pair it is in counts once.

    Returns:
        ``(recall, pairs_seen)``.
    """
    emb = check_embeddings(emb, threshold)
    n = len(emb)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, size=min(n_queries, n), replace=False))
    both_kept = total = 0
    for c0 in range(0, n, block_size):
        s = emb[queries] @ emb[c0 : c0 + block_size].T
        a, b = np.nonzero(s >= threshold)
        cols = c0 + b
        mask = cols != queries[a]
        a, cols = a[mask], cols[mask]
        total += len(a)
        both_kept += int((keep[queries[a]] & keep[cols]).sum())
    return (1.0 - both_kept / total if total else 1.0), total


def agreement(result: GreedyResult, reference: GreedyResult) -> float:
    """Share of rows with the same keep/remove decision in both results."""
    if not len(reference.keep):
        return 1.0
    return float(np.mean(result.keep == reference.keep))


def candidate_coverage(i: np.ndarray, j: np.ndarray, assignment: np.ndarray) -> float:
    """Share of pairs where one row's home cluster is among the other's probes."""
    if not len(i):
        return 1.0
    home = assignment[:, :1]
    covered = (assignment[i] == home[j]).any(axis=1) | (assignment[j] == home[i]).any(axis=1)
    return float(covered.mean())
