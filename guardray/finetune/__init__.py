"""The ``finetune`` stage: guard classifiers per policy or for all (PolicyGuard, TaskGuard,
MultiTaskGuard; GuardFormer CFT/FFT), one Ray Tune trial per (model, seed).

Modules:
    config: ``FinetuneConfig`` of ``guardray finetune`` / ``jobs/finetune.py``.
    data: reading the labelled rows, train/validation groups, model inputs.
    loop: the PyTorch loop (dynamic padding, early stopping on validation F1).
    run: `run_finetune`, many (policy, seed) runs in parallel as Ray Tune trials.

Checkpoints are written with `guardray.modeling.checkpoint`. Importing this package imports
nothing heavy (no torch, transformers or Ray).
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "FinetuneConfig": "config",
    "run_finetune": "run",
    "finetune_one": "run",
    "checkpoint_dir": "run",
    "summary_markdown": "run",
    "FinetuneError": "run",
    "FinetuneDataError": "data",
})
