"""GIPModel: heads, tied MLM decoder, hidden-state perturbation hooks, atomic HF export.

Real transformers models built tiny on the fly: XLM-R (`build_tiny_xlmr`) and BERT (a tiny
BertConfig with a WordPiece tokenizer written here), plus the embedded all-MiniLM-L6-v2.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from guardray.modeling.tiny import build_tiny_xlmr
from guardray.pretrain.model import GIPModel

TEXTS = ["Avoid financial advice.\nQuery: which stocks should I buy?",
         "Write a poem about the ocean at night."]
_WORDS = ("avoid financial advice query which stocks should i buy write a poem about the ocean "
          "at night tax policy safe unsafe . ? : ,").split()


def build_tiny_bert(out_dir: Path) -> Path:
    """A tiny random BertForSequenceClassification + WordPiece tokenizer saved as a HF folder."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(_WORDS)]
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(out_dir / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        initializer_range=0.2, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("gip-model")
    return {
        "xlmr": build_tiny_xlmr(root / "xlmr", seed=0),
        "xlmr-mlm": build_tiny_xlmr(root / "xlmr-mlm", task="mlm", seed=1),
        "bert": build_tiny_bert(root / "bert"),
    }


def _batch(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    return tok, enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("kind", ["xlmr", "bert"])
def test_shapes_tied_decoder_and_perturbation(folders, kind):
    model = GIPModel.from_pretrained(str(folders[kind])).eval()
    _, ids, mask = _batch(folders[kind])
    batch, seq = ids.shape
    assert model.num_layers == model.config.num_hidden_layers == (2 if kind == "xlmr" else 3)
    assert model.hidden_size == 32
    assert model(ids, mask).shape == (batch, 2)
    assert model(ids, mask, head="mlm").shape == (batch, seq, model.vocab_size)
    assert model.mlm_decoder.weight is model.classifier.get_input_embeddings().weight

    with torch.no_grad():
        clean, clean_mlm = model(ids, mask), model(ids, mask, head="mlm")
        zero = torch.zeros(batch, seq, model.hidden_size)
        g = torch.Generator().manual_seed(0)
        for layer in range(model.num_layers + 1):
            assert torch.equal(model(ids, mask, perturb=(layer, zero)), clean)
            assert torch.equal(model(ids, mask, head="mlm", perturb=(layer, zero)), clean_mlm)
            delta = torch.randn(batch, seq, model.hidden_size, generator=g)
            assert (model(ids, mask, perturb=(layer, delta)) - clean).abs().max() > 1e-4
            assert (model(ids, mask, head="mlm", perturb=(layer, delta)) - clean_mlm
                    ).abs().max() > 1e-4
        # the hook lived only for those calls
        assert torch.equal(model(ids, mask), clean)
    hooked = [m for m in model.modules() if m._forward_hooks]
    assert hooked == []


@pytest.mark.parametrize("kind", ["xlmr", "bert"])
def test_mlm_positions_give_the_full_logits_at_those_positions(folders, kind):
    """``mlm_positions`` = full logits indexed by the mask: values, order, gradients."""
    from guardray.pretrain.losses import IGNORE_INDEX, mlm_loss

    model = GIPModel.from_pretrained(str(folders[kind])).eval()
    _, ids, mask = _batch(folders[kind])
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, [1, 3]] = positions[1, 2] = True
    full = model(ids, mask, head="mlm")
    picked = model(ids, mask, head="mlm", mlm_positions=positions)
    assert picked.shape == (3, model.vocab_size)
    assert torch.allclose(picked, full[positions], atol=1e-6)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[positions] = torch.tensor([5, 6, 7])
    a, b = mlm_loss(full, labels), mlm_loss(picked, labels[positions])
    assert torch.allclose(a, b, atol=1e-6)
    weight = model.mlm_decoder.weight
    (ga,) = torch.autograd.grad(a, weight)
    (gb,) = torch.autograd.grad(b, weight)
    assert torch.allclose(ga, gb, atol=1e-6)
    none = model(ids, mask, head="mlm", mlm_positions=torch.zeros_like(positions))
    assert none.shape == (0, model.vocab_size)
    with pytest.raises(ValueError, match="bool mask"):
        model(ids, mask, head="mlm", mlm_positions=positions.long())
    with pytest.raises(ValueError, match="head='mlm' only"):
        model(ids, mask, mlm_positions=positions)


def test_perturbation_hits_the_requested_layer(folders):
    """A delta at layer k equals running the blocks after k on (hidden_k + delta) by hand."""
    model = GIPModel.from_pretrained(str(folders["xlmr"])).eval()
    _, ids, mask = _batch(folders["xlmr"])
    ids, mask = ids[:1, : int(mask[0].sum())], mask[:1, : int(mask[0].sum())]  # no padding
    base = model.classifier.base_model
    for layer in range(model.num_layers + 1):
        with torch.no_grad():
            x = base.embeddings(input_ids=ids)
            for block in base.encoder.layer[:layer]:
                x = block(x, None)
            delta = torch.randn(x.shape, generator=torch.Generator().manual_seed(layer))
            x = x + delta
            for block in base.encoder.layer[layer:]:
                x = block(x, None)
            got = model(ids, mask, head="mlm", perturb=(layer, delta))
            assert torch.allclose(got, model.mlm_head(x), atol=1e-5)
            assert not torch.allclose(model(ids, mask, head="mlm"), got, atol=1e-3)


def test_bad_arguments_raise_and_leave_no_hook(folders):
    model = GIPModel.from_pretrained(str(folders["xlmr"])).eval()
    _, ids, mask = _batch(folders["xlmr"])
    with pytest.raises(ValueError, match="head="):
        model(ids, mask, head="lm")
    with pytest.raises(ValueError, match=r"valid: 0\.\.2"):
        model(ids, mask, perturb=(3, torch.zeros(*ids.shape, 32)))
    with pytest.raises(ValueError, match="does not match"):
        model(ids, mask, perturb=(1, torch.zeros(*ids.shape, 16)))
    assert [m for m in model.modules() if m._forward_hooks] == []
    enable = getattr(model.classifier, "activation_checkpointing_enable", None)
    (enable or model.classifier.gradient_checkpointing_enable)()
    with pytest.raises(ValueError, match="checkpointing"):
        model(ids, mask, perturb=(1, torch.zeros(*ids.shape, 32)))


def test_mlm_head_loads_from_an_mlm_checkpoint(folders):
    from transformers import AutoModelForMaskedLM

    model = GIPModel.from_pretrained(str(folders["xlmr-mlm"])).eval()
    ref = AutoModelForMaskedLM.from_pretrained(str(folders["xlmr-mlm"]),
                                               use_safetensors=True).eval()
    _, ids, mask = _batch(folders["xlmr-mlm"])
    with torch.no_grad():
        assert torch.allclose(model(ids, mask, head="mlm"),
                              ref(input_ids=ids, attention_mask=mask).logits, atol=1e-6)
    assert model.mlm_head.decoder.bias is model.mlm_head.bias


def test_missing_mlm_head_is_initialised_and_logged(folders, caplog):
    with caplog.at_level(logging.INFO, logger="guardray.pretrain.model"):
        model = GIPModel.from_pretrained(str(folders["bert"]))
    assert "MLM head is newly initialised" in caplog.text
    assert model.training
    assert model.mlm_head.predictions.bias.abs().sum() == 0  # the architecture's own init


@pytest.mark.parametrize("kind", ["xlmr", "bert"])
def test_export_loads_in_transformers_and_pipeline(folders, kind, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    model = GIPModel.from_pretrained(str(folders[kind]))
    tok, ids, mask = _batch(folders[kind])
    with torch.no_grad():  # move the weights away from the source checkpoint
        model.classifier.get_input_embeddings().weight.mul_(1.5)
    model.eval()
    target = tmp_path / "export"
    model.export(str(target), tok)
    loaded = AutoModelForSequenceClassification.from_pretrained(str(target), use_safetensors=True)
    loaded.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids, attention_mask=mask).logits,
                              model(ids, mask), atol=1e-6)
    assert loaded.config.id2label == {0: "safe", 1: "unsafe"}
    assert (target / "model.safetensors").is_file()
    preds = pipeline("text-classification", model=str(target))(TEXTS)
    assert len(preds) == 2 and {p["label"] for p in preds} <= {"safe", "unsafe"}

    # a second export replaces the first and leaves no temporary folder behind
    with torch.no_grad():
        model.classifier.get_input_embeddings().weight.mul_(2.0)
        expected = model(ids, mask)
    model.export(str(target), tok)
    again = AutoModelForSequenceClassification.from_pretrained(str(target)).eval()
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids, attention_mask=mask).logits, expected,
                              atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    # and GIPModel reloads its own export
    reloaded = GIPModel.from_pretrained(str(target)).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(ids, mask), expected, atol=1e-6)


def test_bf16_model_accepts_float32_delta(folders):
    model = GIPModel.from_pretrained(str(folders["xlmr"]), dtype=torch.bfloat16).eval()
    assert model.mlm_head.dense.weight.dtype == torch.bfloat16
    _, ids, mask = _batch(folders["xlmr"])
    delta = torch.zeros(*ids.shape, 32, dtype=torch.float32)
    with torch.no_grad():
        out = model(ids, mask, perturb=(1, delta))
    assert out.dtype == torch.bfloat16 and torch.equal(out, model(ids, mask))


def test_embedded_minilm_gets_a_tied_fresh_mlm_head(caplog):
    from guardray.modeling.offline import MissingExtraError, resolve_model

    try:
        resolve_model("embedded:all-minilm-l6-v2")
    except MissingExtraError as exc:
        pytest.skip(str(exc))
    with caplog.at_level(logging.INFO, logger="guardray.pretrain.model"):
        model = GIPModel.from_pretrained("embedded:all-minilm-l6-v2")
    assert "newly initialised" in caplog.text
    assert model.num_layers == 6 and model.hidden_size == 384
    assert model.mlm_decoder is model.mlm_head.predictions.decoder
    assert model.mlm_decoder.weight is model.classifier.get_input_embeddings().weight
