"""The search space Ω: seed point, uniform draws (eq. 8), local moves, configs, features."""

from __future__ import annotations

import numpy as np
import pytest

from guardray.search.recipe import merge_plan, recipe
from guardray.search.space import METHODS, Point, SearchSpace, SpaceError


def _space(**kw) -> SearchSpace:
    args = {"f1": [0.9, 0.8, 0.6], "methods": list(METHODS), "n_instructions": 2,
            "min_models": 1}
    return SearchSpace(**{**args, **kw})


def test_seed_point_is_the_f1_weighted_soup_of_the_top_k():
    p = _space(max_models=2).seed_point()
    assert p.members == (0, 1) and p.method == "linear"
    assert np.allclose(p.weights, [0.9 / 1.7, 0.8 / 1.7])


def test_uniform_draws_stay_in_omega():
    space = _space()
    rng = np.random.default_rng(0)
    methods = set()
    for _ in range(300):
        p = space.sample(rng)
        methods.add(p.method)
        assert abs(sum(p.weights) - 1) < 1e-9 and min(p.weights) >= 0
        assert list(p.members) == sorted(set(p.members)) and 1 <= len(p.members) <= 3
        assert p.method != "slerp" or len(p.members) == 2
        for name, value in p.params:
            lo, hi = space.ranges[name]
            assert lo <= value <= hi
        q = space.perturb(p, rng, 0.2)
        assert abs(sum(q.weights) - 1) < 1e-9 and q.method in space.valid_methods(len(q.members))
        z = space.features(p)
        assert z.shape == (space.n_features,) and z.min() >= 0 and z.max() <= 1
    assert methods == set(METHODS)


def test_features_by_hand_equal_merges_get_equal_features():
    space = _space(methods=["linear", "task_arithmetic", "ties"], n_instructions=2)
    # [w_0 w_1 w_2 | linear ta ties | density lambda drop_rate | instruction 0 1]
    soup = Point((0, 2), (0.7, 0.3), "linear", (), 1)
    ta1 = Point((0, 2), (0.7, 0.3), "task_arithmetic", (("lambda", 1.0),), 1)
    np.testing.assert_allclose(space.features(soup),
                               [0.7, 0, 0.3, 0, 1, 0, 1, 0.5, 0, 0, 1])
    np.testing.assert_array_equal(space.features(soup), space.features(ta1))
    ties = Point((0, 1), (0.5, 0.5), "ties", (("density", 0.4), ("lambda", 1.25)), 0)
    # density (0.4 - 0.1) / 0.9, lambda (1.25 - 0.5) / 1.0; no drop rate: DARE p = 0
    np.testing.assert_allclose(space.features(ties),
                               [0.5, 0.5, 0, 0, 0, 1, 1 / 3, 0.75, 0, 1, 0])
    # a range that excludes the neutral value clips it; a soup without task arithmetic
    # keeps its own one-hot entry
    narrow = _space(methods=["linear", "ties"], n_instructions=1,
                    ranges={"lambda": (1.2, 2.0)})
    np.testing.assert_allclose(narrow.features(Point((0, 2), (0.7, 0.3), "linear", (), 0)),
                               [0.7, 0, 0.3, 1, 0, 1, 0, 0, 1])


def test_configs_round_trip_and_foreign_configs_are_repaired():
    space = _space()
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = space.sample(rng)
        q = space.from_config(space.to_config(p))
        assert q.members == p.members and np.allclose(q.weights, p.weights)
        assert q.method == p.method and q.params == p.params and q.instruction == p.instruction
        assert Point.from_dict(p.to_dict()) == p
    # an Optuna-style config: every weight positive, some candidates switched off
    q = space.from_config({"method": "slerp", "w_0": 0.2, "w_1": 0.9, "w_2": 0.5,
                           "use_1": False, "lambda": 9.0, "instruction": 1})
    assert q.members == (0, 2) and np.allclose(q.weights, [0.2 / 0.7, 0.5 / 0.7])
    assert space.from_config({"method": "ties", "lambda": 9.0}).param_dict["lambda"] == 1.5
    with pytest.raises(SpaceError, match="method 'nope' is not in this search space; valid"):
        space.from_config({"method": "nope"})
    with pytest.raises(SpaceError, match="unknown merge method"):
        SearchSpace([0.9], methods=["soup2"])
    with pytest.raises(SpaceError, match="slerp merges exactly two"):
        SearchSpace([0.9, 0.8, 0.7], methods=["slerp"], min_models=3)


