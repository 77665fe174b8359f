"""Configuration of the end-to-end pipeline job (``guardray pipeline`` / ``jobs/pipeline.py``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from guardray.config.base import SplitConfig, StageConfig, StrictModel


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
        generate: synthetic data and its dedup step (off: later stages train on the seed
            rows, the policies' own examples).
        pretrain: guardrail instruction pretraining (GIP).
        finetune: per-policy classifiers (GuardFormer fine-tunes the GIP checkpoint).
        evaluate: each fine-tuned classifier on its policy's test rows.
    """

    generate: StageSection = _stage("configs/generate.yaml")
    pretrain: StageSection = _stage("configs/pretrain.yaml")
    finetune: StageSection = _stage("configs/finetune.yaml")
    evaluate: StageSection = _stage("configs/evaluate.yaml")


class PipelineConfig(StageConfig):
    """The end-to-end job: policies -> data -> models -> merged guard -> evaluation.

    Attributes:
        policies: policy YAML files or folders.
        output_dir: root of every stage's output (local path or ``s3://bucket/prefix``).
        seed: global seed (splits, sampling).
        splits: validation/test fractions.
        models: generator and embedder.
        stages: the chained stages (generate, pretrain, finetune, evaluate).
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
