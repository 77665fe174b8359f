"""Hand-computed values and identities of the pure merge methods (guardray.merge.methods)."""

from __future__ import annotations

import math

import pytest
import torch

from guardray.merge import methods as M


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# --------------------------------------------------------------------------- linear


def test_linear_weights_one_zero_returns_first_model():
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.equal(M.linear([a, b], [1.0, 0.0]), a)
    assert torch.equal(M.linear([a, b], [0.0, 1.0], normalize=False), b)


def test_linear_hand_computed_normalized_and_not():
    a, b = t(1, 2), t(3, 6)
    assert torch.allclose(M.linear([a, b], [1, 3]), t(2.5, 5.0))  # (1a + 3b) / 4
    assert torch.allclose(M.linear([a, b], [1, 3], normalize=False), t(10, 20))


def test_linear_refuses_weights_summing_to_zero():
    with pytest.raises(ValueError, match="sum to 0"):
        M.linear([t(1), t(2)], [1, -1])


def test_linear_does_not_modify_inputs():
    a, b = t(1, 2), t(3, 4)
    M.linear([a, b], [0.5, 0.5])
    assert torch.equal(a, t(1, 2)) and torch.equal(b, t(3, 4))


# --------------------------------------------------------------------------- task arithmetic


def test_task_arithmetic_hand_computed():
    base = t(1, 1)
    # tau1 = [1, -1], tau2 = [0, 2]; 1*tau1 + 0.5*tau2 = [1, 0]; base + 2 * [1, 0] = [3, 1]
    out = M.task_arithmetic(base, [t(2, 0), t(1, 3)], [1.0, 0.5], lam=2.0)
    assert torch.allclose(out, t(3, 1))
    # normalize divides the weighted sum by 1.5 first
    out = M.task_arithmetic(base, [t(2, 0), t(1, 3)], [1.0, 0.5], lam=1.5, normalize=True)
    assert torch.allclose(out, t(2, 1))


def test_task_arithmetic_consume_reuses_storage_and_default_does_not():
    base, x = t(1, 1), t(3, 5)
    M.task_arithmetic(base, [x], [1.0])
    assert torch.equal(x, t(3, 5))
    out = M.task_arithmetic(base, [x], [1.0], lam=0.5, consume=True)
    assert torch.equal(out, t(2, 3)) and out.data_ptr() == x.data_ptr()  # storage reused


# --------------------------------------------------------------------------- TIES


def test_magnitude_trim_keeps_top_k_and_breaks_ties_by_position():
    delta = t(2, -1, 1, 0.2)
    # k = int(0.5 * 4) = 2: |2| first, then |-1| and |1| tie -> the first one (index 1) is kept
    assert torch.equal(M.magnitude_trim(delta, 0.5), t(2, -1, 0, 0))
    assert torch.equal(M.magnitude_trim(delta, 1.0), delta)
    assert torch.equal(M.magnitude_trim(delta, 0.0), torch.zeros(4))
    assert torch.equal(M.magnitude_trim(delta, 0.01), t(2, 0, 0, 0))  # at least one entry


def test_magnitude_trim_l1_rescale_keeps_l1_norm():
    delta = t(4, -2, 1, 1)
    out = M.magnitude_trim(delta, 0.5, rescale=True)  # keeps [4, -2], scaled by 8/6
    assert torch.allclose(out, t(4, -2, 0, 0) * (8 / 6))


@pytest.mark.parametrize("n", [1000, (1 << 20) + 12345])
@pytest.mark.parametrize("density", [0.01, 0.3, 0.9])
def test_magnitude_trim_matches_a_full_sort(n, density):
    g = torch.Generator().manual_seed(n)
    delta = torch.randn(n, generator=g)
    k = max(1, int(density * n))
    expected = torch.zeros(n, dtype=torch.bool)
    expected[torch.argsort(delta.abs(), descending=True)[:k]] = True
    out = M.magnitude_trim(delta, density)
    assert int((out != 0).sum()) == k
    assert torch.equal(out != 0, expected)


