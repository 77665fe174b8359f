"""Base classes of configuration models, the sections every stage shares, and their error."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardray.errors import ConfigError

__all__ = ["ConfigError", "JobConfig", "RayConfig", "SplitConfig", "StageConfig", "StrictModel"]


class StrictModel(BaseModel):
    """A config section: unknown keys are rejected, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class JobConfig(StrictModel):
    """Base of every job's config. ``job`` names the job the file is for (optional in YAML).

    Subclasses set ``JOB_NAME``; a YAML file whose ``job:`` key names another job is rejected,
    so a pretraining config passed to ``guardray merge`` fails loudly instead of half-working.
    """

    JOB_NAME: ClassVar[str] = ""
    job: str | None = None

    def model_post_init(self, __context) -> None:  # noqa: D401 - pydantic hook
        if self.job is not None and self.JOB_NAME and self.job != self.JOB_NAME:
            raise ConfigError(
                f"this file is a {self.job!r} config, but it was given to the {self.JOB_NAME!r} job"
            )


class RayConfig(StrictModel):
    """How a job connects to Ray.

    Attributes:
        address: a cluster address (``auto``, ``ray://host:10001``); None starts a local
            instance unless ``RAY_ADDRESS`` is set (as it is under ``ray job submit``).
        num_cpus: logical CPUs of a local instance (None: Ray's default, the core count).
        dashboard: start the dashboard with a local instance.
        shared_filesystem: on a cluster of several nodes, local paths (``output_dir``...) are
            refused, since workers on other nodes cannot read a driver's disk; set true when
            every node mounts the same filesystem at the same path (NFS, a one-machine test
            cluster).
    """

    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    dashboard: bool = False
    shared_filesystem: bool = False


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


class StageConfig(JobConfig):
    """Base of the config of a job that writes a folder and runs on Ray.

    Subclasses give ``output_dir`` its default (``outputs/<job>``).

    Attributes:
        output_dir: where the job writes (local path or ``s3://bucket/prefix``).
        ray: Ray connection.
        storage_options: S3 settings (endpoint_url, key, secret...) for ``s3://`` locations;
            empty: the standard AWS environment variables.
    """

    output_dir: str = "outputs"
    ray: RayConfig = Field(default_factory=RayConfig)
    storage_options: dict[str, Any] = Field(default_factory=dict)
