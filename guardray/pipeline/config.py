"""Configuration of the end-to-end pipeline job (``guardray pipeline`` / ``jobs/pipeline.py``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from guardray.config.base import SplitConfig, StageConfig, StrictModel
from guardray.dedup import DedupSettings
from guardray.ingest import GroupSplitSettings


class ModelsConfig(StrictModel):
    """Models the pipeline uses: ``embedded:<name>`` for the offline defaults, or a hub id/path.

    Attributes:
        generator: LLM that generates synthetic data.
        embedder: sentence-embedding model for near-duplicate removal.
        prepare: resolve (and convert, once) the models at the start of the run, so a missing
            package fails before any work is done.
    """

    generator: str = "embedded:smollm2-135m-instruct"
    embedder: str = "embedded:all-minilm-l6-v2"
    prepare: bool = True


class DisputeSettings(StrictModel):
    """Synthetic rows a model of the real rows disputes (`guardray.data.disputes`).

    Attributes:
        enabled: check the generated rows.
        confidence: how sure of the other label the model must be to flag a row.
        drop: leave flagged rows out of the training data (else they are only reported).
    """

    enabled: bool = True
    confidence: float = Field(default=0.9, gt=0.5, lt=1)
    drop: bool = True


class DataSection(StrictModel):
    """How the run's sources become its training data (`guardray.pipeline.data`).

    Attributes:
        dedup: the dedup stage's settings for the union of every source.
        groups: near-duplicate groups for the splits of the whole mix.
        disputes: the check of the generated rows.
    """

    dedup: DedupSettings = Field(default_factory=DedupSettings)
    groups: GroupSplitSettings = Field(default_factory=lambda: GroupSplitSettings(threshold=0.75))
    disputes: DisputeSettings = Field(default_factory=DisputeSettings)


class TargetSection(StrictModel):
    """The quality the report checks on the guarded policies (issue targets of the main job).

    Attributes:
        policies: policies the targets apply to.
        macro_f1: minimum macro-F1 on the cross-source test rows.
        over_judge: minimum macro-F1 gain over the LLM judge on the judged rows.
        fpr: maximum false-positive rate on the alarming-but-safe prompts.
    """

    policies: list[str] = Field(default_factory=lambda: ["safety", "injection"])
    macro_f1: float = Field(default=0.85, ge=0, le=1)
    over_judge: float = Field(default=0.20, ge=-1, le=1)
    fpr: float = Field(default=0.10, ge=0, le=1)


class EvaluationSection(StrictModel):
    """What the report measures beyond each model's test rows.

    Attributes:
        cross_source: also evaluate on the rows of held-out sources (``data/cross_source``):
            figures on data from sources training never saw.
        alarming_safe: folder of ``<policy>.jsonl`` prompts that sound alarming but are safe
            (the false-positive rate); None: skip.
        judge: an LLM-judge file (``configs/judges/``) compared with the guards; None: skip.
        judge_policies: the policies judged.
        judge_rows: cross-source rows per judged policy (a seeded sample, half unsafe where
            there are enough); the guard is scored on the same rows.
        targets: the figures the report checks.
    """

    cross_source: bool = True
    alarming_safe: str | None = "configs/data/alarming_safe"
    judge: str | None = "configs/judges/smollm2-safe-unsafe.yaml"
    judge_policies: list[str] = Field(default_factory=lambda: ["safety", "injection"])
    judge_rows: int = Field(default=60, ge=2)
    targets: TargetSection = Field(default_factory=TargetSection)


class StageSection(StrictModel):
    """One chained stage: its own job config file, plus overrides.

    The pipeline loads ``config`` with the stage's config class, applies ``overrides``
    (``key=value``, as on the command line), then sets what chains the stages together:
    input and output folders under the pipeline's ``output_dir``, policies, seed, splits,
    models, Ray connection and storage options (`guardray.pipeline.wiring`).

    Attributes:
        enabled: run the stage.
        config: the stage's YAML file.
        overrides: ``key=value`` changes to that file for this pipeline.
    """

    enabled: bool = True
    config: str
    overrides: list[str] = Field(default_factory=list)


def _stage(path: str, enabled: bool = True):
    return Field(default_factory=lambda: StageSection(config=path, enabled=enabled))


class StagesConfig(StrictModel):
    """The chained stages after the seed shards, in the order they run.

    Attributes:
        ingest: labelled prompts imported from files, the hub or PyPI packages (the embedded
            data pack by default).
        generate: synthetic data and its dedup step (off, with ingest off too: later stages
            train on the seed rows, the policies' own examples).
        pretrain: guardrail instruction pretraining (GIP).
        finetune: per-policy classifiers (GuardFormer fine-tunes the GIP checkpoint).
        merge: the merge search (``guardray search``): UniGuard, one classifier for every
            policy, merged from the fine-tuned TaskGuards.
        evaluate: each fine-tuned classifier, and UniGuard, on their policies' test sets.
    """

    ingest: StageSection = _stage("configs/ingest.yaml")
    generate: StageSection = _stage("configs/generate.yaml")
    pretrain: StageSection = _stage("configs/pretrain.yaml")
    finetune: StageSection = _stage("configs/finetune.yaml")
    merge: StageSection = _stage("configs/search.yaml")
    evaluate: StageSection = _stage("configs/evaluate.yaml")


class PipelineConfig(StageConfig):
    """The end-to-end job: policies -> data -> models -> merged guard -> evaluation.

    Attributes:
        policies: policy YAML files or folders.
        output_dir: root of every stage's output (local path or ``s3://bucket/prefix``).
        seed: global seed (splits, sampling).
        splits: validation/test fractions.
        models: generator and embedder.
        stages: the chained stages (ingest, generate, pretrain, finetune, merge, evaluate).
        data: how the sources become one training set (dedup, group splits, disputes).
        evaluation: the report's extra test sets, the LLM-judge comparison and targets.
        ray: Ray connection.
        storage_options: S3 settings (endpoint_url, key, secret...) for ``s3://`` outputs.
    """

    JOB_NAME: ClassVar[str] = "pipeline"

    policies: list[str] = Field(default_factory=lambda: ["configs/policies"], min_length=1)
    output_dir: str = "outputs/pipeline"
    seed: int = 0
    splits: SplitConfig = Field(default_factory=SplitConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    data: DataSection = Field(default_factory=DataSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