def test_magnitude_trim_ties_across_chunks_keep_the_first_positions():
    n = (1 << 21) + 7  # three chunks
    delta = torch.full((n,), -1.0)
    delta[5] = 3.0
    k = (1 << 20) + 100  # 1 larger entry, then k - 1 of the tied -1s, in order
    out = M.magnitude_trim(delta, k / n)
    expected = torch.zeros(n)
    expected[:k] = -1.0  # positions 0..k-1 minus the 3.0 at 5: k - 1 ties
    expected[5] = 3.0
    assert torch.equal(out, expected)
    assert torch.equal(M.magnitude_trim(delta.clone(), k / n, consume=True), expected)


def test_ties_is_the_same_in_chunks_as_in_one_piece():
    g = torch.Generator().manual_seed(1)
    n = (1 << 20) + 4321  # two chunks
    base = torch.randn(n, generator=g)
    models = [base + torch.randn(n, generator=g) for _ in range(3)]
    out = M.ties(base, models, [1.0, 2.0, 0.5], [0.3, 0.5, 0.7], lam=0.8, sign_vote="weighted")
    trimmed = [M.magnitude_trim(m - base, d) for m, d in zip(models, [0.3, 0.5, 0.7])]
    sign = M.elect_sign(trimmed, [1.0, 2.0, 0.5], vote="weighted")
    expected = base + 0.8 * M.disjoint_merge(trimmed, [1.0, 2.0, 0.5], sign)
    assert torch.allclose(out, expected, atol=1e-6)


def test_kth_largest_exact_on_structured_data_falls_back_when_needed():
    # Rows of very different scale: a strided sample may mis-estimate the bracket; the
    # answer must still be exact.
    x = torch.cat([torch.arange(1 << 20, dtype=torch.float32), torch.zeros(1 << 19)])
    ordered = torch.sort(x, descending=True).values
    for k in (1, 1000, 1 << 19, x.numel()):
        expected = ordered[k - 1]
        assert M.kth_largest(x, k) == expected
        assert M.kth_largest(-x, k, absolute=True) == expected


def _ties_example():
    base = torch.ones(4)
    taus = [t(3, -1, 2, 0.5), t(-1, -2, 4, -3), t(2, 1, -1, 0.2)]
    return base, [base + tau for tau in taus]


def test_ties_hand_computed_paper_example():
    base, models = _ties_example()
    # density 0.5 keeps 2 of 4 per task vector:
    #   [3, 0, 2, 0], [0, 0, 4, -3], [2, 1, 0, 0] (|1| and |-1| tie; index 1 comes first)
    # sign of the sum [5, 1, 6, -3] -> [+, +, +, -]; means of agreeing entries:
    #   (3 + 2) / 2, 1, (2 + 4) / 2, -3
    out = M.ties(base, models, [1, 1, 1], [0.5] * 3, lam=1.0)
    assert torch.allclose(out, base + t(2.5, 1, 3, -3))
    out = M.ties(base, models, [1, 1, 1], [0.5] * 3, lam=0.5)
    assert torch.allclose(out, base + 0.5 * t(2.5, 1, 3, -3))


def test_ties_weighted_disjoint_mean_and_unnormalized_sum():
    base = t(0)
    out = M.ties(base, [t(2), t(4)], [1, 3], [1, 1])
    assert torch.allclose(out, t(3.5))  # (1*2 + 3*4) / (1 + 3)
    out = M.ties(base, [t(2), t(4)], [1, 3], [1, 1], normalize=False)
    assert torch.allclose(out, t(14))


def test_ties_sign_vote_paper_vs_mergekit():
    base = t(0)
    models, weights = [t(1), t(-2)], [3, 1]
    # Paper (eq. 2): sign of 1 + (-2) = -1 -> only model 2 agrees -> -2.
    assert torch.allclose(M.ties(base, models, weights, [1, 1], sign_vote="unweighted"), t(-2))
    # MergeKit: sign of 3*1 + 1*(-2) = +1 -> only model 1 agrees -> 3*1 / 3 = 1.
    assert torch.allclose(M.ties(base, models, weights, [1, 1], sign_vote="weighted"), t(1))


