"""The fine-tuning loop of one classifier, and its atomic Hugging Face checkpoint.

Objective: cross-entropy over the two classes (GuardFormer 3.2's L_CE, with the model's
softmax P(unsafe) as f_theta(x)), optionally class-weighted.

- Dynamic padding: examples are tokenized once without padding and each batch is padded to
  its longest member (on 2 CPU cores this is ~6x faster than padding to a fixed length);
  ``group_by_length`` also puts rows of similar length in the same batch
  (`guardray.finetune.batches`).
- Tuning: ``full`` trains every parameter (FFT); ``classifier`` freezes all but the
  classification head (CFT, GuardFormer 5 / Figure 5a).
- Validation: P(unsafe) on the validation rows, F1 of the unsafe class at 0.5. It runs once
  before training (the initial state, for reference) and then every ``eval_every_steps`` or
  each epoch. The best validation F1 keeps its weights (in memory, trainable parameters
  only); ``patience`` validations without improvement stop training.
- ``ema_decay`` d: the loop also keeps an exponential moving average of the trainable
  weights, ``theta_ema <- d_t * theta_ema + (1 - d_t) * theta`` after optimizer step t, with
  ``d_t = min(d, (1 + t) / (10 + t))`` (TensorFlow's warm-up, so the initial weights fade
  fast), starting from the initial weights, and validates, keeps and saves the averaged weights
  instead of the raw ones (weight averaging along the trajectory: Polyak; SWA / SWAD for
  out-of-domain robustness). Training itself continues from the raw weights.
- After training the best weights are restored, the decision threshold is chosen on the
  validation scores (`guardray.metrics.threshold`), and `save_checkpoint` writes the model,
  tokenizer and ``guardray_model.json`` to a temporary folder that is renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from guardray.finetune.batches import epoch_batches, n_batches
from guardray.metrics import binary as metrics
from guardray.metrics.threshold import choose_threshold
from guardray.modeling.training import param_groups, resolve_device
from guardray.progress import Progress

log = logging.getLogger(__name__)

# Names of classification heads in transformers' sequence-classification models.
HEAD_PREFIXES = ("classifier", "pre_classifier", "score", "classification_head", "out_proj")


@dataclasses.dataclass(frozen=True)
class LoopParams:
    """The loop's knobs (a plain copy of `TrainSection`, so the loop does not need pydantic).

    See `guardray.finetune.config.TrainSection` for the meaning of each field.
    """

    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    eval_every_steps: int | None = None
    patience: int = 2
    min_delta: float = 0.0
    group_by_length: bool = False
    class_weights: str = "none"
    threshold_rule: str = "max_f1"
    device: str = "auto"
    precision: str = "fp32"
    max_length: int = 256
    tuning: str = "full"
    head_modules: tuple[str, ...] | None = None
    ema_decay: float | None = None

    @classmethod
    def from_config(cls, cfg) -> "LoopParams":
        """From a `FinetuneConfig`."""
        t = cfg.train
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in t.model_dump().items() if k in fields}
        head = tuple(cfg.model.head_modules) if cfg.model.head_modules else None
        return cls(**values, max_length=cfg.model.max_length, tuning=cfg.resolved_tuning,
                   head_modules=head)


@dataclasses.dataclass
class LoopResult:
    """What one training run produced.

    Attributes:
        initial_val_f1: validation F1 before any training step.
        best_val_f1: the best validation F1 (its weights are in the model).
        best_step: optimizer step of the best validation (0 if never improved).
        steps: optimizer steps taken.
        stopped_early: patience ran out before the epoch/step budget.
        history: one dict per validation (step, epoch, val_f1, val_loss, train_loss).
        threshold: the chosen decision threshold (`ThresholdChoice.to_dict`).
        val_metrics: `guardray.metrics.binary.compute_metrics` at that threshold.
        trainable_params, total_params: parameter counts.
        seconds: wall time of the loop.
    """

    initial_val_f1: float
    best_val_f1: float
    best_step: int
    steps: int
    stopped_early: bool
    history: list[dict[str, Any]]
    threshold: dict[str, Any]
    val_metrics: dict[str, Any]
    trainable_params: int
    total_params: int
    seconds: float


def head_parameter_names(model, prefixes: Sequence[str] | None = None) -> list[str]:
    """Names of the classification head's parameters (what CFT trains).

    Args:
        model: a transformers sequence-classification model.
        prefixes: module-name prefixes of the head; None tries `HEAD_PREFIXES`.

    Raises:
        ValueError: no parameter matches, listing the model's top-level modules.
    """
    wanted = tuple(prefixes or HEAD_PREFIXES)
    names = [n for n, _ in model.named_parameters()
             if any(n == p or n.startswith(p + ".") for p in wanted)]
    if not names:
        tops = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
        raise ValueError(f"no classification-head parameters under {list(wanted)}; the model's "
                         f"top-level modules are {tops}: set model.head_modules")
    return names


def _encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length,
                     padding=False)["input_ids"]


def _pad(tokenizer, ids: list[list[int]], device: str):
    batch = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}


def predict_scores(model, tokenizer, ids: list[list[int]], *, batch_size: int, device: str,
                   labels: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
    """P(unsafe) per example (batches sorted by length: less padding), and mean CE loss.

    Returns:
        ``(scores (n,), loss)``; loss is NaN without ``labels``.
    """
    import torch

    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    scores = np.empty(len(ids), dtype=np.float64)
    total_loss = 0.0
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            idx = order[start:start + batch_size]
            logits = model(**_pad(tokenizer, [ids[i] for i in idx], device)).logits.float()
            scores[idx] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
            if labels is not None:
                y = torch.as_tensor([labels[i] for i in idx], device=logits.device)
                total_loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
    return scores, (total_loss / max(1, len(ids)) if labels is not None else math.nan)


def train_classifier(
    model, tokenizer, train_inputs: Sequence[str] | Callable[[int], Sequence[str]],
    train_labels: Sequence[int], val_inputs: Sequence[str], val_labels: Sequence[int],
    params: LoopParams, *, seed: int = 0,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    what: str = "finetune",
) -> LoopResult:
    """Fine-tune ``model`` in place; on return it holds the best validation weights.

    Args:
        model: a transformers sequence classifier with 2 labels.
        tokenizer: its tokenizer.
        train_inputs: training strings, or ``epoch -> strings`` (re-drawn rationale dropout).
        train_labels: (n,) 0/1.
        val_inputs: validation strings (never with rationales).
        val_labels: (m,) 0/1.
        params: loop settings.
        seed: seeds shuffling, dropout and the head's initialisation.
        on_eval: called with each validation's record (Ray Tune reports through it).
        what: names the run in the progress lines (`guardray.progress`): steps done, rate,
            ETA, the running training loss and the latest validation F1.

    Returns:
        The `LoopResult`.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    started = time.time()
    torch.manual_seed(seed)
    device = resolve_device(params.device, field="train.device")
    model.to(device)
    trainable = _set_trainable(model, params)
    y_train = list(map(int, train_labels))
    inputs_for = train_inputs if callable(train_inputs) else (lambda _e: train_inputs)
    cached: dict[str, list[list[int]]] = {}

    def train_ids(epoch: int) -> list[list[int]]:
        texts = list(inputs_for(epoch))
        if len(texts) != len(y_train):
            raise ValueError(f"{len(texts)} training inputs but {len(y_train)} labels")
        if not callable(train_inputs):  # fixed inputs: tokenize once
            if "ids" not in cached:
                cached["ids"] = _encode(tokenizer, texts, params.max_length)
            return cached["ids"]
        return _encode(tokenizer, texts, params.max_length)

    val_ids = _encode(tokenizer, val_inputs, params.max_length)
    y_val = np.asarray(val_labels, dtype=np.int64)
    steps_per_epoch = n_batches(len(y_train), params.batch_size,
                                group_by_length=params.group_by_length)
    total_steps = params.max_steps or params.epochs * steps_per_epoch
    total_steps = min(total_steps, params.epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(param_groups(model, params.weight_decay), lr=params.lr)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(params.warmup_ratio * total_steps), total_steps)
    loss_fn = torch.nn.CrossEntropyLoss(weight=_class_weights(y_train, params, device))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if device.type == "cuda" and params.precision == "bf16"
                else contextlib.nullcontext())

    ema = WeightAverage(trainable, params.ema_decay) if params.ema_decay is not None else None

    def evaluate(step: int, epoch: float, train_loss: float) -> dict[str, Any]:
        with ema.swapped_in() if ema is not None else contextlib.nullcontext():
            scores, loss = predict_scores(model, tokenizer, val_ids,
                                          batch_size=params.eval_batch_size, device=device,
                                          labels=y_val)
        record = {"step": step, "epoch": round(epoch, 4), "train_loss": train_loss,
                  "val_loss": loss, "val_f1": metrics.f1(y_val, (scores >= 0.5).astype(int)),
                  "val_auroc": metrics.roc_auc(y_val, scores)}
        model.train()
        return record

    history = [evaluate(0, 0.0, math.nan)]
    initial_f1 = history[0]["val_f1"]
    log.info("initial validation F1 %.4f (%d train / %d validation rows, %d steps max)",
             initial_f1, len(y_train), len(y_val), total_steps)
    if on_eval:
        on_eval({**history[0], "best_val_f1": initial_f1})
    best = {"f1": -1.0, "step": 0, "state": None}
    bad_evals, step, stopped = 0, 0, False
    generator = torch.Generator().manual_seed(seed)
    running, seen = 0.0, 0
    model.train()
    progress = Progress(what, total_steps, unit="step")
    progress.metrics["val_f1"] = initial_f1
    for epoch in range(params.epochs):
        ids = train_ids(epoch)
        order = torch.randperm(len(ids), generator=generator).tolist()
        batch_order = (torch.randperm(steps_per_epoch, generator=generator).tolist()
                       if params.group_by_length else None)
        batches = epoch_batches(order, [len(x) for x in ids], params.batch_size,
                                group_by_length=params.group_by_length, batch_order=batch_order)
        for number, idx in enumerate(batches):
            batch = _pad(tokenizer, [ids[i] for i in idx], device)
            target = torch.as_tensor([y_train[i] for i in idx], device=device)
            with autocast:
                logits = model(**batch).logits
            loss = loss_fn(logits.float(), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm)
            optimizer.step()
            if ema is not None:
                ema.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running, seen = running + loss.detach().item() * len(idx), seen + len(idx)
            progress.update(1, loss=running / seen)
            end_of_epoch = number == len(batches) - 1
            due = (step % params.eval_every_steps == 0) if params.eval_every_steps else end_of_epoch
            if due or step >= total_steps:
                record = evaluate(step, step / steps_per_epoch, running / max(1, seen))
                running, seen = 0.0, 0
                if record["val_f1"] > best["f1"] + params.min_delta or best["state"] is None:
                    with ema.swapped_in() if ema is not None else contextlib.nullcontext():
                        state = _snapshot(model, trainable)
                    best = {"f1": record["val_f1"], "step": step, "state": state}
                    bad_evals = 0
                else:
                    bad_evals += 1
                history.append(record)
                progress.metrics["val_f1"] = record["val_f1"]
                if on_eval:
                    on_eval({**record, "best_val_f1": best["f1"]})
                if bad_evals >= params.patience:
                    stopped = step < total_steps
                    break
            if step >= total_steps:
                break
        if bad_evals >= params.patience or step >= total_steps:
            break
    progress.close()
    _restore(model, best["state"])
    scores, _ = predict_scores(model, tokenizer, val_ids, batch_size=params.eval_batch_size,
                               device=device)
    choice = choose_threshold(scores, y_val, rule=params.threshold_rule)
    result = LoopResult(
        initial_val_f1=initial_f1, best_val_f1=best["f1"], best_step=best["step"], steps=step,
        stopped_early=stopped, history=history, threshold=choice.to_dict(),
        val_metrics=metrics.compute_metrics(y_val, scores, choice.threshold),
        trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in model.parameters()),
        seconds=time.time() - started,
    )
    log.info("best validation F1 %.4f at step %d of %d (initial %.4f)%s", result.best_val_f1,
             result.best_step, step, initial_f1, "; stopped early" if stopped else "")
    return result


