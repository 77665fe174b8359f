"""Configuration of the ``finetune`` job (``guardray finetune`` / ``jobs/finetune.py``).

Methods (GuardFormer 3.2, 3.3 and 5; UniGuard's TaskGuard / MultiTaskGuard):

| method      | start from                     | tuning (default)      | input (default) |
|-------------|--------------------------------|-----------------------|-----------------|
| policyguard | a base encoder (RoBERTa, ...)  | full (FFT)            | text            |
| guardformer | a GIP checkpoint (HF folder)   | classifier (CFT)      | instruction     |

``scope: per_policy`` trains one model per policy (PolicyGuard / TaskGuard);
``scope: multi_policy`` trains one model on all selected policies together
(MultiTaskGuard), which needs the instruction input so the model knows the policy.
Every (model, seed) pair is one Ray Tune trial; its checkpoint goes to
``{output_dir}/{policy or multi_name}/seed{seed}``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from guardray import schema as S
from guardray.config.base import StageConfig, StrictModel
from guardray.data.mix import MixRule
from guardray.metrics.threshold import Rule as ThresholdRule

Method = Literal["policyguard", "guardformer"]
Tuning = Literal["full", "classifier"]
InputFormat = Literal["text", "instruction"]

METHOD_DEFAULTS: dict[str, tuple[str, str]] = {
    # method: (tuning, input_format)
    "policyguard": ("full", "text"),
    "guardformer": ("classifier", "instruction"),
}


class ModelSection(StrictModel):
    """The model to start from.

    Attributes:
        base: a Hugging Face folder or hub id (a GIP checkpoint for GuardFormer),
            ``embedded:all-minilm-l6-v2`` (offline), or ``tiny:xlmr`` (a tiny random XLM-R
            built offline, for tests and smoke runs).
        max_length: token limit of an input (longer inputs are truncated).
        trust_remote_code: allow model code from the checkpoint (off: never run foreign code).
        head_modules: module-name prefixes that form the classification head, trained by CFT;
            None finds it (``classifier``, ``pre_classifier``, ``score``...).
    """

    base: str = "embedded:all-minilm-l6-v2"
    max_length: int = Field(default=256, ge=8, le=8192)
    trust_remote_code: bool = False
    head_modules: list[str] | None = None


class RephraseSection(StrictModel):
    """Rephrased copies of training rows, question <-> command (`guardray.data.rephrase`).

    Attributes:
        enabled: add one rephrased copy of each training row a rule applies to (both labels;
            validation and test rows are never rewritten).
        policies: only these policies' rows (None: every policy).
        seed: seeds the choice among a rule's variants.
    """

    enabled: bool = False
    policies: list[str] | None = None
    seed: int = 0


class DataSection(StrictModel):
    """Where the labelled rows come from.

    ``path`` is a shard folder written by the data stages (sample schema) or any JSONL / CSV /
    Parquet file; the column names default to the sample schema's. Rows whose split is
    ``train_split`` train, ``validation_split`` validate (early stopping, threshold); every
    other split (test) is never read. Without a split column, a deterministic
    ``validation_fraction`` of each policy's rows (by content hash) validates.

    Attributes:
        path: labelled rows (local or ``s3://``).
        validation_path: a separate validation file (then ``path`` is all training data).
        text_column, label_column, policy_column, split_column, rationale_column: columns.
        train_split, validation_split: split names.
        validation_fraction: used when the data has no split column.
        label_map: extra label names, e.g. ``{benign: safe}``.
        max_train_rows: cap per model (first rows after a seeded shuffle), for smoke runs.
        mix: the training mix: per-source weights and caps, matched on the rows' provenance
            (`guardray.data.mix.MixRule`; training rows only, first matching rule wins).
        mix_seed: seeds the mix's caps and fractional weights.
        rephrase: rephrased copies of training rows (before the mix, which then weighs them
            by their original's source).
    """

    path: str
    validation_path: str | None = None
    text_column: str = S.TEXT
    label_column: str = S.LABEL
    policy_column: str = S.POLICY_ID
    split_column: str = S.SPLIT
    rationale_column: str = S.RATIONALE
    train_split: str = "train"
    validation_split: str = "validation"
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    label_map: dict[str, Any] = Field(default_factory=dict)
    max_train_rows: int | None = Field(default=None, ge=2)
    mix: list[MixRule] = Field(default_factory=list)
    mix_seed: int = 0
    rephrase: RephraseSection = Field(default_factory=RephraseSection)


class TrainSection(StrictModel):
    """Optimisation and early stopping.

    Attributes:
        epochs: upper bound on passes over the data (the paper: PolicyGuard needs about 8,
            GuardFormer about 1).
        max_steps: stop after this many optimizer steps (None: epochs decide).
        batch_size: training examples per step (dynamic padding to the batch's longest).
        eval_batch_size: validation batch size.
        lr: AdamW learning rate (CFT usually wants a larger one than FFT).
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        warmup_ratio: fraction of steps with linear warm-up, then linear decay.
        max_grad_norm: gradient clipping.
        eval_every_steps: validate every N steps (None: at the end of each epoch).
        patience: stop after this many validations without an F1 gain above ``min_delta``.
        min_delta: smallest F1 gain that counts as an improvement.
        group_by_length: batch rows of similar token length together (mega-batches of 50
            batches sorted by length, batches in random order): much less padding when a few
            rows are long (`guardray.finetune.batches`).
        class_weights: ``balanced`` weights the loss by inverse class frequency.
        rationale_dropout: probability of leaving out a row's rationale in instruction inputs
            (1.0: never use rationales; validation never has them, as at inference).
        threshold_rule: how the decision threshold stored with the checkpoint is chosen on
            the validation rows (``max_f1``; ``max_f1_1se``, the cut nearest 0.5 within one
            bootstrap standard error of the best F1; or ``fixed`` at 0.5;
            `guardray.metrics.threshold`).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``bf16`` autocast on CUDA, else fp32.
        ema_decay: keep an exponential moving average of the weights with this decay per
            step, and validate, keep and save it instead of the raw weights (None: off;
            `guardray.finetune.loop`).
    """

    epochs: int = Field(default=8, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=16, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    eval_every_steps: int | None = Field(default=None, ge=1)
    patience: int = Field(default=2, ge=1)
    min_delta: float = Field(default=0.0, ge=0)
    group_by_length: bool = False
    class_weights: Literal["none", "balanced"] = "none"
    rationale_dropout: float = Field(default=1.0, ge=0, le=1)
    threshold_rule: ThresholdRule = "max_f1"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    ema_decay: float | None = Field(default=None, ge=0.0, lt=1.0)


class TrialsSection(StrictModel):
    """How the (policy x seed) runs share the cluster (Ray Tune trials).

    Attributes:
        seeds: one run per seed for every model.
        cpus_per_trial: logical CPUs a trial reserves (fractions allowed: on a 2-core machine
            0.5 lets Ray Data and other work proceed).
        gpus_per_trial: GPUs a trial reserves (fractions share a GPU).
        max_concurrent: at most this many trials at once (None: as resources allow).
        torch_threads: intra-op threads of a trial (None: ceil(cpus_per_trial)).
    """

    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    max_concurrent: int | None = Field(default=None, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v


class FinetuneConfig(StageConfig):
    """The fine-tuning job: one classifier per policy (or one for all), per seed, on Ray Tune.

    Attributes:
        method: ``policyguard`` or ``guardformer`` (sets the defaults of tuning and input).
        tuning: ``full`` (FFT) or ``classifier`` (CFT: only the head trains); None: method's.
        input_format: ``text`` (the prompt) or ``instruction`` (GuardFormer 3.3:
            ``{policy description}\\nQuery: {text}``); None: method's.
        scope: ``per_policy`` or ``multi_policy``.
        policies: policy YAML files or folders (descriptions for instruction inputs, ids).
        policy_ids: train only these policies (None: every loaded policy that has data).
        multi_name: folder name of the multi-policy model.
        model, data, train, trials: see their sections.
        output_dir: root of the checkpoints, summary and manifest (local or ``s3://``).
        overwrite: replace existing checkpoints (else an existing one is an error up front).
        ray: Ray connection.
        storage_options: S3 settings.
    """

    JOB_NAME: ClassVar[str] = "finetune"

    method: Method = "policyguard"
    tuning: Tuning | None = None
    input_format: InputFormat | None = None
    scope: Literal["per_policy", "multi_policy"] = "per_policy"
    policies: list[str] = Field(default_factory=lambda: ["configs/policies"], min_length=1)
    policy_ids: list[str] | None = None
    multi_name: str = Field(default="multi", pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    trials: TrialsSection = Field(default_factory=TrialsSection)
    output_dir: str = "outputs/finetune"
    overwrite: bool = False

    @property
    def resolved_tuning(self) -> str:
        return self.tuning or METHOD_DEFAULTS[self.method][0]

    @property
    def resolved_input_format(self) -> str:
        return self.input_format or METHOD_DEFAULTS[self.method][1]

    @model_validator(mode="after")
    def _multi_needs_instructions(self) -> "FinetuneConfig":
        if self.scope == "multi_policy" and self.resolved_input_format != "instruction":
            raise ValueError(
                "scope multi_policy trains one model for several policies: it needs "
                "input_format 'instruction' so each input names its policy (GuardFormer 3.3)")
        return self
