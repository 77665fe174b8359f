"""Configuration of the end-to-end pipeline job (``guardray pipeline`` / ``jobs/pipeline.py``)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from guardray.config.base import JobConfig, StrictModel


class RayConfig(StrictModel):
    """How a job connects to Ray.

    Attributes:
        address: a cluster address (``auto``, ``ray://host:10001``); None starts a local
            instance unless ``RAY_ADDRESS`` is set (as it is under ``ray job submit``).
        num_cpus: logical CPUs of a local instance (None: Ray's default, the core count).
        dashboard: start the dashboard with a local instance.
    """

    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    dashboard: bool = False


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


class SplitConfig(StrictModel):
    """Fractions of rows assigned to validation and test (deterministically, by row id)."""

    validation: float = Field(default=0.1, ge=0, lt=1)
    test: float = Field(default=0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _sum_below_one(self) -> "SplitConfig":
        if self.validation + self.test >= 1:
            raise ValueError(
                f"validation + test must be below 1, got {self.validation} + {self.test}"
            )
        return self


class PipelineConfig(JobConfig):
    """The end-to-end job: policies -> data -> models -> merged guard -> evaluation.

    Attributes:
        policies: policy YAML files or folders.
        output_dir: root of every stage's output (local path or ``s3://bucket/prefix``).
        seed: global seed (splits, sampling).
        splits: validation/test fractions.
        models: generator and embedder.
        ray: Ray connection.
        storage_options: S3 settings (endpoint_url, key, secret...) for ``s3://`` outputs.
    """

    JOB_NAME: ClassVar[str] = "pipeline"

    policies: list[str] = Field(default_factory=lambda: ["configs/policies"], min_length=1)
    output_dir: str = "outputs/pipeline"
    seed: int = 0
    splits: SplitConfig = Field(default_factory=SplitConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    storage_options: dict[str, Any] = Field(default_factory=dict)
