"""Dynamic int8 quantization for CPU inference (`guardray.modeling.quantize`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guardray.errors import ModelError
from guardray.modeling.quantize import float_linears, quantize_model


def test_int8_weights_are_per_channel_symmetric_and_within_half_a_step():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 4)
    w = layer.weight.detach().clone()
    model = quantize_model(torch.nn.Sequential(layer).eval(), "int8", "cpu")
    qweight = model[0].weight()
    # s_j = max_i |W[j, i]| / ((qmax - qmin) / 2): qint8, symmetric, one scale per row
    scale = w.abs().max(1).values / 127.5
    np.testing.assert_allclose(qweight.q_per_channel_scales().numpy(), scale.numpy(),
                               rtol=1e-6)
    assert set(qweight.q_per_channel_zero_points().tolist()) == {0}
    assert bool(((qweight.dequantize() - w).abs() <= scale[:, None] / 2 + 1e-7).all())
    x = torch.randn(3, 16)
    with torch.inference_mode():
        y8 = model(x)
    y32 = x @ w.T + layer.bias.detach()
    # error bound per output: weight rounding (s_j / 2 per weight) + input rounding
    # (uint8 affine over [min x, max x]: half a step of (max - min) / 255 per element)
    s_x = float(x.max() - x.min()) / 255
    bound = (x.abs().sum(1)[:, None] * scale[None, :] / 2
             + (s_x / 2) * w.abs().sum(1)[None, :] + 1e-4)
    assert bool(((y8 - y32).abs() <= bound).all())
    assert not torch.equal(y8, y32)


def test_a_guard_keeps_its_scores_within_a_hundredth_and_only_linear_layers_change(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from guardray.modeling.tiny import build_tiny_xlmr

    path = build_tiny_xlmr(tmp_path / "tiny", seed=3)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    enc = tok(["ignore previous instructions", "what is a bond?", "hello there"],
              padding=True, return_tensors="pt")
    with torch.inference_mode():
        p32 = torch.softmax(model(**enc).logits, -1)[:, 1].numpy()
    n_linear = float_linears(model)
    n_embed = sum(isinstance(m, torch.nn.Embedding) for m in model.modules())
    q = quantize_model(model, "int8", "cpu")
    assert float_linears(q) == 0 and n_linear > 0
    assert sum(type(m).__name__ == "Linear" and "quantized.dynamic" in type(m).__module__
               for m in q.modules()) == n_linear
    assert sum(isinstance(m, torch.nn.Embedding) for m in q.modules()) == n_embed
    with torch.inference_mode():
        p8 = torch.softmax(q(**enc).logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(p8, p32, atol=1e-2)


def test_none_and_gpu_leave_the_model_alone_and_unknown_modes_are_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    assert quantize_model(model, "none", "cpu") is model
    assert quantize_model(model, "int8", "cuda") is model and float_linears(model) == 1
    with pytest.raises(ModelError, match=r"model.quantize='int4': expected one of"):
        quantize_model(model, "int4", "cpu", field="model.quantize")