def test_recipes_follow_the_plan():
    slerp = Point((0, 2), (0.3, 0.7), "slerp", (), 0)
    plan = merge_plan(slerp)
    assert plan["base"] == 0 and plan["models"] == [2] and plan["parameters"] == {"t": 0.7}
    r = recipe(slerp, ["a", "b", "c"], "BASE", merge_seed=3)
    assert r["base_model"] == "a" and r["models"] == [{"model": "c"}] and r["seed"] == 3
    ties = Point((1, 2), (0.5, 0.5), "ties", (("density", 0.4), ("lambda", 1.2)), 0)
    r = recipe(ties, ["a", "b", "c"], "BASE")
    assert r["base_model"] == "BASE" and r["parameters"] == {"lambda": 1.2, "normalize": True}
    assert r["models"][0] == {"model": "b", "parameters": {"weight": 0.5, "density": 0.4}}
    soup = recipe(Point((0, 1), (0.6, 0.4), "linear"), ["a", "b"], "BASE")
    assert "base_model" not in soup and soup["parameters"] == {"normalize": True}


def test_neighbours_by_hand():
    space = _space(methods=["linear", "ties", "slerp"], n_instructions=1)
    p = Point((0, 1), (0.6, 0.4), "linear", (), 0)
    got = {(q.members, tuple(round(w, 4) for w in q.weights), q.method, q.params)
           for q in space.neighbours(p)}
    mid = (("density", 0.55), ("lambda", 1.0))
    assert got == {
        ((0, 1, 2), (0.4, 0.2667, 0.3333), "linear", ()),  # add 2: 1/3, the rest * 2/3
        ((1,), (1.0,), "linear", ()),  # drop 0
        ((0,), (1.0,), "linear", ()),  # drop 1
        ((1, 2), (0.4, 0.6), "linear", ()),  # 2 takes 0's weight
        ((0, 2), (0.6, 0.4), "linear", ()),  # 2 takes 1's weight
        ((0, 1), (0.6, 0.4), "ties", mid),  # other methods, mid-range parameters
        ((0, 1), (0.6, 0.4), "slerp", ()),
    }


def test_neighbours_stay_in_omega():
    space = _space(min_models=2)
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = space.sample(rng)
        for q in space.neighbours(p):
            assert abs(sum(q.weights) - 1) < 1e-9 and min(q.weights) > 0
            assert 2 <= len(q.members) <= 3 and list(q.members) == sorted(set(q.members))
            assert q.method in space.valid_methods(len(q.members))
            for name, value in q.params:
                lo, hi = space.ranges[name]
                assert lo <= value <= hi
            assert q.params == p.params or q.method != p.method or q.members != p.members


def test_scale_ends_by_hand():
    space = _space(methods=["linear", "task_arithmetic", "ties", "slerp"], n_instructions=1,
                   ranges={"lambda": (0.6, 1.8)})
    soup = Point((0, 2), (0.7, 0.3), "linear", (), 0)
    # the soup is task arithmetic at lambda = 1: its scale ends, lambda_max first
    assert space.scale_ends(soup) == [
        Point((0, 2), (0.7, 0.3), "task_arithmetic", (("lambda", 1.8),), 0),
        Point((0, 2), (0.7, 0.3), "task_arithmetic", (("lambda", 0.6),), 0)]
    ties = Point((0, 1, 2), (0.5, 0.3, 0.2), "ties", (("density", 0.4), ("lambda", 1.2)), 0)
    assert [q.params for q in space.scale_ends(ties)] == [
        (("density", 0.4), ("lambda", 1.8)), (("density", 0.4), ("lambda", 0.6))]
    assert all(q.method == "ties" and q.weights == ties.weights
               for q in space.scale_ends(ties))
    assert space.scale_ends(Point((0, 1), (0.5, 0.5), "slerp", (), 0)) == []
    no_ta = _space(methods=["linear", "ties"], n_instructions=1)
    assert no_ta.scale_ends(soup) == []  # a soup has no scale without task arithmetic
    flat = _space(methods=["linear", "task_arithmetic"], n_instructions=1,
                  ranges={"lambda": (1.0, 1.0)})
    assert flat.scale_ends(soup) == []
    # an end at the point's own scale would repeat it: the soup is lambda = 1
    upward = _space(methods=["linear", "task_arithmetic"], n_instructions=1,
                    ranges={"lambda": (1.0, 2.0)})
    assert [q.params for q in upward.scale_ends(soup)] == [(("lambda", 2.0),)]


def test_drop_one_by_hand():
    space = _space(methods=["linear", "ties", "slerp"], n_instructions=1, min_models=2)
    p = Point((0, 1, 2), (0.5, 0.3, 0.2), "ties", (("density", 0.4), ("lambda", 1.2)), 0)
    got = [(q.members, tuple(round(w, 4) for w in q.weights), q.method, q.params)
           for q in space.drop_one(p)]
    kept = (("density", 0.4), ("lambda", 1.2))
    assert got == [((0, 1), (0.625, 0.375), "ties", kept),  # weakest (2) dropped first
                   ((0, 2), (0.7143, 0.2857), "ties", kept),
                   ((1, 2), (0.6, 0.4), "ties", kept)]
    assert space.drop_one(Point((0, 1), (0.5, 0.5), "slerp", (), 0)) == []
