"""The DeepSpeed config dict of a GIP run, built from `PretrainTrainSection` (pure function).

Choices (DeepSpeed 0.19):

- optimizer ``AdamW`` with ``"torch_adam": true``: plain ``torch.optim.AdamW`` (DeepSpeed's
  fused Adam would compile a CUDA/C++ extension first: ~60 s on CPU, docs/ARCHITECTURE.md).
- schedulers, stepped once per optimizer step, as DeepSpeed names them in
  ``deepspeed.runtime.lr_schedules``: ``constant`` -> ``WarmupLR``, ``linear`` ->
  ``WarmupDecayLR`` (linear warm-up, then linear decay to 0 at ``total_num_steps``),
  ``cosine`` -> ``WarmupCosineLR`` (peak is the optimizer's lr). DeepSpeed requires
  ``warmup_num_steps >= 1``; without warm-up the schedule starts at the peak (min lr = peak,
  or warmup_min_ratio = 1).
- ``bf16`` / ``fp16`` sections from ``precision`` (fp32: both off).
- ``zero_optimization.stage`` from ``zero_stage``; stage 3 also gathers the 16-bit weights on
  save, so a consolidated model can be written without the zero_to_fp32 script.
- ``steps_per_print`` huge: the loop reports metrics itself (Ray Train + TensorBoard).
"""

from __future__ import annotations

import math
from typing import Any

NEVER_PRINT = 10**9


def warmup_steps(train, total_steps: int) -> int:
    """Warm-up optimizer steps: ``warmup_steps`` if set, else ``ceil(warmup_ratio * total)``."""
    if train.warmup_steps is not None:
        return min(int(train.warmup_steps), total_steps)
    return min(int(math.ceil(train.warmup_ratio * total_steps)), total_steps)


def scheduler_config(train, total_steps: int) -> dict[str, Any]:
    """The ``scheduler`` section for ``train.schedule`` over ``total_steps`` optimizer steps."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warm = warmup_steps(train, total_steps)
    lr = float(train.lr)
    if train.schedule == "cosine":
        return {"type": "WarmupCosineLR", "params": {
            "total_num_steps": total_steps, "warmup_num_steps": max(1, warm),
            "warmup_min_ratio": 0.0 if warm else 1.0, "cos_min_ratio": 0.0,
            "warmup_type": "linear"}}
    params = {"warmup_min_lr": 0.0 if warm else lr, "warmup_max_lr": lr,
              "warmup_num_steps": max(1, warm), "warmup_type": "linear"}
    if train.schedule == "constant":
        return {"type": "WarmupLR", "params": params}
    if train.schedule == "linear":
        return {"type": "WarmupDecayLR", "params": {"total_num_steps": total_steps, **params}}
    raise ValueError(f"unknown schedule {train.schedule!r}; valid: linear, cosine, constant")


def build_deepspeed_config(train, *, total_steps: int, world_size: int | None = None
                           ) -> dict[str, Any]:
    """DeepSpeed config for a run of ``total_steps`` optimizer steps.

    Args:
        train: a `guardray.pretrain.config.PretrainTrainSection` (or anything with its fields).
        total_steps: optimizer steps of the whole run (for the LR schedule).
        world_size: data-parallel ranks; when given, ``train_batch_size`` is set too
            (DeepSpeed checks micro x accum x world == train_batch_size).

    Returns:
        The config dict for ``deepspeed.initialize(config=...)``.
    """
    if train.zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {train.zero_stage}")
    if train.precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {train.precision!r}")
    zero: dict[str, Any] = {"stage": int(train.zero_stage)}
    if train.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(train.batch_size),
        "gradient_accumulation_steps": int(train.grad_accum),
        "zero_optimization": zero,
        "bf16": {"enabled": train.precision == "bf16"},
        "fp16": {"enabled": train.precision == "fp16"},
        "optimizer": {"type": "AdamW", "params": {
            "lr": float(train.lr), "betas": [0.9, 0.999], "eps": 1e-8,
            "weight_decay": float(train.weight_decay), "torch_adam": True}},
        "scheduler": scheduler_config(train, total_steps),
        "gradient_clipping": float(train.max_grad_norm),
        "steps_per_print": NEVER_PRINT,
        "wall_clock_breakdown": False,
    }
    if world_size is not None:
        config["train_batch_size"] = int(train.batch_size * train.grad_accum * world_size)
    return config
