"""The global method with the pairwise step on Ray Data (groupby cluster -> map_groups)."""

from __future__ import annotations

import numpy as np

from guardray.dedup import metrics
from guardray.dedup.distributed import RANK, distributed_global_dedup
from guardray.dedup.greedy import exact_greedy
from guardray.dedup.semantic import GlobalParams
from guardray.dedup.synthetic import planted_near_duplicates

T = 0.9


def test_distributed_matches_exact_per_scope(ray_session):
    emb = planted_near_duplicates(2000, d=64, dup_fraction=0.25, seed=2000)
    scopes = np.r_[np.zeros(1200, np.int32), np.ones(800, np.int32)]
    rows = [{RANK: i, "embedding": e} for i, e in enumerate(emb)]
    rows.append({RANK: 5, "embedding": emb[5]})  # an identical copy shares its row's rank
    ds = ray_session.data.from_items(rows, override_num_blocks=2).materialize()
    params = GlobalParams(target_cluster_size=200, probes=3)
    res, stats = distributed_global_dedup(ds, scopes, T, params, num_partitions=2)
    assert set(stats) == {0, 1} and stats[0].n_clusters == 6 and stats[1].n_clusters == 4
    assert stats[0].unresolved == stats[1].unresolved == 0
    for a, b in ((0, 1200), (1200, 2000)):  # scopes are independent: compare each with exact
        ref = exact_greedy(emb[a:b], T)
        i, j, _ = metrics.exact_pairs(emb[a:b], T)
        keep = res.keep[a:b]
        assert len(i) > 30 and metrics.pair_recall(i, j, keep) >= 0.99
        assert np.mean(keep == ref.keep) >= 0.99
    rm = np.flatnonzero(~res.keep)
    assert res.keep[res.rep[rm]].all() and (res.rep[rm] < rm).all() and (res.sim[rm] >= T).all()
    assert (scopes[res.rep[rm]] == scopes[rm]).all(), "never compared across scopes"


def test_distributed_empty(ray_session):
    res, stats = distributed_global_dedup(ray_session.data.from_items([]), np.zeros(0, np.int32), T)
    assert len(res.keep) == 0 and stats == {}
