"""The ``pretrain`` stage: guardrail instruction pretraining (GIP, GuardFormer 3.3, eq. 1) on Ray
Train + DeepSpeed.

Modules, from the math up:
    losses: MLM, CE, symmetric KL, ALICE++ and the weighted sum of eq. 1 (pure torch).
    model: ``GIPModel`` (encoder + classification head + tied MLM head, hidden-state
        perturbation, atomic Hugging Face export).
    collate / data: Parquet shards -> tokeniser actors -> rationale dropout, MLM masking,
        dynamic padding (Ray Data).
    plan: optimizer-step counts, equal on every rank.
    step: one micro-batch (forward passes and eq. 1).
    deepspeed_config / engine / safe_load: the DeepSpeed config, engine, resume (checkpoint
        files loaded without unpickling code) and consolidated weights.
    loop: the per-worker training loop (metrics, TensorBoard, checkpoints).
    config: ``PretrainConfig`` of ``guardray pretrain`` / ``jobs/pretrain.py``.
    run: `run_pretrain`, the driver (Ray Train ``TorchTrainer``, export, manifest).

Importing this package is cheap: the names below load their module on first use.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "PretrainConfig": "config",
    "run_pretrain": "run",
    "PretrainError": "run",
    "MODEL_DIR": "run",
    "resolve_log_dir": "run",
    "load_descriptions": "run",
    "GIPModel": "model",
    "GIPDataError": "data",
    "UnsafeCheckpointError": "safe_load",
})
