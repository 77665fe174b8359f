"""The stages of the end-to-end pipeline, in order, and which of them exist yet.

The pipeline job runs the stages that are implemented and reports the others as not yet
available, so its output never pretends a stage ran. A stage lands by implementing its
runner in ``jobs/pipeline.py`` and flipping ``available`` here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    available: bool


STAGES: tuple[Stage, ...] = (
    Stage("policies", "load and validate the policy YAML files", True),
    Stage("seed", "policy example prompts -> labelled seed shards (Parquet) on Ray Data", True),
    Stage("generate", "LLM synthetic prompts, rationales, labels, self-reflection", False),
    Stage("dedup", "exact and semantic near-duplicate removal", False),
    Stage("pretrain", "guardrail instruction pretraining (MLM + ALICE++ + CE)", False),
    Stage("finetune", "per-policy PolicyGuard / GuardFormer fine-tuning", False),
    Stage("merge", "merge search (Thompson sampling) over merge recipes", False),
    Stage("evaluate", "metrics and reports of the merged guard", False),
)
