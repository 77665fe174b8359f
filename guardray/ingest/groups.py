"""Near-duplicate groups and the split of each group (pure: numpy only).

Why groups: a random split by row puts one paraphrase of a prompt in train and another in
test, and the test figure then measures memorisation. Here every *text* (over all policies,
so the same prompt is in one split for every policy: GIP sees all policies at once) belongs
to one group:

- texts equal after normalisation (`normalize_text`: NFKC, case-fold, whitespace collapsed)
  are one text;
- texts whose embeddings have cosine >= threshold are linked, and groups are the connected
  components of those links (`near_duplicate_components`, union-find over an exact blocked
  all-pairs scan: O(n^2 d) multiply-adds, about a minute for 100k texts on 2 cores; memory
  ``block x n`` floats).

Each group goes to one split (`group_splits`): ``test`` if it holds a held-out row, else by a
seeded hash of its key (the smallest text hash in it) against the split fractions, so the
assignment depends neither on row order nor on sharding, and a group keeps its split when
unrelated rows are added. Chaining (A~B, B~C) can merge a templated collection into one large
group: that is the point (its members are near-duplicates of each other), but it skews the
split fractions, so the sizes are reported.

A hash split is unstratified, so a rare stratum (a policy's few unsafe rows) can miss an
evaluation split almost entirely; given per-text stratum counts, `top_up_strata` then moves
a few ``train`` groups until each rare stratum has at least its floor share of
``validation`` and ``test`` (up to ``min_rows``; everything else keeps its hash split).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

from guardray import schema as S

_SPACE_RE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff]+")
SPLIT_CODES = {name: i for i, name in enumerate(S.SPLITS)}  # train 0, validation 1, test 2


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace runs collapsed and stripped (as the dedup stage does)."""
    return _SPACE_RE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_keys(texts: Iterable[str]) -> np.ndarray:
    """(n,) uint64 BLAKE2b-64 of each normalised text."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(normalize_text(t).encode("utf-8"), digest_size=8)
                        .digest(), "little") for t in texts), np.uint64)


def _roots(parent: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Roots of ``idx`` in the forest ``parent`` (pointer jumping, vectorised)."""
    r = parent[idx]
    while True:
        nxt = parent[r]
        if np.array_equal(nxt, r):
            return r
        r = nxt


