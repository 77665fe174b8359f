"""The errors every stage raises for bad input or a failed run, and how a command ends on them.

Every expected failure derives from `GuardrayError`; its message is one line that names the
file, field, shard, row or model at fault and, where there is one, the fix. Each command ends
on one of them the same way, whether it was started as ``guardray <stage>`` or as
``python jobs/<stage>.py`` under ``ray job submit`` (`exit_status`): the line on stderr and
exit status 1, or 2 for an invalid configuration or command line (`ConfigError`, as argparse
does). Anything else is a bug and keeps its traceback.

Kinds:

- `ConfigError`: a config file, field or override is invalid.
- `DataError`: input data is unreadable or invalid (shards, labelled files, rows, labels).
- `ModelError`: a model folder is missing, not a model, or not loadable safely.
- `RunError`: a run (Ray Train, Tune, a judge) failed after it started.
- `MissingDependencyError`: an optional package is missing; the message names the install.

Built-in file errors (`FileNotFoundError`, `FileExistsError`, ...) count as expected too: they
name their path.
"""

from __future__ import annotations

import logging


class GuardrayError(Exception):
    """Base of every expected failure of a guardray stage (see the module docstring)."""


class ConfigError(GuardrayError, ValueError):
    """A configuration file or override is invalid; the message names the file, field and
    problem (re-exported by `guardray.config`)."""


class DataError(GuardrayError, ValueError):
    """Input data is unreadable or invalid; the message names the file, shard or row."""


class ModelError(GuardrayError, ValueError):
    """A model folder or id cannot be used; the message names it and why."""


class RunError(GuardrayError, RuntimeError):
    """A run failed after it started (the message carries the underlying error)."""


class MissingDependencyError(GuardrayError, ImportError):
    """An optional dependency is not installed; the message gives the install command."""


# Built-in errors that name a path and mean bad input, not a bug.
FILE_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
)

EXPECTED: tuple[type[BaseException], ...] = (GuardrayError, *FILE_ERRORS)


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message; for an error raised in a Ray task or actor, the
    message of the original error (Ray adds the remote traceback to its text)."""
    cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError keeps the original
    if isinstance(cause, BaseException) and cause is not exc:
        exc = cause
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def exit_status(exc: BaseException) -> int:
    """2 for an invalid configuration, 1 for any other expected error."""
    return 2 if isinstance(exc, ConfigError) else 1


def report(stage: str, exc: BaseException, log: logging.Logger) -> int:
    """Log ``exc`` as one line (its traceback only at debug level); return the exit status."""
    log.error("%s failed: %s", stage, one_line(exc))
    log.debug("traceback of the %s failure", stage, exc_info=exc)
    return exit_status(exc)