def test_ties_no_agreement_gives_base_and_zero_vote_elects_nothing():
    base = t(5)
    # +1 and -1 cancel: sgn(0) = 0 and no nonzero entry has sign 0, so tau_m = 0.
    assert torch.allclose(M.ties(base, [t(6), t(4)], [1, 1], [1, 1]), t(5))


def test_ties_density_one_single_model_equals_task_arithmetic():
    g = torch.Generator().manual_seed(0)
    base, ft = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    ta = M.task_arithmetic(base, [ft], [1.0], lam=0.7)
    assert torch.allclose(M.ties(base, [ft], [1.0], [1.0], lam=0.7), ta, atol=1e-6)
    # the weight cancels in the disjoint mean
    assert torch.allclose(M.ties(base, [ft], [0.3], [1.0], lam=0.7), ta, atol=1e-6)


def test_elect_sign_values():
    deltas = [t(1, -1, 0, 2), t(-3, -1, 0, 1)]
    assert torch.equal(M.elect_sign(deltas), t(-1, -1, 0, 1))
    assert torch.equal(M.elect_sign(deltas, [1, 1], vote="weighted"), t(-1, -1, 1, 1))
    with pytest.raises(ValueError, match="sign_vote"):
        M.elect_sign(deltas, vote="majority")


# --------------------------------------------------------------------------- DARE


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_dare_zero_drop_rate_is_identity():
    delta = torch.randn(10, 4)
    assert torch.equal(M.dare_drop(delta, 0.0, _gen(0)), delta)
    base, ft = torch.randn(6), torch.randn(6)
    assert torch.allclose(M.dare_linear(base, [ft], [1.0], [0.0], [_gen(1)]), ft, atol=1e-6)


def test_dare_kept_entries_are_rescaled_and_rate_is_respected():
    delta = torch.full((200_000,), 2.0)
    out = M.dare_drop(delta, 0.75, _gen(3))
    kept = out != 0
    assert torch.allclose(out[kept], torch.tensor(8.0))  # 2 / (1 - 0.75)
    assert abs(kept.float().mean().item() - 0.25) < 0.01


