"""The "keep one representative" rule, and its exact all-pairs reference (pure numpy).

The rule (sequential leader clustering, Hartigan 1975; the greedy form of SemDeDup's
"keep one per near-duplicate group", Abbas et al. 2023):

    Rows are visited in a fixed order (guardray sorts a scope's rows by ``id``, a content
    hash, so the order does not depend on how the input was sharded). Row ``i`` is *removed*
    if some earlier *kept* row ``j`` has ``cos(e_i, e_j) >= threshold``; its representative
    is the earliest such kept row. Otherwise ``i`` is kept.

Consequences, which the tests check:

- every removed row names a kept row it duplicates (``sim >= threshold``), so a group of
  near-duplicates is never removed entirely: of an isolated pair exactly one row survives;
- no two kept rows are within the threshold of each other (under the exact reference);
- the result depends only on the embeddings, their order and the threshold.

Embeddings are L2-normalised rows (cosine = dot product), shape ``(n, d)``. Every method in
`guardray.dedup` returns a `GreedyResult` over row positions ``0..n-1``.

Exact reference `exact_greedy`: the rule applied with all pairs, in row blocks against the
kept rows so far: O(n^2 d) time but O(block x block) extra memory, never an n x n matrix.
Per-batch method `per_batch_greedy`: the rule inside consecutive batches of rows only (the
paper's per-mini-batch dedup, UniGuard appendix A.2): cheaper, but misses cross-batch pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_BLOCK = 2048


@dataclass
class GreedyResult:
    """Outcome of dedup over ``n`` rows in processing order.

    Attributes:
        keep: ``(n,)`` bool, True for kept rows.
        rep: ``(n,)`` int64, the representative (a kept row) of each removed row; -1 if kept.
        sim: ``(n,)`` float32, cosine of a removed row to its representative; 0 if kept.
    """

    keep: np.ndarray
    rep: np.ndarray
    sim: np.ndarray

    @classmethod
    def all_kept(cls, n: int) -> "GreedyResult":
        return cls(np.ones(n, bool), np.full(n, -1, np.int64), np.zeros(n, np.float32))

    @property
    def n_removed(self) -> int:
        return int((~self.keep).sum())


def check_embeddings(
    emb: np.ndarray, threshold: float, *, keep_float16: bool = False
) -> np.ndarray:
    """Validate ``emb`` (2-D, finite) and ``threshold`` (in (0, 1]).

    Args:
        emb: ``(n, d)`` array.
        threshold: cosine threshold.
        keep_float16: return float16 input as is (callers that cast tile by tile, so 10M+
            rows need no float32 copy); otherwise the result is float32.

    Returns:
        A C-ordered float32 (or float16) array.

    Raises:
        ValueError: naming the bad shape, value or threshold.
    """
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in (0, 1] (a cosine similarity), got {threshold}")
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (rows, dim), got shape {emb.shape}")
    dtype = np.float16 if keep_float16 and emb.dtype == np.float16 else np.float32
    emb = np.ascontiguousarray(emb, dtype=dtype)
    for start in range(0, len(emb), 65536):  # chunked: no n x d temporary
        if not np.isfinite(emb[start : start + 65536]).all():
            raise ValueError("embeddings contain NaN or infinite values")
    return emb


def exact_greedy(
    emb: np.ndarray, threshold: float, *, block_size: int = DEFAULT_BLOCK
) -> GreedyResult:
    """The representative rule over all pairs (the reference the scalable methods are measured by).

    Args:
        emb: ``(n, d)`` L2-normalised embeddings in processing order.
        threshold: cosine at or above which two rows are near-duplicates.
        block_size: rows per block; peak extra memory ~ ``block_size**2`` floats.

    Returns:
        `GreedyResult` over the ``n`` rows.
    """
    emb = check_embeddings(emb, threshold)
    n = len(emb)
    result = GreedyResult.all_kept(n)
    kept_rows: list[np.ndarray] = []  # kept row indices, one array per processed block (ascending)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        block = emb[start:stop]
        rep = np.full(stop - start, -1, np.int64)
        sim = np.zeros(stop - start, np.float32)
        # 1) against kept rows of earlier blocks, oldest first: the first hit is the earliest.
        for kept in kept_rows:
            open_rows = np.flatnonzero(rep < 0)
            if not len(open_rows):
                break
            for c0 in range(0, len(kept), block_size):
                cols = kept[c0 : c0 + block_size]
                s = block[open_rows] @ emb[cols].T
                hit = s >= threshold
                has = hit.any(axis=1) & (rep[open_rows] < 0)
                if has.any():
                    first = hit[has].argmax(axis=1)
                    rows = open_rows[has]
                    rep[rows] = cols[first]
                    sim[rows] = s[has, first]
                open_rows = open_rows[rep[open_rows] < 0]
                if not len(open_rows):
                    break
        # 2) inside the block, in order.
        _resolve_within(block @ block.T, threshold, rep, sim, offset=start)
        result.rep[start:stop] = rep
        result.sim[start:stop] = np.where(rep >= 0, sim, 0)
        result.keep[start:stop] = rep < 0
        kept_rows.append(start + np.flatnonzero(rep < 0))
    return result


def _resolve_within(
    s: np.ndarray, threshold: float, rep: np.ndarray, sim: np.ndarray, offset: int
) -> None:
    """Apply the rule inside one block whose rows are consecutive in the order.

    ``s`` is the block's ``(b, b)`` similarity matrix; rows with ``rep >= 0`` on entry are
    already removed (by earlier blocks) and can represent nothing. Updates ``rep``/``sim``.
    """
    hits = np.tril(s >= threshold, k=-1)
    candidates = np.flatnonzero(hits.any(axis=1))
    for r in candidates:  # ascending: every earlier row is already decided
        if rep[r] >= 0:
            continue
        earlier = np.flatnonzero(hits[r, :r] & (rep[:r] < 0))
        if len(earlier):
            j = earlier[0]
            rep[r] = offset + j
            sim[r] = s[r, j]


def per_batch_greedy(
    emb: np.ndarray, threshold: float, batch_size: int, *, block_size: int = DEFAULT_BLOCK
) -> GreedyResult:
    """The rule inside consecutive batches of ``batch_size`` rows, independently.

    The GuardFormer/UniGuard per-mini-batch dedup (appendix A.2): O(n x batch_size) cost, but
    a pair in two different batches is never compared.
    """
    emb = check_embeddings(emb, threshold)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(emb)
    result = GreedyResult.all_kept(n)
    for start in range(0, n, batch_size):
        part = exact_greedy(emb[start : start + batch_size], threshold, block_size=block_size)
        stop = start + len(part.keep)
        result.keep[start:stop] = part.keep
        result.rep[start:stop] = np.where(part.rep >= 0, part.rep + start, -1)
        result.sim[start:stop] = part.sim
    return result


Fallback = Callable[[int, np.ndarray], "tuple[int, float] | None"]


def greedy_from_neighbors(
    n: int,
    indptr: np.ndarray,
    neighbors: np.ndarray,
    sims: np.ndarray,
    truncated: np.ndarray | None = None,
    fallback: Fallback | None = None,
) -> tuple[GreedyResult, int]:
    """Apply the rule given each row's earlier near-duplicate neighbours (a sparse graph).

    Args:
        n: number of rows.
        indptr: ``(n + 1,)`` CSR pointers: row ``i``'s neighbours are
            ``neighbors[indptr[i]:indptr[i+1]]``.
        neighbors: earlier rows (``< i``) within the threshold, ascending per row.
        sims: ``(len(neighbors),)`` their cosines.
        truncated: ``(n,)`` bool, True where a row's list was cut to its earliest entries (it
            may have later-listed earlier neighbours that are not in the list).
        fallback: called as ``fallback(i, keep)`` for a truncated row whose listed neighbours
            were all removed; returns ``(j, sim)`` for its earliest kept neighbour, or None.

    Returns:
        ``(result, unresolved)``: unresolved counts truncated rows kept without a fallback
        check (0 when ``fallback`` is given).
    """
    result = GreedyResult.all_kept(n)
    keep = result.keep
    indptr_l = indptr.tolist()
    nbr_l = neighbors.tolist()
    trunc = truncated if truncated is not None else np.zeros(n, bool)
    unresolved = 0
    for i in np.flatnonzero(np.diff(indptr) > 0).tolist():
        for k in range(indptr_l[i], indptr_l[i + 1]):
            j = nbr_l[k]
            if keep[j]:
                keep[i] = False
                result.rep[i] = j
                result.sim[i] = sims[k]
                break
        else:
            if trunc[i]:
                found = fallback(i, keep) if fallback is not None else None
                if fallback is None:
                    unresolved += 1
                elif found is not None:
                    keep[i] = False
                    result.rep[i], result.sim[i] = found
    return result, unresolved
