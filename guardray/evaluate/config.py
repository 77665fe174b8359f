"""Configuration of the ``evaluate`` job (``guardray evaluate`` / ``jobs/evaluate.py``).

An evaluation runs one model (a Hugging Face sequence classifier) or one LLM judge over one or
more labelled datasets and writes metrics, predictions and a report. The command line builds
this config from its flags; ``--config FILE`` starts from a YAML file, and ``--judge FILE``
reads a file whose ``judge:`` section describes the judge (``configs/judges/*.yaml``; those
files are ``job: evaluate`` configs holding only a judge, so every YAML validates as one).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from guardray import schema as S
from guardray.config.base import ConfigError, StageConfig, StrictModel
from guardray.llm.config import LLMConfig
from guardray.metrics.threshold import Rule as ThresholdRule


class DatasetConfig(StrictModel):
    """One labelled dataset (see `guardray.data.tables.DataSpec`).

    Attributes:
        path: JSONL/CSV/Parquet file or Parquet folder (local or ``s3://``); with
            ``benchmark``, a local export of that hub dataset.
        benchmark: a registered public benchmark (``toxicchat``, ``deepset``...); without
            ``path`` it is downloaded from the hub (needs the ``datasets`` package).
        name: display name in reports.
        text_column, label_column: columns of plain files.
        policy_column: column with per-row policy ids, if any.
        split: keep only rows of this split (files with a split column).
        split_column: that column.
        label_map: extra label names, e.g. ``{benign: safe, jailbreak: unsafe}``.
        limit: evaluate at most this many rows.
        format: file format when the suffix does not tell.
    """

    path: str | None = None
    benchmark: str | None = None
    name: str | None = None
    text_column: str = S.TEXT
    label_column: str = S.LABEL
    policy_column: str | None = S.POLICY_ID
    split: str | None = None
    split_column: str = S.SPLIT
    label_map: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1)
    format: Literal["jsonl", "json", "csv", "tsv", "parquet"] | None = None

    @model_validator(mode="after")
    def _source(self) -> "DatasetConfig":
        if not self.path and not self.benchmark:
            raise ValueError("a dataset needs a path or a benchmark")
        if self.benchmark:
            from guardray.data import BENCHMARKS

            if self.benchmark not in BENCHMARKS:
                raise ValueError(f"unknown benchmark {self.benchmark!r}; valid: "
                                 f"{', '.join(BENCHMARKS)}")
        return self

    def to_spec(self):
        """The `guardray.data.tables.DataSpec` of this dataset."""
        from guardray.data import DataSpec

        return DataSpec(path=self.path, benchmark=self.benchmark, name=self.name,
                        text_column=self.text_column, label_column=self.label_column,
                        policy_column=self.policy_column, split=self.split,
                        split_column=self.split_column, label_map=self.label_map or None,
                        limit=self.limit, format=self.format)


class ThresholdConfig(StrictModel):
    """How the decision threshold of a classifier is set.

    Attributes:
        rule: ``max_f1`` picks the F1-maximising threshold on ``validation_data`` (never on the
            evaluated data), ``max_f1_1se`` the cut nearest ``value`` whose F1 is within one
            bootstrap standard error of the best; ``fixed`` uses ``value``. Without
            validation data, a threshold stored with a guardray checkpoint (chosen on its
            validation split) is used, else ``value``.
        value: the fixed / fallback threshold (0.5 is the classifier's argmax).
    """

    rule: ThresholdRule = "max_f1"
    value: float = Field(default=0.5, ge=0.0, le=1.0)


class InferenceConfig(StrictModel):
    """Batch inference of a classifier on Ray Data.

    Attributes:
        batch_size: rows per forward pass.
        concurrency: model replicas (Ray actors).
        num_cpus: logical CPUs per replica.
        num_gpus: GPUs per replica (fractions share a GPU).
        max_length: token limit of an input.
        device: ``auto`` (CUDA when the replica has a GPU), ``cpu`` or ``cuda``.
        torch_threads: intra-op threads per replica (None: ceil(num_cpus)).
        unsafe_label: the model's label name meaning unsafe (None: ``unsafe``, ``injection``,
            ``toxic``... or label 1 of a two-label model).
        trust_remote_code: allow model code from the checkpoint.
    """

    batch_size: int = Field(default=32, ge=1)
    concurrency: int = Field(default=1, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)
    max_length: int = Field(default=512, ge=8)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1)
    unsafe_label: str | None = None
    trust_remote_code: bool = False


class JudgeConfig(StrictModel):
    """An LLM judge baseline (UniGuard appendix A.3).

    Attributes:
        name: display name in reports.
        template: ``safe_unsafe`` (the GPT template: answer 'Safe' or 'Unsafe') or
            ``llamaguard`` (the LlamaGuard categories/conversation template).
        llm: the generation backend (`guardray.llm.config.LLMConfig`).
        as_system: send the instruction part of the template as a system message (else the
            whole template is one user message, as in the paper).
    """

    name: str | None = None
    template: Literal["safe_unsafe", "llamaguard"] = "safe_unsafe"
    llm: LLMConfig = Field(default_factory=LLMConfig)
    as_system: bool = False

    @property
    def display_name(self) -> str:
        return self.name or f"{self.llm.model} ({self.template})"


class ReportConfig(StrictModel):
    """Report outputs.

    Attributes:
        enabled: write ``report.md`` and ``report.html``.
        plots: draw PNG plots (needs matplotlib).
    """

    enabled: bool = True
    plots: bool = True


class EvaluateConfig(StageConfig):
    """Evaluate a classifier or an LLM judge on labelled datasets.

    Attributes:
        model: classifier folder (HF format) or hub id.
        judge: an LLM judge instead of a model.
        name: display name of the model in reports (default: the folder name).
        data: datasets to evaluate on.
        validation_data: labelled data for choosing the threshold (never the evaluated data).
        policy: the policy the data is judged under (instruction inputs, judge templates);
            per-row ``policy_id`` columns take precedence.
        policies: policy YAML files or folders to find policies in.
        input_format: ``text`` or ``instruction``; None: the checkpoint's (guardray models
            record it), else ``text``.
        threshold, inference, report: see their sections.
        output_dir: where metrics, predictions and the report go (local or ``s3://``).
        overwrite: replace an earlier evaluation in ``output_dir`` (its metrics, dataset
            folders, report and manifest are removed first); without it such a folder is
            refused before anything runs.
        ray: Ray connection.
        storage_options: S3 settings.
    """

    JOB_NAME: ClassVar[str] = "evaluate"

    model: str | None = None
    judge: JudgeConfig | None = None
    name: str | None = None
    data: list[DatasetConfig] = Field(default_factory=list)
    validation_data: DatasetConfig | None = None
    policy: str | None = None
    policies: list[str] = Field(default_factory=lambda: ["configs/policies"])
    input_format: Literal["text", "instruction"] | None = None
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    output_dir: str = "outputs/evaluate"
    overwrite: bool = False

    @model_validator(mode="after")
    def _one_subject(self) -> "EvaluateConfig":
        if self.model and self.judge:
            raise ValueError("give either model or judge, not both")
        return self

    def check_runnable(self) -> None:
        """Checks that only a run needs (a judge-only file validates without them).

        Raises:
            ConfigError: no model or judge, or no data.
        """
        if not self.model and not self.judge:
            raise ConfigError("nothing to evaluate: give a model (--model DIR) or a judge "
                              "(--judge FILE)")
        if not self.data:
            raise ConfigError("no data to evaluate on: give --data FILE (or data: in the config)")

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.judge:
            return self.judge.display_name
        parts = [p for p in str(self.model).rstrip("/").split("/") if p]
        # Fine-tuning writes {policy}/seed{n}: "tax/seed0" says more than "seed0".
        if len(parts) >= 2 and re.fullmatch(r"seed\d+", parts[-1]):
            return "/".join(parts[-2:])
        return parts[-1] if parts else str(self.model)
