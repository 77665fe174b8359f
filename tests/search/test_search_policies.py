"""Search policies on synthetic rewards (no models): Thompson vs random, eq. 9, the posterior,
and exact continuation from JSON state."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from guardray.search.policy_registry import make_policy, policy_from_state
from guardray.search.posterior import FourierFeatures, blr_posterior, log_evidence
from guardray.search.space import METHOD_PARAMS, SearchSpace

SPACE = SearchSpace([0.9, 0.85, 0.8, 0.7], methods=["linear", "task_arithmetic", "ties",
                                                    "dare_linear", "slerp"],
                    n_instructions=2, min_models=1)
TARGET = np.array([0.1, 0.5, 0.4, 0.0])


def reward(p) -> float:
    """A smooth synthetic objective: best near weights TARGET, TIES with density 0.4 and
    lambda 1.2, instruction 1."""
    v = 1 - 2 * np.sum((SPACE.full_weights(p) - TARGET) ** 2)
    d = p.param_dict
    if p.method == "ties":
        v += 0.1 - 0.5 * (d["density"] - 0.4) ** 2 - 0.3 * (d["lambda"] - 1.2) ** 2
    elif p.method == "task_arithmetic":
        v += 0.05 - 0.3 * (d["lambda"] - 1.2) ** 2
    return v + 0.05 * (p.instruction == 1)


def _best(name: str, seed: int, budget: int, **opts) -> float:
    policy = make_policy(name, SPACE, seed=seed, **opts)
    for _ in range(budget):
        p = policy.suggest()
        policy.observe(p, reward(p))
    return policy.best[1]


SOUP = SearchSpace([0.9, 0.85, 0.8, 0.7, 0.6], methods=["linear", "ties"], min_models=1)
SOUP_TARGET = np.array([0.05, 0.45, 0.35, 0.15, 0.0])


def soup_reward(p) -> float:
    """Best near weights SOUP_TARGET, with TIES at density 0.5 and lambda 1.1 a bit better."""
    v = 1 - 2 * np.sum((SOUP.full_weights(p) - SOUP_TARGET) ** 2)
    if p.method == "ties":
        d = p.param_dict
        v += 0.05 - 0.5 * (d["density"] - 0.5) ** 2 - 0.5 * (d["lambda"] - 1.1) ** 2
    return v


def test_thompson_beats_random_on_average_at_a_fixed_budget():
    def best(name: str, seed: int) -> float:
        policy = make_policy(name, SOUP, seed=seed)
        for _ in range(16):
            p = policy.suggest()
            policy.observe(p, soup_reward(p))
        return policy.best[1]

    ts = np.mean([best("thompson", s) for s in range(6)])
    rnd = np.mean([best("random", s) for s in range(6)])
    assert ts > rnd + 0.03, (ts, rnd)


def test_epsilon_greedy_exploits_the_best_point_or_explores():
    greedy = make_policy("egreedy", SPACE, seed=0, epsilon=0.0, exploit_scale=0.05)
    first = greedy.suggest()
    greedy.observe(first, 0.5)
    for _ in range(5):  # epsilon 0: always a small move around the argmax of eq. 9
        p = greedy.suggest()
        assert set(p.members) ^ set(first.members) <= {0, 1, 2, 3}
        assert np.abs(SPACE.full_weights(p) - SPACE.full_weights(first)).max() < 0.5
        greedy.observe(p, 0.1)
    explore = make_policy("egreedy", SPACE, seed=0, epsilon=1.0)
    explore.observe(explore.suggest(), 1.0)
    rnd = make_policy("random", SPACE, seed=0)
    rnd.observe(rnd.suggest(), 1.0)
    # epsilon 1: uniform draws from Omega (eq. 8)
    assert {explore.suggest().method for _ in range(40)} == set(SPACE.methods)
    with pytest.raises(ValueError, match="epsilon must be in"):
        make_policy("egreedy", SPACE, epsilon=1.5)
    with pytest.raises(ValueError, match="unknown search policy 'ucb'; valid: thompson"):
        make_policy("ucb", SPACE)


def test_posterior_update_matches_hand_computed_values():
    Phi = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([1.0, 2.0, 3.0])
    post = blr_posterior(Phi, y, prior_var=1.0, noise_var=1.0)
    # A = Phi^T Phi + I = [[3, 1], [1, 3]]; Sigma = A^-1 = [[3, -1], [-1, 3]] / 8
    # mu = Sigma Phi^T y = Sigma [4, 5] = [7, 11] / 8
    assert np.allclose(post.cov, np.array([[3, -1], [-1, 3]]) / 8)
    assert np.allclose(post.mean, [7 / 8, 11 / 8])
    # log N(y | 0, Phi Phi^T + I)
    K = Phi @ Phi.T + np.eye(3)
    expected = -0.5 * y @ np.linalg.solve(K, y) - 0.5 * np.log(np.linalg.det(K)) \
        - 1.5 * np.log(2 * np.pi)
    assert log_evidence(Phi, y, 1.0, 1.0) == pytest.approx(expected)
    draws = np.stack([post.sample(np.random.default_rng(i)) for i in range(4000)])
    assert np.allclose(draws.mean(0), post.mean, atol=0.03)
    assert np.allclose(np.cov(draws.T), post.cov, atol=0.02)


def test_thompson_fits_its_observations_with_the_closed_form():
    policy = make_policy("thompson", SPACE, seed=3, n_initial=2, n_features=64)
    for _ in range(6):
        p = policy.suggest()
        policy.observe(p, reward(p))
    policy.observe(policy.suggest(), None)  # a failed trial enters at the worst value
    post, feats, info = policy.posterior()
    Z, raw = policy.training_data()
    assert raw[-1] == min(raw[:-1])
    y = (raw - raw.mean()) / raw.std()
    hand = blr_posterior(feats(Z), y, info["prior_var"], info["noise_var"])
    assert np.allclose(post.mean, hand.mean) and np.allclose(post.cov, hand.cov)
    # the RFF kernel approximates the RBF kernel of the chosen lengthscale
    rff = FourierFeatures.draw(3, 4096, 0.5, np.random.default_rng(0))
    a, b = np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.1, 0.5])
    k = (rff(a) @ rff(b).T).item()
    assert k == pytest.approx(np.exp(-np.sum((a - b) ** 2) / (2 * 0.25)), abs=0.05)


@pytest.mark.parametrize("name", ["thompson", "egreedy", "random"])
def test_state_is_json_and_a_restored_policy_continues_exactly(name):
    opts = {"n_features": 64, "n_initial": 2} if name == "thompson" else {}
    a = make_policy(name, SPACE, seed=5, **opts)
    for _ in range(5):
        p = a.suggest()
        a.observe(p, reward(p))
    pending = a.suggest()
    b = policy_from_state(SPACE, json.loads(json.dumps(a.state())))
    assert [q.key() for q in b.pending] == [pending.key()]
    a.observe(pending, 0.3)
    b.observe(pending, 0.3)
    for _ in range(3):
        pa, pb = a.suggest(), b.suggest()
        assert pa == pb
        a.observe(pa, reward(pa))
        b.observe(pb, reward(pb))


def test_log_evidence_of_a_tiny_design_by_hand():
    # Phi = [[1], [2]], y = [1, 0], s^2 = sigma^2 = 1: K = Phi Phi^T + I = [[2, 2], [2, 5]],
    # det K = 6, K^-1 = [[5, -2], [-2, 2]] / 6, y^T K^-1 y = 5 / 6
    Phi, y = np.array([[1.0], [2.0]]), np.array([1.0, 0.0])
    expected = -5 / 12 - 0.5 * np.log(6) - np.log(2 * np.pi)
    assert log_evidence(Phi, y, 1.0, 1.0) == pytest.approx(expected)
    # s^2 = 2, sigma^2 = 0.5: K = [[2.5, 4], [4, 8.5]], det = 5.25, y^T K^-1 y = 8.5 / 5.25
    expected = -0.5 * 8.5 / 5.25 - 0.5 * np.log(5.25) - np.log(2 * np.pi)
    assert log_evidence(Phi, y, 2.0, 0.5) == pytest.approx(expected)


def test_ard_features_rescale_one_base_draw():
    rng = np.random.default_rng(0)
    E, b = rng.standard_normal((4096, 3)), rng.uniform(0, 2 * np.pi, 4096)
    feats = FourierFeatures.scaled(E, b, [0.5, 0.5, 2.0])
    assert np.allclose(feats.W, E / np.array([0.5, 0.5, 2.0]))
    a, c = np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.1, 0.9])
    # exp(-sum_j (a_j - c_j)^2 / (2 l_j^2)) = exp(-(0.04 / 0.5 + 0.01 / 0.5 + 0.36 / 8))
    k = (feats(a) @ feats(c).T).item()
    assert k == pytest.approx(np.exp(-(0.08 + 0.02 + 0.045)), abs=0.05)
    with pytest.raises(ValueError, match="lengthscales must be > 0"):
        FourierFeatures.scaled(E, b, [0.5, 0.0, 1.0])


def test_thompson_picks_the_hyperparameters_of_highest_evidence():
    policy = make_policy("thompson", SPACE, seed=1, n_features=32,
                         weight_lengthscales=(0.1, 0.5), other_lengthscales=(0.3, 1.0),
                         prior_vars=(0.5, 2.0), noise_vars=(0.01, 0.3))
    for _ in range(8):
        p = policy.suggest()
        policy.observe(p, reward(p))
    _, _, info = policy.posterior()
    Z, raw = policy.training_data()
    y = (raw - raw.mean()) / raw.std()
    E, b = policy.base_features()
    evidences = {}
    for lw, lo, s2, noise in itertools.product((0.1, 0.5), (0.3, 1.0), (0.5, 2.0), (0.01, 0.3)):
        ls = np.array([lw] * SPACE.k + [lo] * (SPACE.n_features - SPACE.k))
        Phi = np.sqrt(2 / 32) * np.cos(Z @ (E / ls).T + b)
        evidences[lw, lo, s2, noise] = log_evidence(Phi, y, s2, noise)
    best = max(evidences, key=evidences.get)
    assert (info["weight_lengthscale"], info["other_lengthscale"], info["prior_var"],
            info["noise_var"]) == best
    assert info["log_evidence"] == pytest.approx(evidences[best])


def test_trust_region_follows_turbo_rule_by_hand():
    policy = make_policy("thompson", SPACE, seed=0, tr_init=0.2, tr_min=0.05, tr_max=0.4,
                         success_tol=2, failure_tol=3)
    p = SPACE.seed_point()

    def after(values):
        policy.observations = [(p, v) for v in values]
        return policy.trust_region()

    assert after([]) == 0.2 and after([0.5]) == 0.2
    assert after([0.5, 0.6, 0.7]) == 0.4  # two improvements: doubled
    assert after([0.5, 0.6, 0.7, 0.8, 0.9]) == 0.4  # capped at tr_max
    assert after([0.5, 0.4, None, 0.5]) == 0.1  # three non-improvements (ties too): halved
    assert after([0.5] + [0.1] * 6) == 0.05  # halved twice, down to tr_min
    assert after([0.5] + [0.1] * 9) == 0.2  # below tr_min: restarted at tr_init
    assert after([0.5, 0.4, 0.4, 0.6, 0.4]) == 0.2  # a success resets the failure count
    with pytest.raises(ValueError, match="tr_min <= tr_init <= tr_max"):
        make_policy("thompson", SPACE, tr_init=0.9)


def test_thompson_searches_the_trust_region_alone_by_default():
    """n_random=0 (TuRBO): the candidates are x*'s discrete neighbours, then n_local local
    moves; no uniform draw from Ω comes first."""
    policy = make_policy("thompson", SPACE, seed=3, n_features=32, n_local=40)
    assert policy.n_random == 0
    for _ in range(5):
        pt = policy.suggest()
        policy.observe(pt, reward(pt))
    incumbent = policy.best[0]
    neighbours = SPACE.neighbours(incumbent)
    cands = policy.candidates()
    assert len(cands) == len(neighbours) + 40
    assert cands[: len(neighbours)] == neighbours
    # with global candidates, n_random uniform draws come first
    wide = make_policy("thompson", SPACE, seed=3, n_features=32, n_local=40, n_random=16)
    wide.observations = list(policy.observations)
    assert len(wide.candidates()) == len(neighbours) + 40 + 16


def test_thompson_candidates_stay_in_omega_and_are_deterministic_given_the_seed():
    def run(seed):
        policy = make_policy("thompson", SPACE, seed=seed, n_features=32, n_local=64,
                             n_random=16)
        points = []
        for _ in range(6):
            pt = policy.suggest()
            policy.observe(pt, reward(pt))
            points.append(pt)
        return policy, points

    policy, points = run(4)
    assert run(4)[1] == points and run(5)[1] != points
    cands = policy.candidates()
    assert len(cands) >= 16 + 64
    for q in cands:
        assert abs(sum(q.weights) - 1) < 1e-9 and min(q.weights) > 0
        assert SPACE.min_models <= len(q.members) <= SPACE.max_models
        assert list(q.members) == sorted(set(q.members))
        assert q.method in SPACE.valid_methods(len(q.members))
        assert {k for k, _ in q.params} == set(METHOD_PARAMS[q.method])
        for name, value in q.params:
            lo, hi = SPACE.ranges[name]
            assert lo <= value <= hi
        assert 0 <= q.instruction < SPACE.n_instructions
    # the local part sits near the incumbent: most candidates share its members
    best = policy.best[0]
    near = [q for q in cands[16:] if q.members == best.members]
    assert len(near) > len(cands[16:]) / 2


def _check_design(policy, expected: list) -> None:
    """``policy`` suggests ``expected`` (keys) in order, then a point of its own; a policy
    restored from its JSON state continues with the same suggestion."""
    got = []
    for _ in range(len(expected) + 1):
        p = policy.suggest()
        got.append(p.key())
        policy.observe(p, reward(p))
    assert got[:len(expected)] == expected
    assert got[-1] not in expected  # then the surrogate takes over
    restored = policy_from_state(SPACE, json.loads(json.dumps(policy.state())))
    assert (restored.screen, restored.screen_scale) == (policy.screen, policy.screen_scale)
    assert restored.suggest().key() == policy.suggest().key()


def test_thompson_screen_scale_evaluates_the_drop_one_soups_then_the_scale_ends():
    policy = make_policy("thompson", SPACE, seed=0, screen=True, screen_scale=True,
                         n_features=32)
    seed = SPACE.seed_point()
    lo, hi = SPACE.ranges["lambda"]
    ends = [(seed.members, seed.weights, "task_arithmetic", (("lambda", x),)) for x in (hi, lo)]
    assert [(q.members, q.weights, q.method, q.params) for q in SPACE.scale_ends(seed)] == ends
    expected = ([seed.key()] + [q.key() for q in SPACE.drop_one(seed)]
                + [q.key() for q in SPACE.scale_ends(seed)])
    assert len(expected) == 7
    _check_design(policy, expected)


def test_thompson_screen_evaluates_the_drop_one_soups_first():
    policy = make_policy("thompson", SPACE, seed=0, screen=True, n_features=32)
    seed = SPACE.seed_point()
    expected = [seed.key()] + [q.key() for q in SPACE.drop_one(seed)]
    assert len(expected) == 5 and policy.screen and not policy.screen_scale
    _check_design(policy, expected)