def _set_trainable(model, params: LoopParams) -> list:
    if params.tuning == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return [p for p in model.parameters()]
    if params.tuning != "classifier":
        raise ValueError(f"unknown tuning {params.tuning!r}; valid: full, classifier")
    head = set(head_parameter_names(model, params.head_modules))
    out = []
    for name, p in model.named_parameters():
        p.requires_grad_(name in head)
        if name in head:
            out.append(p)
    return out


def _class_weights(y: list[int], params: LoopParams, device: str):
    if params.class_weights == "none":
        return None
    import torch

    counts = np.bincount(np.asarray(y), minlength=2).astype(np.float64)
    weights = counts.sum() / (2 * np.maximum(counts, 1))
    return torch.as_tensor(weights, dtype=torch.float32, device=device)


class WeightAverage:
    """Exponential moving average of parameters: ``avg <- d_t * avg + (1 - d_t) * theta`` at
    update t = 1, 2, ..., ``d_t = min(decay, (1 + t) / (10 + t))``.

    Args:
        params: the parameters to average (tensors updated in place by an optimizer).
        decay: d in [0, 1).
    """

    def __init__(self, params: list, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.params, self.decay, self.updates = list(params), float(decay), 0
        self.average = [p.detach().clone() for p in self.params]

    def update(self) -> None:
        """One step of the average, after an optimizer step."""
        import torch

        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - d)

    @contextlib.contextmanager
    def swapped_in(self):
        """The averaged values in the parameters for the ``with`` block, then the raw ones."""
        import torch

        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.average):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw):
                    p.copy_(r)


def _snapshot(model, trainable: list) -> dict[str, Any]:
    wanted = {id(p) for p in trainable}
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()
            if id(p) in wanted}


def _restore(model, state: dict[str, Any] | None) -> None:
    if state is None:
        return
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))
