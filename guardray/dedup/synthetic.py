"""Synthetic sentence-like embeddings with planted near-duplicates (tests and benchmarks).

Real sentence embeddings are not uniform on the sphere: they gather around topics. The
generator draws ``n_topics`` random unit topic directions; a base row is
``normalise(topic_weight * topic + g)`` with ``g ~ N(0, I/d)``, so two bases of the same topic
have cosine about ``w^2 / (1 + w^2)`` (0.39 for ``w = 0.8``) and of different topics about 0.
A fraction of the bases get 1..``max_copies`` copies at an exact cosine drawn uniformly from
``sim_range`` (``y = c x + sqrt(1 - c^2) u`` with ``u`` a unit vector orthogonal to ``x``).
With a range straddling the threshold, some copies are near-duplicates and some are not, and
copies of one base are at about ``c1 * c2`` from each other: chains and groups, not just pairs.
Rows come out shuffled.
"""

from __future__ import annotations

import numpy as np


def planted_near_duplicates(
    n: int,
    d: int = 384,
    *,
    dup_fraction: float = 0.2,
    max_copies: int = 3,
    sim_range: tuple[float, float] = (0.85, 0.99),
    n_topics: int | None = None,
    topic_weight: float = 0.8,
    seed: int = 0,
    dtype=np.float32,
) -> np.ndarray:
    """``(n, d)`` L2-normalised rows, about ``dup_fraction`` of which are planted copies.

    Args:
        n: rows to return.
        d: dimension (384 = all-MiniLM-L6-v2).
        dup_fraction: share of the ``n`` rows that are copies of another row.
        max_copies: copies per duplicated base are uniform in ``1..max_copies``.
        sim_range: cosine of a copy to its base, uniform in this range.
        n_topics: topic directions (default ``max(1, n // 500)``).
        topic_weight: weight of the topic direction in a base row.
        seed: RNG seed (same arguments, same array).
        dtype: output dtype.
    """
    if n < 0 or d < 2:
        raise ValueError(f"need n >= 0 and d >= 2, got n={n}, d={d}")
    rng = np.random.default_rng(seed)
    n_copies_target = int(round(n * dup_fraction))
    n_base = n - n_copies_target
    topics = _unit(rng.standard_normal((n_topics or max(1, n // 500), d), dtype=np.float32))
    base = topic_weight * topics[rng.integers(0, len(topics), n_base)]
    base += rng.standard_normal((n_base, d), dtype=np.float32) / np.float32(np.sqrt(d))
    base = _unit(base)
    copies_per = rng.integers(1, max_copies + 1, n_base)
    src = np.repeat(np.arange(n_base), copies_per)
    src = rng.permutation(src)[:n_copies_target] if len(src) else src
    if len(src) < n_copies_target:  # few bases: top up with more copies of random bases
        src = np.concatenate([src, rng.integers(0, max(n_base, 1), n_copies_target - len(src))])
    x = base[src]
    cos = rng.uniform(*sim_range, len(src)).astype(np.float32)[:, None]
    u = rng.standard_normal(x.shape, dtype=np.float32)
    u -= (u * x).sum(axis=1, keepdims=True) * x  # orthogonal to x
    u = _unit(u)
    copies = cos * x + np.sqrt(1 - cos**2) * u
    out = np.concatenate([base, copies]) if n_copies_target else base
    out = _unit(out)[rng.permutation(n)]
    return out.astype(dtype, copy=False)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)
