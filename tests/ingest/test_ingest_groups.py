"""Near-duplicate groups and group splits (pure numpy): no group straddles two splits."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.ingest import groups as G


def planted(n_groups: int = 40, per: int = 4, dim: int = 32, noise: float = 0.05, seed: int = 0):
    """Normalised embeddings: ``n_groups`` random centres with ``per`` noisy copies each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim))
    emb = np.repeat(centres, per, axis=0) + noise * rng.normal(size=(n_groups * per, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    order = rng.permutation(len(emb))
    return emb[order].astype(np.float32), np.repeat(np.arange(n_groups), per)[order]


def bfs_components(emb: np.ndarray, threshold: float) -> np.ndarray:
    sims = emb @ emb.T
    n = len(emb)
    label = -np.ones(n, np.int64)
    for i in range(n):
        if label[i] >= 0:
            continue
        stack, comp = [i], []
        label[i] = i
        while stack:
            u = stack.pop()
            comp.append(u)
            for v in np.flatnonzero(sims[u] >= threshold):
                if label[v] < 0:
                    label[v] = i
                    stack.append(v)
        label[comp] = min(comp)
    return label


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("block_size", [16, 4096])
def test_components_match_breadth_first_search(seed, block_size):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(120, 6)).astype(np.float32)  # low dimension: many chained links
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for threshold in (0.8, 0.95):
        got = G.near_duplicate_components(emb, threshold, block_size=block_size)
        assert (got == bfs_components(emb, threshold)).all()


def test_planted_near_duplicates_form_their_groups():
    emb, truth = planted()
    comps = G.near_duplicate_components(emb, 0.9, block_size=16)
    groups, g = G.merge_labels(comps)
    assert g == 40
    for t in range(40):  # each planted group is exactly one component
        assert len(set(groups[truth == t])) == 1


def split_property_holds(emb, codes, threshold) -> bool:
    sims = emb @ emb.T
    a, b = np.nonzero(sims >= threshold)
    return bool((codes[a] == codes[b]).all())


@pytest.mark.parametrize("seed", range(3))
def test_no_near_duplicate_pair_straddles_splits(seed):
    emb, _ = planted(n_groups=120, per=3, noise=0.15, seed=seed)
    keys = G.text_keys([f"text {i}" for i in range(len(emb))])
    held = np.zeros(len(emb), bool)
    held[:5] = True
    codes, groups, stats = G.assign_text_splits(keys, held, emb, threshold=0.8, validation=0.2,
                                                test=0.2, seed=seed, block_size=64)
    assert split_property_holds(emb, codes, 0.8)
    # groups with a held-out member are entirely test; others spread over all splits
    test = G.SPLIT_CODES["test"]
    assert (codes[np.isin(groups, groups[held])] == test).all()
    assert set(codes.tolist()) == {0, 1, 2}
    assert stats["held_out_groups"] == len(set(groups[held]))
    assert stats["pulled_into_test"] == int(np.isin(groups, groups[held]).sum() - 5)
    frac = np.bincount(codes, minlength=3) / len(codes)
    assert 0.4 < frac[0] < 0.8 and 0.08 < frac[1] < 0.35 and 0.1 < frac[2] < 0.4


def test_splits_are_deterministic_and_independent_of_row_order():
    emb, _ = planted(n_groups=60, per=3, noise=0.1)
    texts = [f"prompt {i}" for i in range(len(emb))]
    keys = G.text_keys(texts)
    held = np.zeros(len(emb), bool)
    kw = {"threshold": 0.8, "validation": 0.1, "test": 0.2, "seed": 3}
    codes, _, _ = G.assign_text_splits(keys, held, emb, **kw)
    perm = np.random.default_rng(1).permutation(len(emb))
    codes_perm, _, _ = G.assign_text_splits(keys[perm], held[perm], emb[perm], **kw)
    assert (codes_perm == codes[perm]).all()
    other_seed, _, _ = G.assign_text_splits(keys, held, emb, **{**kw, "seed": 4})
    assert (other_seed != codes).any()


def test_exact_groups_and_normalisation():
    assert G.normalize_text("  Hello\u00a0\tWORLD\n") == "hello world"
    keys = G.text_keys(["Hello world", "hello   WORLD ", "other"])
    assert keys[0] == keys[1] != keys[2]
    codes, _groups, stats = G.assign_text_splits(np.unique(keys), np.array([False, True]), None,
                                                threshold=0.9, validation=0.0, test=0.0, seed=0)
    assert stats["groups"] == 2 and sorted(G.split_names(codes)) == ["test", "train"]


def test_shadowed_by_held_out_rows():
    emb = np.eye(4, dtype=np.float32)
    emb[1] = [0.95, np.sqrt(1 - 0.95 ** 2), 0, 0]  # text 1 is a near-duplicate of text 0
    text_index = np.array([0, 1, 1, 2, 3, 0])
    policies = ["safety", "safety", "tax", "safety", "safety", "tax"]
    held = np.array([True, False, False, False, False, False])
    drop = G.shadowed_by_held_out(text_index, policies, held, emb, 0.9, block_size=2)
    # the safety copy of text 1 goes; the tax rows have no held-out row of their policy
    assert drop.tolist() == [False, True, False, False, False, False]
    exact = G.shadowed_by_held_out(np.array([0, 0, 1]), ["a", "a", "a"],
                                   np.array([True, False, False]), None, 0.9)
    assert exact.tolist() == [False, True, False]


def test_top_up_moves_train_groups_until_a_rare_stratum_has_its_share():
    # 10 groups; stratum 0 (rare: 1 row in each of groups 0-5), stratum 1 (1 row everywhere)
    counts = np.zeros((10, 2), np.int64)
    counts[:6, 0] = 1
    counts[:, 1] = 1
    train, val, test = (G.SPLIT_CODES[n] for n in ("train", "validation", "test"))
    codes = np.array([train] * 6 + [val, test, test, train], np.int8)
    keys = np.arange(10, dtype=np.uint64) + 1000
    movable = np.ones(10, bool)
    new, moved = G.top_up_strata(codes, counts, keys, movable, validation=0.34, test=0.34,
                                 seed=0)
    # stratum 0: floor(0.34 * 6) = 2 rows each for validation and test, 0 before -> 4 moves
    for code in (val, test):
        assert counts[new == code, 0].sum() == 2
    # stratum 1: floor(0.34 * 10) = 3 each; validation had 1, +2 from stratum 0's moves -> 3;
    # test had 2, +2 -> 4: nothing more moves
    assert counts[new == val, 1].sum() == 3 and counts[new == test, 1].sum() == 4
    assert moved == 4 and int((new != codes).sum()) == 4
    # only train groups moved, and the groups already in validation / test kept their split
    assert (codes[new != codes] == train).all() and (new[6:9] == codes[6:9]).all()
    # a stratum already at its share moves nothing; unmovable groups never move
    same, none = G.top_up_strata(new, counts, keys, movable, validation=0.34, test=0.34, seed=0)
    assert none == 0 and (same == new).all()
    pinned, n0 = G.top_up_strata(codes, counts, keys, np.zeros(10, bool), validation=0.34,
                                 test=0.34, seed=0)
    assert n0 == 0 and (pinned == codes).all()
    # min_rows caps the share: 1 row of stratum 0 per split is enough -> 2 moves; 0: none
    capped, n1 = G.top_up_strata(codes, counts, keys, movable, validation=0.34, test=0.34,
                                 seed=0, min_rows=1)
    assert n1 == 2 and counts[capped == val, 0].sum() == counts[capped == test, 0].sum() == 1
    off, n_off = G.top_up_strata(codes, counts, keys, movable, validation=0.34, test=0.34,
                                 seed=0, min_rows=0)
    assert n_off == 0 and (off == codes).all()


def test_stratified_split_keeps_held_out_groups_and_near_duplicates_together():
    emb, _ = planted(n_groups=120, per=3, noise=0.15, seed=1)
    keys = G.text_keys([f"text {i}" for i in range(len(emb))])
    held = np.zeros(len(emb), bool)
    held[:5] = True
    strata = np.zeros((len(emb), 2), np.int64)
    strata[:, 0] = 1
    strata[::30, 1] = 1  # a rare stratum: 12 texts
    kw = {"threshold": 0.8, "validation": 0.25, "test": 0.25, "seed": 0, "block_size": 64}
    plain, groups, _ = G.assign_text_splits(keys, held, emb, **kw)
    codes, groups2, stats = G.assign_text_splits(keys, held, emb, strata=strata, **kw)
    assert strata[plain == G.SPLIT_CODES["validation"], 1].sum() < 3  # the hash split is short
    assert (groups == groups2).all() and split_property_holds(emb, codes, 0.8)
    assert (codes[np.isin(groups, groups[held])] == G.SPLIT_CODES["test"]).all()
    for name in ("validation", "test"):
        assert strata[codes == G.SPLIT_CODES[name], 1].sum() >= 3  # floor(0.25 * 12)
    changed = codes != plain
    assert stats["stratified_moves"] == len(set(groups[changed].tolist())) > 0
    assert (plain[changed] == G.SPLIT_CODES["train"]).all()


@pytest.mark.parametrize("seed", range(4))
def test_group_texts_tops_up_each_policy_and_label(seed):
    from guardray.config.base import SplitConfig
    from guardray.ingest import GroupSplitSettings
    from guardray.ingest.split import group_texts

    # one policy's 6 unsafe rows among 60; the same texts again under a second policy, safe
    texts = [f"request {i}" for i in range(60)] * 2
    policies = ["tax"] * 60 + ["safety"] * 60
    labels = [int(i < 6) for i in range(60)] + [0] * 60
    kw = {"groups": GroupSplitSettings(method="exact"), "embedder": None, "seed": seed,
          "split": SplitConfig(validation=0.34, test=0.34), "policies": policies,
          "labels": labels}
    splits = np.asarray(group_texts(texts, ["x"] * 120, **kw).row_splits())
    unsafe = np.asarray(labels) == 1
    for name in ("validation", "test"):  # floor(0.34 * 6) = 2 each, whatever the hash did
        assert int((unsafe & (splits == name)).sum()) >= 2
    assert (splits[:60] == splits[60:]).all()  # a text keeps one split under every policy
    plain = group_texts(texts, ["x"] * 120, **{
        **kw, "groups": GroupSplitSettings(method="exact", stratify_min_rows=0)})
    assert plain.stats["stratified_moves"] == 0
    plain_splits = np.asarray(plain.row_splits())  # the hash split alone falls short here
    assert min(int((unsafe & (plain_splits == n)).sum()) for n in ("validation", "test")) < 2
