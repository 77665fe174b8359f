"""Errors of the LLM backends (importing this module imports nothing heavy)."""

from __future__ import annotations

from guardray.config.base import ConfigError
from guardray.errors import RunError


class LLMBackendError(RunError):
    """A backend failed or cannot run (an endpoint's error answer, malformed messages, ...);
    the message says what happened and, where it can, what to change."""


class LLMBackendConfigError(LLMBackendError, ConfigError):
    """A backend cannot run as configured (no GPU for vLLM, a missing API key variable).

    Also a `guardray.config.ConfigError`, so the CLI reports it as a configuration problem
    (exit status 2, no traceback); the message names the config keys and the valid options.
    """
