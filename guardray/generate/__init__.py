"""The ``generate`` stage: policy-driven synthetic data (GuardFormer 3.1, 3.3) on Ray Data.

Modules:
    config: ``GenerateConfig`` of ``guardray generate`` / ``jobs/generate.py``.
    seed: the policies' own examples as labelled seed rows.
    templates (+ ``templates/``): the prompt templates of each generation step.
    expand / steps / parse: requests -> LLM answers -> parsed rows with rationales, the
        self-reflection relabel step (pure parsing in `parse`).
    diversify: synthetic policies from the human ones (GuardFormer 3.3).
    rejects: the rows that could not be parsed, kept with why.
    stage: `run_generate`, task-by-task and resumable.
    dedup_step: the dedup stage run on what was generated (``{output_dir}/dedup``).

Importing this package is cheap: the names below load their module on first use.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "GenerateConfig": "config",
    "run_generate": "stage",
    "preflight": "stage",
    "seed_rows": "seed",
    "dedup_output_dir": "dedup_step",
})
