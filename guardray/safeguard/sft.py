"""Supervised LoRA fine-tuning of a chat LLM (safeguard-merging step 1, appendix C).

Each (instruction, response) pair is rendered with the base's own chat template (C.1): the
prompt is the template with the generation prompt, the target is what the template adds for
the assistant's answer. The loss is the paper's eq. 1, the negative log-likelihood of the
response tokens given the instruction, ``-sum_t log p_theta(y_t | x, y_<t)`` averaged over
the response tokens of a batch (prompt tokens carry the ignore label -100). LoRA (peft) adapts
all linear layers by default; AdamW with a cosine schedule and warmup (C.2).

Outputs of one fine-tune (`train_lora`): ``adapter/`` (peft's ``adapter_config.json`` +
``adapter_model.safetensors``) and ``merged/`` (the adapter merged into the base, a full
Hugging Face checkpoint in safetensors with the base's tokenizer), each written to a temporary
folder and renamed into place.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guardray.errors import ModelError

log = logging.getLogger(__name__)

IGNORE = -100
ADAPTER, MERGED = "adapter", "merged"


class ChatTemplateError(ModelError):
    """The tokenizer has no chat template, or it renders conversations inconsistently."""


def check_chat_template(tokenizer, where: str) -> None:
    """Refuse a tokenizer without a chat template (the paper applies the base's own)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"{where}: the tokenizer has no chat template; the safeguard job renders every "
            "conversation with the base model's own template (safeguard-merging C.1). Use an "
            "instruct/chat model, or add a chat_template to its tokenizer_config.json")


def conversation(instruction: str, system_prompt: str | None = None,
                 response: str | None = None) -> list[dict[str, str]]:
    """Chat messages of one pair (the response, if given, as the assistant's turn)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": instruction})
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


def encode_pair(tokenizer, instruction: str, response: str, *, system_prompt: str | None,
                max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of one training pair.

    Returns:
        ``(input_ids, labels)``, equal length <= ``max_length``; ``labels`` is -100 on the
        prompt, the token ids on the assistant's part (answer and end-of-turn tokens).

    Raises:
        ChatTemplateError: the full conversation does not start with the rendered prompt
            (a template that rewrites earlier turns), so the answer cannot be told apart.
    """
    prompt = tokenizer.apply_chat_template(conversation(instruction, system_prompt),
                                           tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(conversation(instruction, system_prompt, response),
                                         tokenize=False)
    if not full.startswith(prompt):
        raise ChatTemplateError("the chat template renders the prompt differently when the "
                                "answer follows it; cannot mask the prompt out of the loss")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    ids = (p_ids + r_ids)[:max_length]
    labels = ([IGNORE] * len(p_ids) + r_ids)[:max_length]
    return ids, labels


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask``, ``labels`` tensors, shape (B, T)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        labels[i, :len(y)] = torch.tensor(y)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(n: int, batch_size: int, steps: int, seed: int):
    """``steps`` lists of row indices: seeded reshuffles of ``range(n)``, each batch full
    (the last partial batch of an epoch is dropped unless an epoch is smaller than a batch)."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < min(batch_size, n):
            fresh = list(range(n))
            rng.shuffle(fresh)
            order = fresh
        yield order[:batch_size]
        order = order[batch_size:]


def train_lora(base: str, pairs: Sequence[tuple[str, str]], out_dir: str | Path, *,
               settings, seed: int, system_prompt: str | None = None,
               on_step: Callable[[dict[str, Any]], None] | None = None,
               trust_remote_code: bool = False) -> dict[str, Any]:
    """LoRA-fine-tune ``base`` on ``pairs`` and save ``adapter/`` and ``merged/``.

    Args:
        base: the base model folder (resolved).
        pairs: ``(instruction, response)`` training pairs.
        out_dir: the fine-tune's folder (``adapter/`` and ``merged/`` go inside).
        settings: a `guardray.safeguard.config.FinetuneSection`.
        seed: seeds the LoRA init, dropout and batch order.
        system_prompt: optional system message.
        on_step: called every 10 steps and at the end with ``{"step", "loss", "lr"}``.

    Returns:
        ``{"seed", "steps", "loss_first", "loss_last", "seconds", "adapter", "merged"}``.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    from guardray.io.folders import atomic_folder
    from guardray.modeling.training import resolve_device

    started = time.time()
    torch.manual_seed(seed)
    device = resolve_device(settings.device)
    tok = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
    check_chat_template(tok, base)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    examples = [encode_pair(tok, i, r, system_prompt=system_prompt,
                            max_length=settings.max_length) for i, r in pairs]
    examples = [e for e in examples if any(y != IGNORE for y in e[1])]
    if not examples:
        raise ModelError(f"no training pair keeps an answer token within max_length="
                         f"{settings.max_length}")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32,
                                                 trust_remote_code=trust_remote_code)
    lora = LoraConfig(r=settings.lora.r, lora_alpha=settings.lora.alpha,
                      lora_dropout=settings.lora.dropout, task_type="CAUSAL_LM",
                      target_modules=settings.lora.target_modules)
    model = get_peft_model(model, lora).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = get_cosine_schedule_with_warmup(
        opt, math.ceil(settings.warmup_ratio * settings.steps), settings.steps)
    from guardray.progress import Progress

    bar = Progress(f"LoRA fine-tune seed {seed}", settings.steps, unit="step")
    losses = []
    for step, rows in enumerate(batches(len(examples), settings.batch_size, settings.steps,
                                        seed), start=1):
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in rows], pad).items()}
        loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise ModelError(f"seed {seed}: the loss is {loss.item()} at step {step}; lower "
                             "finetune.lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.update(1, loss=losses[-1])
        if on_step is not None and (step % 10 == 0 or step == settings.steps):
            on_step({"step": step, "loss": losses[-1], "lr": sched.get_last_lr()[0]})
    bar.close()
    model.eval()
    out = Path(out_dir)
    with atomic_folder(out / ADAPTER, overwrite=True) as tmp:
        model.save_pretrained(tmp)  # peft: adapter_model.safetensors
        _record_base(tmp, base)
    merged = model.merge_and_unload()
    with atomic_folder(out / MERGED, overwrite=True) as tmp:
        merged.to("cpu").save_pretrained(tmp)  # transformers 5: always safetensors
        tok.save_pretrained(tmp)
    return {"seed": seed, "steps": len(losses), "loss_first": losses[0],
            "loss_last": sum(losses[-5:]) / len(losses[-5:]),
            "seconds": round(time.time() - started, 1),
            "adapter": str(out / ADAPTER), "merged": str(out / MERGED)}


def _record_base(adapter_dir: Path, base: str) -> None:
    """Write the resolved base folder into ``adapter_config.json`` (peft records the name the
    model was loaded with, which is already this path; kept explicit for moved caches)."""
    import json

    cfg_file = Path(adapter_dir) / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_model_name_or_path"] = base
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
