"""The representative rule, its exact reference and the per-batch baseline (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.dedup.greedy import (
    GreedyResult,
    exact_greedy,
    greedy_from_neighbors,
    per_batch_greedy,
)


def unit_at_angles(*cosines_to_first: float, d: int = 8) -> np.ndarray:
    """Rows in the plane of e0, e1 at the given cosines to e0 (row 0 is e0 itself)."""
    rows = [np.eye(d)[0]]
    for c in cosines_to_first:
        v = np.zeros(d)
        v[0], v[1] = c, np.sqrt(1 - c * c)
        rows.append(v)
    return np.array(rows, np.float32)


def test_chain_keeps_the_far_end():
    # a=e0, b at 25 deg, c at 50 deg: cos(a,b)=cos(b,c)=0.906 >= 0.9, cos(a,c)=0.643 < 0.9.
    ang = np.deg2rad([0, 25, 50])
    emb = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    r = exact_greedy(emb, 0.9)
    # a kept; b removed (a is kept and within threshold); c's only near row is b, which is
    # removed, so c is kept: the rule compares with *kept* rows only.
    assert r.keep.tolist() == [True, False, True]
    assert r.rep.tolist() == [-1, 0, -1]
    assert r.sim[1] == pytest.approx(np.cos(np.deg2rad(25)), abs=1e-6)
    assert r.sim[0] == r.sim[2] == 0


def test_representative_is_the_earliest_kept_not_the_most_similar():
    # rows 0 and 1 are far apart (both kept); row 2 is within threshold of both, closer to 1.
    ang = np.deg2rad([0, 20, 12])
    emb = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    r = exact_greedy(emb, 0.95)  # cos(0,1)=0.940 < 0.95; cos(2,0)=0.978, cos(2,1)=0.990
    assert r.keep.tolist() == [True, True, False]
    assert r.rep[2] == 0 and r.sim[2] == pytest.approx(np.cos(np.deg2rad(12)), abs=1e-6)


def test_isolated_pair_keeps_exactly_one_and_threshold_is_inclusive():
    emb = unit_at_angles(0.5, 0.9)  # cos(0,2) = 0.9 exactly (float32: >= 0.9 - 1e-7)
    r = exact_greedy(emb, 0.9 - 1e-6)
    assert r.keep.tolist() == [True, True, False] and r.rep[2] == 0
    assert exact_greedy(emb, 0.91).keep.all()


def test_blocks_give_the_same_answer_as_one_block():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 16))
    emb = np.concatenate([base, base + 0.2 * rng.standard_normal(base.shape)])
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    emb = emb[rng.permutation(80)]
    one = exact_greedy(emb, 0.95, block_size=1000)
    small = exact_greedy(emb, 0.95, block_size=7)
    assert one.n_removed > 10
    np.testing.assert_array_equal(one.keep, small.keep)
    np.testing.assert_array_equal(one.rep, small.rep)
    # invariants: representatives are earlier kept rows within threshold; kept set is free of pairs
    rm = np.flatnonzero(~one.keep)
    assert one.keep[one.rep[rm]].all() and (one.rep[rm] < rm).all()
    assert (one.sim[rm] >= 0.95).all()
    kept = emb[one.keep]
    s = kept @ kept.T
    np.fill_diagonal(s, 0)
    assert s.max() < 0.95


def test_per_batch_misses_pairs_across_batches():
    emb = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)  # row 2 = row 0, row 3 = row 1
    whole = per_batch_greedy(emb, 0.9, batch_size=4)
    assert whole.keep.tolist() == [True, True, False, False] and whole.rep.tolist() == [-1, -1, 0, 1]
    split = per_batch_greedy(emb, 0.9, batch_size=2)  # batches {0,1} and {2,3}: nothing to remove
    assert split.keep.all()
    halves = per_batch_greedy(emb[[0, 2, 1, 3]], 0.9, batch_size=2)  # dups inside each batch
    assert halves.keep.tolist() == [True, False, True, False] and halves.rep.tolist() == [-1, 0, -1, 2]


def test_empty_and_single_row():
    for n in (0, 1):
        r = exact_greedy(np.ones((n, 4), np.float32) / 2, 0.9)
        assert r.keep.tolist() == [True] * n and r.n_removed == 0


@pytest.mark.parametrize("threshold", [0, -0.5, 1.01])
def test_threshold_out_of_range(threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        exact_greedy(np.eye(3, dtype=np.float32), threshold)


def test_bad_embeddings():
    with pytest.raises(ValueError, match="2-D"):
        exact_greedy(np.ones(3, np.float32), 0.9)
    with pytest.raises(ValueError, match="NaN"):
        exact_greedy(np.array([[np.nan, 1]], np.float32), 0.9)


def test_greedy_from_neighbors_matches_hand_resolution_and_uses_fallback():
    # rows 0..4; edges (later -> earlier): 1->0, 2->1, 3->1, 4->2. 0 kept, 1 removed (by 0),
    # 2's only listed neighbour (1) is removed -> kept; 3 -> 1 removed, truncated: fallback says 0;
    # 4 -> 2 kept -> removed by 2.
    indptr = np.array([0, 0, 1, 2, 3, 4])
    nbr = np.array([0, 1, 1, 2])
    sims = np.array([0.95, 0.93, 0.97, 0.91], np.float32)
    truncated = np.array([False, False, False, True, False])
    asked = []

    def fallback(i, keep):
        asked.append((i, keep[:i].tolist()))
        return 0, 0.92

    r, unresolved = greedy_from_neighbors(5, indptr, nbr, sims, truncated, fallback)
    assert r.keep.tolist() == [True, False, True, False, False]
    assert r.rep.tolist() == [-1, 0, -1, 0, 2]
    assert r.sim.tolist() == pytest.approx([0, 0.95, 0, 0.92, 0.91])
    assert asked == [(3, [True, False, True])] and unresolved == 0
    r2, unresolved2 = greedy_from_neighbors(5, indptr, nbr, sims, truncated, None)
    assert r2.keep[3] and unresolved2 == 1


def test_all_kept_constructor():
    r = GreedyResult.all_kept(3)
    assert r.keep.all() and (r.rep == -1).all() and r.n_removed == 0
