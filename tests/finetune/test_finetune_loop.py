"""The fine-tuning loop on a tiny real XLM-R: it learns, CFT freezes the encoder, checkpoints
load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sample_testlib import texts

from guardray.finetune import loop as loop_module
from guardray.finetune.loop import LoopParams, head_parameter_names, train_classifier
from guardray.modeling.checkpoint import (
    MODEL_CARD,
    load_classifier,
    read_model_card,
    save_checkpoint,
)
from guardray.modeling.tiny import build_tiny_xlmr

PARAMS = LoopParams(epochs=10, batch_size=16, lr=3e-3, warmup_ratio=0.0, patience=6, device="cpu")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def data():
    return texts(64, seed=1), texts(32, seed=2)


def test_finetuning_raises_validation_f1(tiny_dir, data, progress_lines):
    (xt, yt), (xv, yv) = data
    model, tok = load_classifier(str(tiny_dir))
    seen = []
    result = train_classifier(model, tok, xt, yt, xv, yv, PARAMS, seed=0, on_eval=seen.append,
                              what="finetune tiny/seed0")
    # the console shows progress: steps of the planned total, rate, loss, validation F1
    last = progress_lines[-1]
    assert last.startswith(f"finetune tiny/seed0: step {result.steps}/") and "step/s" in last
    assert "loss " in last and "val_f1 " in last
    assert result.best_val_f1 > result.initial_val_f1
    assert result.best_val_f1 >= 0.9
    assert seen[0]["step"] == 0 and seen[0]["val_f1"] == result.initial_val_f1
    assert len(seen) == len(result.history) >= 2
    assert result.threshold["source"] == "validation"
    assert result.val_metrics["f1"] >= result.best_val_f1 - 1e-9  # tuned threshold >= 0.5's F1
    assert result.trainable_params == result.total_params


def test_classifier_only_tuning_freezes_the_encoder(tiny_dir, data):
    (xt, yt), (xv, yv) = data
    model, tok = load_classifier(str(tiny_dir))
    head = set(head_parameter_names(model))
    assert head and all(n.startswith("classifier.") for n in head)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = LoopParams(**{**PARAMS.__dict__, "tuning": "classifier", "epochs": 2})
    result = train_classifier(model, tok, xt, yt, xv, yv, params, seed=0)
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and changed <= head
    assert result.trainable_params == sum(after[n].numel() for n in head) < result.total_params


def test_early_stopping_stops_and_restores_best(tiny_dir, data):
    (xt, yt), (xv, yv) = data
    model, tok = load_classifier(str(tiny_dir))
    params = LoopParams(**{**PARAMS.__dict__, "epochs": 30, "eval_every_steps": 1,
                           "patience": 2, "lr": 1e-9})  # nothing improves after step 1
    result = train_classifier(model, tok, xt, yt, xv, yv, params, seed=0)
    assert result.stopped_early and result.steps == 3 and result.best_step == 1
    assert len(result.history) == 4  # initial + 3 validations


def test_checkpoint_is_atomic_and_loads_with_transformers(tiny_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    model, tok = load_classifier(str(tiny_dir))
    target = tmp_path / "out" / "tax" / "seed0"
    card = {"threshold": {"threshold": 0.4}, "auroc": float("nan")}
    save_checkpoint(model, tok, str(target), card)
    assert read_model_card(str(target)) == {"threshold": {"threshold": 0.4}, "auroc": None}
    assert sorted(p.name for p in (tmp_path / "out" / "tax").iterdir()) == ["seed0"]  # no temp left
    assert not list(target.glob("*.bin")) and (target / "model.safetensors").is_file()
    loaded = AutoModelForSequenceClassification.from_pretrained(target)
    assert loaded.config.id2label == {0: "safe", 1: "unsafe"}
    clf = pipeline("text-classification", model=str(target), tokenizer=str(target))
    assert clf("Write a poem about the ocean")[0]["label"] in ("safe", "unsafe")
    with pytest.raises(FileExistsError, match="set overwrite=true"):
        save_checkpoint(model, tok, str(target), {})
    save_checkpoint(model, tok, str(target), {"v": 2}, overwrite=True)
    assert json.loads((target / MODEL_CARD).read_text()) == {"v": 2}


def test_head_detection_error_lists_modules(tiny_dir):
    model, _ = load_classifier(str(tiny_dir))
    with pytest.raises(ValueError, match=r"top-level modules are \['classifier', 'roberta'\]"):
        head_parameter_names(model, ["nonexistent"])


def test_balanced_class_weights_run(tiny_dir):
    (xt, yt) = texts(20, seed=3)
    yt = [0] * 16 + [1] * 4
    model, tok = load_classifier(str(tiny_dir))
    params = LoopParams(**{**PARAMS.__dict__, "epochs": 1, "class_weights": "balanced"})
    result = train_classifier(model, tok, xt, yt, xt[:8], yt[:8], params, seed=0)
    assert np.isfinite(result.history[-1]["train_loss"])


def test_length_grouped_batches_train_every_row_each_epoch(tiny_dir, data, monkeypatch):
    (xt, yt), (xv, yv) = data
    xt = [t if i % 5 else t + " and more" * 20 for i, t in enumerate(xt)]  # 13 long rows
    model, tok = load_classifier(str(tiny_dir))
    epochs = []
    real = loop_module.epoch_batches
    monkeypatch.setattr(loop_module, "epoch_batches", lambda *a, **k: (
        epochs.append(real(*a, **k)) or epochs[-1]))
    params = LoopParams(**{**PARAMS.__dict__, "epochs": 2, "group_by_length": True})
    result = train_classifier(model, tok, xt, yt, xv, yv, params, seed=0)
    assert result.steps == 2 * 4 and len(epochs) == 2  # 64 rows / 16 per batch
    lengths = [len(ids) for ids in tok(xt)["input_ids"]]
    longest_first = sorted(range(len(xt)), key=lambda i: -lengths[i])
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == list(range(len(xt)))
        # one mega-batch: each batch is a run of the rows sorted by length (ties aside)
        widths = sorted(max(lengths[i] for i in b) for b in batches)
        assert widths == sorted(lengths[longest_first[k]] for k in (0, 16, 32, 48))
    assert epochs[0] != epochs[1]  # batches are reshuffled each epoch


def test_weight_average_matches_hand_computed_values():
    from guardray.finetune.loop import WeightAverage

    p = torch.nn.Parameter(torch.zeros(2))
    ema = WeightAverage([p], decay=0.5)
    expected, first = 0.0, []
    for t, value in enumerate([1.0, 3.0, -2.0] + [4.0] * 10, start=1):
        with torch.no_grad():
            p.fill_(value)
        ema.update()
        d = min(0.5, (1 + t) / (10 + t))  # 2/11, 3/12, 4/13, ... then 0.5 from t = 9
        expected = d * expected + (1 - d) * value
        torch.testing.assert_close(ema.average[0], torch.full((2,), expected))
        first.append(ema.average[0][0].item())
    # by hand: 9/11 * 1; 3/12 * 9/11 + 9/12 * 3; 4/13 * that + 9/13 * (-2)
    assert first[:3] == pytest.approx([0.818182, 2.454545, -0.629371], abs=1e-6)
    with ema.swapped_in():
        assert torch.equal(p.detach(), ema.average[0])
    assert torch.equal(p.detach(), torch.full((2,), 4.0))  # the raw weights are back
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        WeightAverage([p], decay=1.0)


def test_ema_decay_zero_is_the_raw_weights_and_a_decay_keeps_the_average(tiny_dir, data):
    (xt, yt), (xv, yv) = data
    runs = {}
    for decay in (None, 0.0, 0.9):
        model, tok = load_classifier(str(tiny_dir))
        params = LoopParams(**{**PARAMS.__dict__, "epochs": 2, "ema_decay": decay})
        result = train_classifier(model, tok, xt, yt, xv, yv, params, seed=0)
        runs[decay] = (result, {n: p.detach().clone() for n, p in model.named_parameters()})
    # d = 0: the "average" is the last weights, so training and choices are the same
    assert [h["val_f1"] for h in runs[0.0][0].history] == \
        [h["val_f1"] for h in runs[None][0].history]
    assert all(torch.equal(runs[0.0][1][n], runs[None][1][n]) for n in runs[None][1])
    # d = 0.9: the kept weights are an average, not the raw weights of any step
    assert any(not torch.equal(runs[0.9][1][n], runs[None][1][n]) for n in runs[None][1])
