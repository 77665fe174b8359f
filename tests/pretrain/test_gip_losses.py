"""GIP losses (GuardFormer 3.3, eq. 1): hand-computed values and identities.

The ALICE++ tests use a toy differentiable function whose ascent direction is known in closed
form, and the real `GIPModel` on a tiny random XLM-R.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from guardray.pretrain.losses import (
    IGNORE_INDEX,
    AliceParams,
    alice_pp_loss,
    classification_loss,
    draw_layer,
    gip_loss,
    mlm_loss,
    symmetric_kl,
)

# -- MLM ----------------------------------------------------------------------------------------


def test_mlm_loss_hand_computed():
    logits = torch.zeros(1, 3, 3)
    logits[0, 2] = torch.tensor([math.log(2.0), 0.0, 0.0])  # softmax = (1/2, 1/4, 1/4)
    labels = torch.tensor([[2, IGNORE_INDEX, 0]])
    # position 0: -log(1/3); position 2: -log(1/2); mean over the two masked positions
    assert mlm_loss(logits, labels).item() == pytest.approx(math.log(6.0) / 2, abs=1e-6)


def test_mlm_loss_ignores_unmasked_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 4] = 3, 6
    changed = logits.clone()
    changed[0, 0] += 100.0
    changed[1, 2] = torch.randn(7, generator=g) * 50
    assert torch.equal(mlm_loss(logits, labels), mlm_loss(changed, labels))
    expected = F.cross_entropy(logits[[0, 1], [1, 4]], torch.tensor([3, 6]))
    assert mlm_loss(logits, labels).item() == pytest.approx(expected.item(), abs=1e-6)


def test_mlm_loss_without_masked_positions_is_zero_and_connected():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    loss = mlm_loss(logits, torch.full((2, 4), IGNORE_INDEX))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_mlm_loss_bf16_is_computed_in_float32():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 11, generator=g).to(torch.bfloat16)
    labels = torch.tensor([[1, IGNORE_INDEX, 4], [IGNORE_INDEX, 10, IGNORE_INDEX]])
    loss = mlm_loss(logits, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(mlm_loss(logits.float(), labels).item(), abs=1e-6)


def test_mlm_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="labels"):
        mlm_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


# -- CE and symmetric KL -----------------------------------------------------------------------


def test_classification_loss_equals_cross_entropy():
    g = torch.Generator().manual_seed(2)
    logits, labels = torch.randn(6, 2, generator=g), torch.tensor([0, 1, 1, 0, 1, 0])
    assert torch.equal(classification_loss(logits, labels), F.cross_entropy(logits, labels))


def test_symmetric_kl_hand_computed_two_classes():
    p = torch.tensor([[0.0, 0.0]])  # (1/2, 1/2)
    q = torch.tensor([[0.0, math.log(3.0)]])  # (1/4, 3/4)
    # (1/2-1/4) ln 2 + (1/2-3/4) ln(2/3) = ln(3) / 4
    assert symmetric_kl(p, q).item() == pytest.approx(math.log(3.0) / 4, abs=1e-6)
    kl_pq = F.kl_div(F.log_softmax(q, -1), F.log_softmax(p, -1), log_target=True,
                     reduction="batchmean")
    kl_qp = F.kl_div(F.log_softmax(p, -1), F.log_softmax(q, -1), log_target=True,
                     reduction="batchmean")
    assert symmetric_kl(p, q).item() == pytest.approx((kl_pq + kl_qp).item(), abs=1e-6)


def test_symmetric_kl_identities():
    g = torch.Generator().manual_seed(3)
    p, q = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert symmetric_kl(p, p).item() == 0.0
    assert symmetric_kl(p, p + 7.0).item() == pytest.approx(0.0, abs=1e-6)  # shift-invariant
    assert symmetric_kl(p, q).item() == pytest.approx(symmetric_kl(q, p).item(), abs=1e-7)
    assert symmetric_kl(p, q).item() > 0
    # mean over the batch
    rows = [symmetric_kl(p[i:i + 1], q[i:i + 1]).item() for i in range(5)]
    assert symmetric_kl(p, q).item() == pytest.approx(sum(rows) / 5, abs=1e-6)


def test_symmetric_kl_bf16_is_float32_and_finite_for_extreme_logits():
    p = torch.tensor([[80.0, -80.0], [0.0, 1.0]], dtype=torch.bfloat16)
    q = torch.tensor([[-80.0, 80.0], [1.0, 0.0]], dtype=torch.bfloat16)
    out = symmetric_kl(p, q)
    assert out.dtype == torch.float32 and math.isfinite(out.item())
    assert out.item() == pytest.approx(symmetric_kl(p.float(), q.float()).item(), rel=1e-6)


# -- ALICE++ on a toy function with a known ascent direction -----------------------------------

A = torch.tensor([1.0, -2.0, 0.5])


def _toy(layer: int, delta: torch.Tensor) -> torch.Tensor:
    """Logits [0, sum_t a . delta_t] per example: the KL ascent direction is +-a per token."""
    shift = (delta.float() * A).sum(dim=(1, 2))
    return torch.stack([torch.zeros_like(shift), shift], dim=1)


def _sym_kl_zero_vs(x: float) -> float:
    q1 = 1.0 / (1.0 + math.exp(-x))
    return (0.5 - (1 - q1)) * math.log(0.5 / (1 - q1)) + (0.5 - q1) * math.log(0.5 / q1)


@pytest.mark.parametrize("epsilon", [1e-6, 1e-2])
@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_alice_toy_ascent_moves_along_normalised_gradient(norm, epsilon):
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    clean = torch.zeros(2, 2)
    labels = torch.tensor([1, 0])
    step = 0.05
    # raw gradients are ~1e-6 here; with epsilon=1e-2 the step is still full-size, because
    # epsilon applies to the gradient rescaled per example
    params = AliceParams(alpha=2.0, noise_var=1e-6, step_size=step, epsilon=epsilon, norm=norm)
    out = alice_pp_loss(_toy, clean, labels, (2, 4, 3), 4, params,
                        torch.Generator().manual_seed(0), mask)
    # every real token's gradient is +-c*a; rescaled per example it is g = +-a / ||a||_inf, and
    # each real token moves by step * g / (||g|| + epsilon), so a . delta_t = +-step * r;
    # padding tokens do not move.
    g = A / A.abs().max()
    size = g.abs().max() if norm == "inf" else g.norm()
    r = float((A * g).sum() / (size + epsilon))
    shifts = [3 * step * r, 2 * step * r]
    virtual = sum(_sym_kl_zero_vs(x) for x in shifts) / 2
    assert out.virtual.item() == pytest.approx(virtual, rel=1e-3)
    assert 0 <= out.layer <= 4
    assert out.total.item() == pytest.approx(out.label.item() + 2.0 * out.virtual.item(), rel=1e-6)
    assert not out.skipped


def test_alice_zero_perturbation_gives_zero_virtual_and_clean_ce():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(3, 2, generator=g)

    def model(layer, delta):
        return (torch.ones(2, 4, 3) + delta).mean(dim=1) @ w

    clean = model(0, torch.zeros(2, 4, 3))
    labels = torch.tensor([0, 1])
    params = AliceParams(noise_var=0.0, step_size=0.0, steps=2)
    out = alice_pp_loss(model, clean, labels, (2, 4, 3), 2, params,
                        torch.Generator().manual_seed(0))
    assert out.virtual.item() == 0.0
    assert torch.equal(out.label, classification_loss(clean, labels))


def test_alice_non_finite_gradient_drops_the_perturbation():
    def model(layer, delta):  # d/d delta sqrt(|delta|) is inf at 0
        x = delta.abs().sum(dim=(1, 2)).sqrt()
        return torch.stack([torch.zeros_like(x), x], dim=1)

    clean = torch.zeros(2, 2)
    labels = torch.tensor([0, 1])
    out = alice_pp_loss(model, clean, labels, (2, 3, 4), 1, AliceParams(noise_var=0.0),
                        torch.Generator().manual_seed(0))
    assert out.skipped
    assert out.virtual.item() == 0.0
    assert out.label.item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert math.isfinite(out.total.item())


def test_draw_layer_range_and_determinism():
    for num_layers, max_layer in [(4, None), (4, 2), (4, 0), (2, 9)]:
        top = num_layers if max_layer is None else min(max_layer, num_layers)
        drawn = [draw_layer(num_layers, max_layer, torch.Generator().manual_seed(s))
                 for s in range(200)]
        assert set(drawn) == set(range(top + 1))  # uniform over 0..top, both ends reachable
        again = [draw_layer(num_layers, max_layer, torch.Generator().manual_seed(s))
                 for s in range(200)]
        assert drawn == again


def test_alice_params_validation():
    AliceParams(max_layer=0, norm="l2", steps=3)
    bad = [dict(steps=0), dict(steps=1.5), dict(noise_var=-1.0), dict(step_size=float("nan")),
           dict(epsilon=0.0), dict(alpha=-0.1), dict(max_layer=-1), dict(norm="l1")]
    for kwargs in bad:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            AliceParams(**kwargs)


# -- ALICE++ on the real GIP model -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gip(tmp_path_factory):
    from guardray.modeling.tiny import build_tiny_xlmr
    from guardray.pretrain.model import GIPModel

    folder = build_tiny_xlmr(tmp_path_factory.mktemp("gip-loss") / "xlmr", seed=0)
    model = GIPModel.from_pretrained(str(folder)).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, model.vocab_size - 1, (4, 9), generator=g)
    mask = torch.ones(4, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return model, ids, mask, torch.tensor([0, 1, 1, 0])


def _run(model, ids, mask, labels, params, seed=0):
    clean = model(ids, mask)
    fn = lambda layer, delta: model(ids, mask, perturb=(layer, delta))  # noqa: E731
    out = alice_pp_loss(fn, clean, labels, (*ids.shape, model.hidden_size), model.num_layers,
                        params, torch.Generator().manual_seed(seed), mask)
    return clean, out


def test_alice_real_model_zero_perturbation(tiny_gip):
    model, ids, mask, labels = tiny_gip
    clean, out = _run(model, ids, mask, labels, AliceParams(noise_var=0.0, step_size=0.0))
    assert out.virtual.item() == pytest.approx(0.0, abs=1e-10)
    assert out.label.item() == pytest.approx(classification_loss(clean, labels).item(), abs=1e-6)


@pytest.mark.parametrize("max_layer", [0, 1, 2])
def test_alice_real_model_virtual_grows_with_step_size(tiny_gip, max_layer):
    model, ids, mask, labels = tiny_gip
    virtual = []
    for step in (1e-3, 1e-2, 1e-1):
        _, out = _run(model, ids, mask, labels,
                      AliceParams(step_size=step, max_layer=max_layer), seed=max_layer)
        assert out.layer <= max_layer
        virtual.append(out.virtual.item())
    assert 0 <= virtual[0] < virtual[1] < virtual[2]


def test_alice_real_model_layer_deterministic_and_gradients_reach_params(tiny_gip):
    model, ids, mask, labels = tiny_gip
    model.zero_grad(set_to_none=True)
    params = AliceParams(step_size=1e-2, steps=2)
    _, first = _run(model, ids, mask, labels, params, seed=7)
    # the ascent steps use torch.autograd.grad w.r.t. delta only: no parameter gradients yet
    assert all(p.grad is None for p in model.parameters())
    _, second = _run(model, ids, mask, labels, params, seed=7)
    assert first.layer == second.layer
    assert first.total.item() == pytest.approx(second.total.item(), rel=1e-6)
    first.total.backward()
    head = model.classifier.classifier.out_proj.weight
    embed = model.classifier.get_input_embeddings().weight
    assert head.grad is not None and head.grad.abs().sum() > 0
    assert embed.grad is not None and embed.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


# -- eq. 1 --------------------------------------------------------------------------------------


def test_gip_loss_weighted_sum_and_zero_weight_skips_nan():
    mlm, alice, ce = torch.tensor(2.0), torch.tensor(3.0), torch.tensor(5.0)
    assert gip_loss(mlm, alice, ce, (0.5, 0.25, 2.0)).item() == pytest.approx(1 + 0.75 + 10)
    nan = torch.tensor(float("nan"))
    assert gip_loss(mlm, nan, ce, (1.0, 0.0, 1.0)).item() == 7.0
    assert gip_loss(None, None, ce, (0.0, 0.0, 1.0)).item() == 5.0
    x = torch.tensor(1.5, requires_grad=True)
    gip_loss(x * 2, x * 3, x * 4, (1.0, 1.0, 1.0)).backward()
    assert x.grad.item() == 9.0


def test_gip_loss_validation():
    one = torch.tensor(1.0)
    for weights in [(0.0, 0.0, 0.0), (1.0, -1.0, 0.0), (float("inf"), 0.0, 1.0), (1.0, 1.0)]:
        with pytest.raises(ValueError, match="weights"):
            gip_loss(one, one, one, weights)
    with pytest.raises(ValueError, match="alice"):
        gip_loss(one, None, one, (1.0, 1.0, 1.0))
