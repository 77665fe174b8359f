"""Job configuration: one pydantic model per job, loaded from YAML plus ``key=value`` overrides.

This package is the only place in ``guardray`` that reads YAML. See `loader` for the rules.
"""

from guardray.config.base import (
    ConfigError,
    JobConfig,
    RayConfig,
    SplitConfig,
    StageConfig,
    StrictModel,
)
from guardray.config.loader import apply_overrides, load_config, load_yaml, parse_overrides

__all__ = [
    "ConfigError",
    "JobConfig",
    "RayConfig",
    "SplitConfig",
    "StageConfig",
    "StrictModel",
    "apply_overrides",
    "load_config",
    "load_yaml",
    "parse_overrides",
]
