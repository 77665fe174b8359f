"""The DeepSpeed config builder against hand-written dicts (no DeepSpeed import needed)."""

from __future__ import annotations

import pytest

from guardray.pretrain.config import PretrainTrainSection
from guardray.pretrain.deepspeed_config import (
    NEVER_PRINT,
    build_deepspeed_config,
    scheduler_config,
    warmup_steps,
)


def _train(**kw) -> PretrainTrainSection:
    return PretrainTrainSection(**kw)


def test_full_config_by_hand():
    t = _train(batch_size=8, grad_accum=4, lr=1e-4, warmup_steps=10, schedule="linear",
               weight_decay=0.05, max_grad_norm=0.5, precision="bf16", zero_stage=2)
    assert build_deepspeed_config(t, total_steps=100, world_size=2) == {
        "train_micro_batch_size_per_gpu": 8,
        "gradient_accumulation_steps": 4,
        "train_batch_size": 64,  # 8 x 4 x 2
        "zero_optimization": {"stage": 2},
        "bf16": {"enabled": True},
        "fp16": {"enabled": False},
        "optimizer": {"type": "AdamW", "params": {
            "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05,
            "torch_adam": True}},
        "scheduler": {"type": "WarmupDecayLR", "params": {
            "total_num_steps": 100, "warmup_min_lr": 0.0, "warmup_max_lr": 1e-4,
            "warmup_num_steps": 10, "warmup_type": "linear"}},
        "gradient_clipping": 0.5,
        "steps_per_print": NEVER_PRINT,
        "wall_clock_breakdown": False,
    }


def test_zero3_gathers_16bit_weights_and_no_world_size_leaves_batch_open():
    cfg = build_deepspeed_config(_train(zero_stage=3, precision="fp32"), total_steps=5)
    assert cfg["zero_optimization"] == {"stage": 3,
                                        "stage3_gather_16bit_weights_on_model_save": True}
    assert "train_batch_size" not in cfg
    assert cfg["bf16"] == {"enabled": False} and cfg["fp16"] == {"enabled": False}
    fp16 = build_deepspeed_config(_train(precision="fp16", zero_stage=0), total_steps=5)
    assert fp16["fp16"] == {"enabled": True} and fp16["zero_optimization"] == {"stage": 0}


def test_schedules_as_deepspeed_names_them():
    # warmup_ratio 0.06 of 50 steps -> ceil(3.0) = 3 warm-up steps
    assert warmup_steps(_train(warmup_ratio=0.06), 50) == 3
    assert warmup_steps(_train(warmup_steps=7), 50) == 7
    assert warmup_steps(_train(warmup_steps=70), 50) == 50
    cos = scheduler_config(_train(schedule="cosine", lr=2e-5, warmup_steps=5), 40)
    assert cos == {"type": "WarmupCosineLR", "params": {
        "total_num_steps": 40, "warmup_num_steps": 5, "warmup_min_ratio": 0.0,
        "cos_min_ratio": 0.0, "warmup_type": "linear"}}
    const = scheduler_config(_train(schedule="constant", lr=3e-3, warmup_steps=0), 40)
    # no warm-up: DeepSpeed needs warmup_num_steps >= 1, so min lr = peak keeps lr constant
    assert const == {"type": "WarmupLR", "params": {
        "warmup_min_lr": 3e-3, "warmup_max_lr": 3e-3, "warmup_num_steps": 1,
        "warmup_type": "linear"}}
    assert scheduler_config(_train(schedule="cosine", warmup_steps=0), 4)["params"][
        "warmup_min_ratio"] == 1.0
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        scheduler_config(_train(), 0)


def test_deepspeed_schedulers_accept_the_params():
    """Each scheduler section builds the real DeepSpeed class with these params."""
    torch = pytest.importorskip("torch")
    lr_schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")
    for schedule in ("linear", "cosine", "constant"):
        sec = scheduler_config(_train(schedule=schedule, lr=1e-3, warmup_steps=2), 10)
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched = getattr(lr_schedules, sec["type"])(opt, **sec["params"])
        lrs = []
        for _ in range(10):
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        assert 0.9e-3 <= max(lrs) <= 1e-3 * (1 + 1e-9)  # warm-up reaches (about) the peak
        if schedule == "constant":
            assert lrs[-1] == pytest.approx(1e-3)
        else:
            assert lrs[-1] < 1e-3 * 0.2  # decayed (towards 0) by the last step
