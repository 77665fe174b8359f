"""Global (SemDeDup-style) dedup against exact all-pairs greedy dedup on small sets."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.dedup import metrics
from guardray.dedup.greedy import exact_greedy
from guardray.dedup.partition import assign, cluster_lists, partition, train_centroids
from guardray.dedup.semantic import GlobalParams, cluster_edges, global_dedup
from guardray.dedup.synthetic import planted_near_duplicates

T = 0.9


def check_invariants(emb, r, threshold):
    """Every removed row names an earlier kept row within the threshold."""
    rm = np.flatnonzero(~r.keep)
    assert (r.rep[r.keep] == -1).all()
    assert r.keep[r.rep[rm]].all(), "a representative must be a kept row"
    assert (r.rep[rm] < rm).all(), "a representative comes earlier in the order"
    cos = np.einsum("ij,ij->i", emb[rm], emb[r.rep[rm]])
    np.testing.assert_allclose(r.sim[rm], cos, atol=1e-5)
    assert (r.sim[rm] >= threshold).all()


@pytest.mark.parametrize(
    ("n", "topic_weight", "params"),
    [
        (3000, 0.8, GlobalParams(n_clusters=12, probes=2)),
        (3000, 0.8, GlobalParams(target_cluster_size=100, probes=3)),
        (2000, 0.0, GlobalParams(n_clusters=8, probes=3)),  # no topic structure: the hard case
    ],
)
def test_global_agrees_with_exact_all_pairs(n, topic_weight, params):
    emb = planted_near_duplicates(n, d=64, dup_fraction=0.25, seed=n, topic_weight=topic_weight)
    ref = exact_greedy(emb, T)
    i, j, _ = metrics.exact_pairs(emb, T)
    assert len(i) > 200, "the set must contain near-duplicate pairs to test anything"
    assert metrics.pair_recall(i, j, ref.keep) == 1.0  # the reference resolves every pair
    res, stats = global_dedup(emb, T, params)
    assert stats.n_clusters > 1
    recall = metrics.pair_recall(i, j, res.keep)
    assert recall >= 0.99, f"recall of exact near-duplicate pairs {recall:.4f}"
    assert metrics.agreement(res, ref) >= 0.99
    check_invariants(emb, res, T)


def test_one_probe_misses_border_pairs_that_more_probes_find():
    emb = planted_near_duplicates(2000, d=64, dup_fraction=0.25, seed=5, topic_weight=0.0)
    i, j, _ = metrics.exact_pairs(emb, T)
    r1, _ = global_dedup(emb, T, GlobalParams(n_clusters=16, probes=1))
    r3, _ = global_dedup(emb, T, GlobalParams(n_clusters=16, probes=3))
    assert metrics.pair_recall(i, j, r1.keep) < metrics.pair_recall(i, j, r3.keep)


def test_with_all_candidates_it_equals_exact_greedy():
    # probes == clusters: every pair is a candidate, so the result must be exactly the reference.
    emb = planted_near_duplicates(1500, d=32, dup_fraction=0.3, seed=7)
    ref = exact_greedy(emb, T)
    res, _ = global_dedup(emb, T, GlobalParams(n_clusters=5, probes=5))
    np.testing.assert_array_equal(res.keep, ref.keep)
    np.testing.assert_array_equal(res.rep, ref.rep)
    np.testing.assert_allclose(res.sim, ref.sim, atol=1e-5)


def test_neighbour_cap_with_fallback_stays_exact():
    # A big near-duplicate group: 60 copies of one row at cos 0.93..0.99 (pairwise >= 0.86, so
    # some copies are not near each other). With at most 2 listed neighbours per row, the
    # fallback must still reproduce the exact rule.
    rng = np.random.default_rng(0)
    x = np.eye(48, dtype=np.float64)[0]
    u = rng.standard_normal((60, 48))
    u -= np.outer(u @ x, x)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    c = rng.uniform(0.93, 0.99, 60)[:, None]
    group = c * x + np.sqrt(1 - c**2) * u
    emb = np.concatenate([group, planted_near_duplicates(300, d=48, seed=1)]).astype(np.float32)
    emb = emb[rng.permutation(len(emb))]
    ref = exact_greedy(emb, T)
    res, stats = global_dedup(emb, T, GlobalParams(n_clusters=1, max_neighbors=2))
    assert stats.truncated_rows > 0 and stats.fallback_checks > 0
    np.testing.assert_array_equal(res.keep, ref.keep)
    np.testing.assert_array_equal(res.rep, ref.rep)


def test_deterministic():
    emb = planted_near_duplicates(2500, d=64, seed=11)
    params = GlobalParams(n_clusters=10, probes=2, seed=3)
    a, _ = global_dedup(emb, T, params)
    b, _ = global_dedup(emb.copy(), T, params)
    np.testing.assert_array_equal(a.keep, b.keep)
    np.testing.assert_array_equal(a.rep, b.rep)


def test_exact_duplicates_are_always_removed():
    emb = planted_near_duplicates(1000, d=32, seed=2, dup_fraction=0.0)
    emb = np.concatenate([emb, emb[:50]])  # identical copies, later in the order
    res, _ = global_dedup(emb, T, GlobalParams(n_clusters=6, probes=1))
    assert res.keep[:50].all() and not res.keep[1000:].any()
    assert (res.rep[1000:] == np.arange(50)).all()
    np.testing.assert_allclose(res.sim[1000:], 1.0, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_row(n):
    res, stats = global_dedup(np.ones((n, 8), np.float32) / np.sqrt(8), T)
    assert res.keep.tolist() == [True] * n and stats.n == n


def test_two_identical_rows_keep_exactly_one():
    emb = np.array([[0.6, 0.8], [0.6, 0.8]], np.float32)
    res, _ = global_dedup(emb, T)
    assert res.keep.tolist() == [True, False] and res.rep.tolist() == [-1, 0]


def test_cluster_edges_by_hand():
    # members 0, 2, 5 and guest 3; rows 0~2 and 3~5 near, 0 far from 5.
    emb = np.zeros((6, 3), np.float32)
    emb[[0, 2]] = [1, 0, 0]
    emb[2] = [0.96, 0.28, 0]
    emb[[3, 5]] = [0, 1, 0]
    emb[5] = [0, 0.96, 0.28]
    later, earlier, sim, cut = cluster_edges(emb, np.array([0, 2, 5]), np.array([3]), T)
    assert later.tolist() == [2, 5] and earlier.tolist() == [0, 3]
    np.testing.assert_allclose(sim, [0.96, 0.96], atol=1e-6)
    assert len(cut) == 0
    # cap of one neighbour: a row with two earlier neighbours is reported as cut
    emb[4] = emb[5]
    later, earlier, _, cut = cluster_edges(emb, np.array([3, 4, 5]), np.array([], np.int64), T,
                                           max_neighbors=1)
    assert later.tolist() == [4, 5] and earlier.tolist() == [3, 3] and cut.tolist() == [5]


def test_partition_probes_and_lists():
    emb = planted_near_duplicates(600, d=16, seed=4)
    cent = train_centroids(emb, 6, seed=0)
    assert cent.shape == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(cent, axis=1), 1, atol=1e-5)
    a = assign(emb, cent, 2)
    sims = emb @ cent.T
    assert (a[:, 0] == sims.argmax(axis=1)).all()
    members, guests = cluster_lists(a, 6)
    assert sorted(np.concatenate(members).tolist()) == list(range(600))
    assert sum(len(g) for g in guests) == 600
    assert all((np.diff(m) > 0).all() for m in members)


def test_oversized_clusters_are_split():
    emb = planted_near_duplicates(2000, d=16, seed=6, n_topics=2, topic_weight=3.0)
    _, a = partition(emb, 2, 2, max_cluster_size=300)
    assert np.bincount(a[:, 0]).max() <= 600  # split at least once; duplicates may resist
    assert a.max() + 1 > 2


def test_float16_embeddings_give_the_same_decisions():
    emb = planted_near_duplicates(2000, d=64, seed=8)
    params = GlobalParams(n_clusters=8, probes=2)
    a, _ = global_dedup(emb, T, params)
    b, _ = global_dedup(emb.astype(np.float16), T, params)
    assert a.n_removed > 100
    assert metrics.agreement(a, b) >= 0.998  # only pairs within float16 rounding of 0.9 may flip
