"""The DeepSpeed engine of a GIP worker and its checkpoint files.

- `prepare_deepspeed`: import DeepSpeed for a CPU or GPU worker.
- `build_engine`: `GIPModel` + `guardray.pretrain.deepspeed_config.build_deepspeed_config`.
- `restore`: load the newest checkpoint, Ray Train's or the one the driver found complete on
  disk (`guardray.pretrain.resume`), DeepSpeed's files + ``loop_state.json``, never
  unpickling code from it (`guardray.pretrain.safe_load`).
- `save_consolidated`: the full fp32 state dict (ZeRO-3 partitions gathered) as
  ``consolidated.safetensors``, which the driver exports as a Hugging Face checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from guardray.modeling.training import param_groups
from guardray.pretrain.plan import LoopPlan
from guardray.pretrain.resume import LOOP_STATE, checkpoint_step

log = logging.getLogger(__name__)

DS_TAG = "gip"
CONSOLIDATED = "consolidated.safetensors"


def prepare_deepspeed(use_gpu: bool):
    """Import DeepSpeed for this worker (CPU: CPU accelerator, no shm comm op build)."""
    if not use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import importlib

    import deepspeed

    # (``import deepspeed.comm.torch as m`` would give the torch package: deepspeed.comm
    # re-exports ``torch`` under that name.)
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    if not use_gpu and os.environ.get("GUARDRAY_DS_SHM_COMM", "0") != "1":
        # The shm all-reduce op is JIT-compiled on first use (~45 s on 2 cores) and only
        # helps inference; gloo does the training collectives. Set GUARDRAY_DS_SHM_COMM=1
        # (with a cached TORCH_EXTENSIONS_DIR) to keep it.
        ds_torch.build_shm_op = lambda: None
    return deepspeed


def build_engine(deepspeed, cfg, base: str, plan: LoopPlan, world: int):
    """``(engine, model)``: the `GIPModel` at ``base`` wrapped in a DeepSpeed engine built
    from ``cfg.train`` for ``plan.total_steps`` optimizer steps on ``world`` ranks."""
    import torch

    from guardray.pretrain.deepspeed_config import build_deepspeed_config
    from guardray.pretrain.model import GIPModel

    torch.manual_seed(cfg.train.seed)  # new heads (e.g. MiniLM's MLM head) equal on all ranks
    model = GIPModel.from_pretrained(base, num_labels=2,
                                     trust_remote_code=cfg.model.trust_remote_code)
    ds_config = build_deepspeed_config(cfg.train, total_steps=plan.total_steps, world_size=world)
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=param_groups(model, cfg.train.weight_decay),
        config=ds_config)
    return engine, model


def restore(engine, found: dict[str, Any] | None = None) -> int:
    """Load the newest checkpoint into ``engine``; returns its global step (0: none).

    Args:
        engine: the DeepSpeed engine.
        found: ``{"path", "step", "filesystem"}`` of the newest complete checkpoint the
            driver found on disk (`guardray.pretrain.resume.find_resume_checkpoint`), or None.
            Used when Ray Train has no checkpoint, or an older one: Ray knows only those in
            its snapshot file, which a killed run may not have written.
    """
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    ray_step = checkpoint_step(checkpoint.path) if checkpoint is not None else None
    if found is not None and (checkpoint is None or (ray_step or 0) < found["step"]):
        log.info("resuming from %s, found complete on disk (Ray Train's record: %s)",
                 found["path"], checkpoint.path if checkpoint is not None else "none")
        checkpoint = ray.train.Checkpoint(found["path"], filesystem=found.get("filesystem"))
    if checkpoint is None:
        return 0
    from guardray.pretrain.safe_load import secure_checkpoint_engine

    secure_checkpoint_engine(engine)
    with checkpoint.as_directory() as folder:
        with open(os.path.join(folder, LOOP_STATE), encoding="utf-8") as fh:
            state = json.load(fh)
        path, _ = engine.load_checkpoint(folder, tag=DS_TAG, load_optimizer_states=True,
                                         load_lr_scheduler_states=True)
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint {DS_TAG!r} in {folder}")
    log.info("resumed from the checkpoint of step %d", state["global_step"])
    return int(state["global_step"])


def consolidated_state_dict(engine, model, zero_stage: int) -> dict[str, Any] | None:
    """The full GIPModel state dict in fp32 (on every rank; ZeRO-3 partitions gathered).

    Tied tensors (the MLM decoder shares the input embeddings) are cloned apart so that
    safetensors can store both names.
    """
    import torch

    def dump() -> dict[str, Any]:
        return {k: v.detach().to("cpu", torch.float32).clone().contiguous()
                for k, v in model.state_dict().items()}

    if zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            return dump()
    return dump()


def save_consolidated(engine, model, folder: str, rank: int, zero_stage: int) -> None:
    from safetensors.torch import save_file

    state = consolidated_state_dict(engine, model, zero_stage)  # collective under ZeRO-3
    if rank == 0:
        save_file(state, os.path.join(folder, CONSOLIDATED), metadata={"format": "pt"})