def test_dare_same_seed_same_mask_other_seed_other_mask():
    delta = torch.randn(1000)
    a, b = M.dare_drop(delta, 0.5, _gen(7)), M.dare_drop(delta, 0.5, _gen(7))
    c = M.dare_drop(delta, 0.5, _gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dare_keeps_expected_value_over_seeds():
    delta = t(1.0, -2.0, 3.0)
    p, n = 0.6, 4000
    mean = sum(M.dare_drop(delta, p, _gen(s)) for s in range(n)) / n
    # std of one draw is |delta| sqrt(p / (1 - p)); allow 5 standard errors
    tol = 5 * delta.abs() * math.sqrt(p / (1 - p)) / math.sqrt(n)
    assert torch.all((mean - delta).abs() < tol), (mean, delta)


def test_dare_l1_rescale_matches_l1_norm_and_no_rescale_keeps_values():
    delta = torch.randn(1000, generator=_gen(0))
    out = M.dare_drop(delta, 0.5, _gen(1), rescale="l1")
    assert torch.allclose(out.abs().sum(), delta.abs().sum(), rtol=1e-5)
    raw = M.dare_drop(delta, 0.5, _gen(1), rescale=False)
    kept = raw != 0
    assert torch.equal(raw[kept], delta[kept])


def test_dare_refuses_drop_rate_one():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        M.dare_drop(t(1.0), 1.0, _gen(0))


def test_dare_linear_and_dare_ties_equal_their_parts():
    g = _gen(0)
    base = torch.randn(50, generator=g)
    models = [base + torch.randn(50, generator=g) for _ in range(3)]
    drops, weights = [0.3, 0.5, 0.7], [1.0, 0.5, 2.0]
    dropped = [
        M.dare_drop(m - base, p, _gen(10 + i)) for i, (m, p) in enumerate(zip(models, drops))
    ]
    gens = [_gen(10 + i) for i in range(3)]
    out = M.dare_linear(base, models, weights, drops, gens, lam=0.8)
    expected = base + 0.8 * sum(w * d for w, d in zip(weights, dropped))
    assert torch.allclose(out, expected, atol=1e-5)
    gens = [_gen(10 + i) for i in range(3)]
    out = M.dare_ties(base, models, weights, drops, gens, lam=0.8, normalize=True)
    sign = M.elect_sign(dropped)
    expected = base + 0.8 * M.disjoint_merge(dropped, weights, sign, normalize=True)
    assert torch.allclose(out, expected, atol=1e-5)


# --------------------------------------------------------------------------- SLERP


def test_slerp_endpoints():
    g = _gen(0)
    a, b = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert torch.equal(M.slerp(a, b, 0.0), a)
    assert torch.equal(M.slerp(a, b, 1.0), b)


def test_slerp_collinear_vectors_equal_lerp():
    a = t(1, 2, 3)
    for b in (2.5 * a, -0.5 * a):  # parallel and anti-parallel
        for s in (0.25, 0.5, 0.9):
            assert torch.allclose(M.slerp(a, b, s), (1 - s) * a + s * b)


def test_slerp_hand_computed_on_orthogonal_unit_vectors():
    e1, e2 = t(1, 0), t(0, 1)
    h = math.sqrt(0.5)
    assert torch.allclose(M.slerp(e1, e2, 0.5), t(h, h))
    assert torch.allclose(M.slerp(e1, e2, 1 / 3), t(math.cos(math.pi / 6), math.sin(math.pi / 6)))
    # lerp would give [0.5, 0.5]; slerp stays on the unit circle
    assert abs(M.slerp(e1, e2, 0.5).norm().item() - 1.0) < 1e-6


def test_slerp_threshold_switches_to_lerp():
    a, b = t(1, 0), t(math.cos(0.1), math.sin(0.1))  # cos = 0.995
    assert torch.allclose(M.slerp(a, b, 0.5, dot_threshold=0.99), 0.5 * (a + b))
    assert not torch.allclose(M.slerp(a, b, 0.5, dot_threshold=0.999), 0.5 * (a + b), atol=1e-7)


# --------------------------------------------------------------------------- Model Stock


def test_model_stock_of_identical_models_returns_them():
    base = torch.randn(3, 4, generator=_gen(0))
    ft = base + torch.randn(3, 4, generator=_gen(1))
    assert torch.allclose(M.model_stock(base, [ft, ft.clone(), ft.clone()]), ft, atol=1e-6)
    assert torch.allclose(M.model_stock(base, [base.clone(), base.clone()]), base)
    assert torch.allclose(M.model_stock(base, [ft, ft.clone()], filter_wise=True), ft, atol=1e-6)


def test_model_stock_hand_computed():
    base = t(1, 1)
    offsets = [t(1, 0), t(0.5, math.sqrt(3) / 2)]  # cos = 0.5
    # t = 2 * 0.5 / (1 + 0.5) = 2/3; mean offset = [0.75, sqrt(3)/4]
    out = M.model_stock(base, [base + o for o in offsets])
    assert torch.allclose(out, base + (2 / 3) * t(0.75, math.sqrt(3) / 4))


def test_model_stock_orthogonal_or_opposite_task_vectors_give_base():
    base = t(1, 1)
    assert torch.allclose(M.model_stock(base, [base + t(1, 0), base + t(0, 1)]), base)
    assert torch.allclose(M.model_stock(base, [base + t(1, 0), base + t(-1, 0)]), base)


def test_model_stock_needs_two_models():
    with pytest.raises(ValueError, match="at least 2"):
        M.model_stock(t(0), [t(1)])


def test_every_method_has_an_implementation():
    from guardray.merge.registry import IMPLEMENTATIONS, METHODS

    assert set(IMPLEMENTATIONS) == set(METHODS)
