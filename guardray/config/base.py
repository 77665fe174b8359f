"""Base classes for configuration models and the error they raise."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from guardray.errors import ConfigError

__all__ = ["ConfigError", "JobConfig", "StrictModel"]


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
