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
