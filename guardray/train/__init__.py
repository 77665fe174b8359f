"""Training loops: per-policy / multi-policy fine-tuning (PolicyGuard, GuardFormer CFT/FFT).

Modules:
    finetune_config: ``FinetuneConfig`` of the ``finetune`` job.
    finetune_data: reading the labelled rows, train/validation groups, model inputs.
    finetune_loop: the PyTorch loop (dynamic padding, early stopping on validation F1) and the
        atomic Hugging Face checkpoint save.
    finetune_ray: many (policy, seed) runs in parallel as Ray Tune trials.

Importing this package imports nothing heavy (no torch, transformers or Ray).
"""
