"""Which config class a YAML file is for, so any file under ``configs/`` can be validated.

- files in a ``policies`` folder are policies;
- files with a top-level ``merge_method`` are merge recipes (MergeKit's schema);
- files with a top-level ``job: NAME`` are that job's config (see `JOB_CONFIGS`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from guardray.config.base import ConfigError
from guardray.config.loader import load_config, load_yaml

# job name -> "module:Class" of its pydantic config (imported lazily). Stages add theirs.
JOB_CONFIGS: dict[str, str] = {
    "pipeline": "guardray.pipeline.config:PipelineConfig",
    "generate": "guardray.synth.config:GenerateConfig",
    "dedup": "guardray.dedup.config:DedupConfig",
    "pretrain": "guardray.train.gip_config:PretrainConfig",
    "finetune": "guardray.train.finetune_config:FinetuneConfig",
    "evaluate": "guardray.eval.config:EvaluateConfig",
}


def config_class(job: str) -> type:
    """The config class of ``job``; the error lists the known jobs."""
    if job not in JOB_CONFIGS:
        raise ConfigError(f"unknown job {job!r}; valid jobs: {', '.join(sorted(JOB_CONFIGS))}")
    module, _, name = JOB_CONFIGS[job].partition(":")
    return getattr(importlib.import_module(module), name)


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
        from guardray.merge.config import load_merge_config

        return load_merge_config(path, overrides)
    if "job" in data:
        return load_config(config_class(str(data["job"])), path, overrides, data=data)
    raise ConfigError(
        f"{path}: cannot tell what this config is for: add a top-level 'job:' key "
        f"({', '.join(sorted(JOB_CONFIGS))}), or 'merge_method:' for a merge recipe"
    )