def _link(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Union the components of each pair ``(a[k], b[k])``; roots point to the smaller index."""
    while len(a):
        ra, rb = _roots(parent, a), _roots(parent, b)
        differ = ra != rb
        if not differ.any():
            return
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        pairs = np.unique(np.stack([hi, lo], axis=1), axis=0)
        # one write per root this round (a root linked to several smaller roots keeps the
        # smallest); the other links are retried with the updated forest
        first = np.unique(pairs[:, 0], return_index=True)[1]
        parent[pairs[first, 0]] = pairs[first, 1]
        a, b = pairs[:, 0], pairs[:, 1]
        parent[:] = _roots(parent, np.arange(len(parent)))  # full compression


def near_duplicate_components(emb: np.ndarray, threshold: float, *,
                              block_size: int = 4096) -> np.ndarray:
    """Connected components of the graph "cosine >= threshold".

    Args:
        emb: (n, d) L2-normalised embeddings (cosine = dot product).
        threshold: link threshold.
        block_size: rows per block of the scan.

    Returns:
        (n,) int64: each row's component, named by its smallest row index.
    """
    n = len(emb)
    parent = np.arange(n, dtype=np.int64)
    if n < 2:
        return parent
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        sims = emb[start:stop] @ emb[start:].T  # (b, n - start): this block vs itself and later
        rows, cols = np.nonzero(sims >= np.float32(threshold))
        rows, cols = rows + start, cols + start
        later = cols > rows  # each pair once, no self-pairs
        _link(parent, rows[later].astype(np.int64), cols[later].astype(np.int64))
    return _roots(parent, np.arange(n))


def merge_labels(components: np.ndarray) -> tuple[np.ndarray, int]:
    """``(dense group ids 0..g-1, g)`` of component labels (first-seen order)."""
    _, dense = np.unique(components, return_inverse=True)
    return dense.astype(np.int64), int(dense.max()) + 1 if len(dense) else 0


def group_keys(groups: np.ndarray, keys: np.ndarray, n_groups: int) -> np.ndarray:
    """(g,) uint64: the smallest text key of each group."""
    out = np.full(n_groups, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(out, groups, keys.astype(np.uint64))
    return out


def hash_unit(keys: np.ndarray, seed: int) -> np.ndarray:
    """(g,) float64 in [0, 1): a seeded hash of each key."""
    salt = f"guardray-split\x1f{seed}".encode()
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(int(k).to_bytes(8, "little"), digest_size=8,
                                        key=salt[:64]).digest(), "little") / 2.0 ** 64
         for k in keys), np.float64, len(keys))


def group_splits(keys: np.ndarray, held_out: np.ndarray, *, validation: float, test: float,
                 seed: int) -> np.ndarray:
    """Split code (`SPLIT_CODES`) of each group.

    Args:
        keys: (g,) uint64 group keys.
        held_out: (g,) bool: the group holds a held-out row (-> test).
        validation, test: fractions of groups (by hash) for these splits.
        seed: split seed.

    Returns:
        (g,) int8 codes: 0 train, 1 validation, 2 test.
    """
    u = hash_unit(keys, seed)
    codes = np.where(u < test, SPLIT_CODES["test"],
                     np.where(u < test + validation, SPLIT_CODES["validation"],
                              SPLIT_CODES["train"])).astype(np.int8)
    codes[np.asarray(held_out, bool)] = SPLIT_CODES["test"]
    return codes


def top_up_strata(codes: np.ndarray, counts: np.ndarray, keys: np.ndarray, movable: np.ndarray,
                  *, validation: float, test: float, seed: int, min_rows: int = 10
                  ) -> tuple[np.ndarray, int]:
    """Move groups from ``train`` until every rare stratum has its share of each evaluation
    split.

    A split by group hash is unstratified: a rare stratum (a policy's few unsafe rows) can
    land almost wholly in ``train``. On the main job's data, 1 of tax's 36 unsafe rows went to
    validation (15% would be 5), so tax's validation macro-F1 was decided by one row. For each
    stratum ``s`` (e.g. one (policy, label) pair), rarest first, and each evaluation split
    ``e`` with fraction ``f_e``, while

        rows_e(s) < min(floor(f_e * rows(s)), min_rows)

    the next ``train`` group holding ``s`` (in seeded hash order, so the choice is as random as
    the hash split and independent of row order) moves to ``e``. Only ``train`` groups move,
    and only ``movable`` ones, so held-out groups stay in ``test`` and an evaluation split never
    loses a group. ``min_rows`` limits the top-up to rare strata: a stratum with ``min_rows``
    rows in a split is left alone, so common strata keep their hash split (filling every
    stratum to its exact share moved 144 rows of the main job's 4131 into validation and cost
    the TaskGuards training rows; this moves a few groups).

    Args:
        codes: (g,) split codes (`SPLIT_CODES`) from `group_splits`.
        counts: (g, s) rows of each stratum in each group.
        keys: (g,) uint64 group keys (their seeded hash orders the candidates).
        movable: (g,) bool: groups that may move.
        validation, test: the split fractions.
        seed: split seed.
        min_rows: rows per split at which a stratum counts as served (0: nothing moves).

    Returns:
        ``(new codes (g,), number of groups moved)``.
    """
    codes = np.asarray(codes, np.int8).copy()
    counts = np.asarray(counts, np.int64)
    if codes.size == 0 or counts.size == 0:
        return codes, 0
    order = np.argsort(hash_unit(keys, seed + 1), kind="stable")
    train = SPLIT_CODES["train"]
    moved = 0
    totals = counts.sum(axis=0)
    for s in np.argsort(totals, kind="stable"):
        have = counts[order, s] > 0
        for name, frac in (("validation", validation), ("test", test)):
            code = SPLIT_CODES[name]
            share = min(int(math.floor(frac * totals[s] + 1e-9)), int(min_rows))
            need = share - int(counts[codes == code, s].sum())
            for gi in order[have]:
                if need <= 0:
                    break
                if codes[gi] == train and movable[gi]:
                    codes[gi] = code
                    need -= int(counts[gi, s])
                    moved += 1
    return codes, moved


def assign_text_splits(text_key: np.ndarray, held_out: np.ndarray, emb: np.ndarray | None, *,
                       threshold: float, validation: float, test: float, seed: int,
                       block_size: int = 4096, strata: np.ndarray | None = None,
                       min_rows: int = 10) -> tuple[np.ndarray, np.ndarray, dict]:
    """Splits of distinct texts.

    Args:
        text_key: (t,) uint64 keys of distinct normalised texts.
        held_out: (t,) bool: some row with this text is held out.
        emb: (t, d) normalised embeddings of the texts, or None for exact groups only.
        threshold, block_size: see `near_duplicate_components`.
        validation, test, seed: see `group_splits`.
        strata: (t, s) rows of each stratum per text (e.g. per (policy, label)), or None:
            with it, rare strata get their share of validation and test (`top_up_strata`,
            with ``min_rows``).

    Returns:
        ``(split codes (t,) int8, group id (t,) int64, stats)``; stats: groups, largest group,
        texts in groups of 2+, held-out groups, texts pulled into test by a held-out member,
        groups moved out of train by the stratified top-up.
    """
    t = len(text_key)
    comps = (near_duplicate_components(emb, threshold, block_size=block_size)
             if emb is not None else np.arange(t, dtype=np.int64))
    groups, g = merge_labels(comps)
    held_group = np.zeros(g, bool)
    np.logical_or.at(held_group, groups, np.asarray(held_out, bool))
    gkeys = group_keys(groups, text_key, g)
    codes_g = group_splits(gkeys, held_group, validation=validation, test=test, seed=seed)
    moved = 0
    if strata is not None and t:
        strata = np.asarray(strata, np.int64).reshape(t, -1)
        counts = np.zeros((g, strata.shape[1]), np.int64)
        np.add.at(counts, groups, strata)
        codes_g, moved = top_up_strata(codes_g, counts, gkeys, ~held_group,
                                       validation=validation, test=test, seed=seed,
                                       min_rows=min_rows)
    sizes = np.bincount(groups, minlength=g) if t else np.zeros(0, np.int64)
    codes = codes_g[groups] if t else np.zeros(0, np.int8)
    stats = {
        "texts": t, "groups": g, "largest_group": int(sizes.max()) if t else 0,
        "texts_in_shared_groups": int((sizes[groups] >= 2).sum()) if t else 0,
        "held_out_groups": int(held_group.sum()),
        "pulled_into_test": int((held_group[groups] & ~np.asarray(held_out, bool)).sum())
        if t else 0,
        "group_split_texts": {name: int((codes == c).sum()) for name, c in SPLIT_CODES.items()},
        "stratified_moves": moved,
    }
    return codes, groups, stats


def split_names(codes: Sequence[int]) -> list[str]:
    """Split names of codes."""
    return [S.SPLITS[int(c)] for c in codes]


def shadowed_by_held_out(text_index: np.ndarray, policies: Sequence[str], held_out: np.ndarray,
                         emb: np.ndarray | None, threshold: float, *,
                         block_size: int = 4096) -> np.ndarray:
    """Rows that duplicate a held-out row of the same policy (and are not held out themselves).

    The dedup stage keeps one row of each near-duplicate pair, by id; if it kept the training
    source's copy, the held-out set would silently shrink. Dropping these rows first keeps
    the held-out copy.

    Args:
        text_index: (n,) each row's distinct-text index (rows of equal normalised text share it).
        policies: (n,) policy ids.
        held_out: (n,) bool.
        emb: (t, d) normalised embeddings of the distinct texts, or None (equal texts only).
        threshold: cosine at or above which a row duplicates a held-out row (dedup's).
        block_size: rows per similarity block.

    Returns:
        (n,) bool: rows to drop.
    """
    text_index = np.asarray(text_index, np.int64)
    held_out = np.asarray(held_out, bool)
    policies = np.asarray(policies, dtype=object)
    drop = np.zeros(len(text_index), bool)
    for policy in np.unique(policies):
        rows = policies == policy
        held_texts = np.unique(text_index[rows & held_out])
        others = np.flatnonzero(rows & ~held_out)
        if not len(held_texts) or not len(others):
            continue
        if emb is None:
            drop[others[np.isin(text_index[others], held_texts)]] = True
            continue
        other_texts = np.unique(text_index[others])
        hit = np.zeros(len(other_texts), bool)
        held_emb = emb[held_texts]
        for start in range(0, len(other_texts), block_size):
            block = emb[other_texts[start:start + block_size]] @ held_emb.T
            hit[start:start + block_size] = block.max(axis=1) >= np.float32(threshold)
        drop[others[np.isin(text_index[others], other_texts[hit])]] = True
    return drop
