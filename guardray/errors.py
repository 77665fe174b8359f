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
- `StorageError`: an output cannot be written: the disk or quota is full, the filesystem is
  read-only, or permission is missing; the message names the path.

Built-in file errors (`FileNotFoundError`, `FileExistsError`, ...) count as expected too: they
name their path. So does an ``OSError`` whose errno says the storage refused the write
(`STORAGE_ERRNOS`: full disk, quota, read-only filesystem), where no code named the path.
"""

from __future__ import annotations

import errno
import logging
import os


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


class StorageError(GuardrayError, OSError):
    """An output cannot be written (full disk or quota, read-only filesystem, no permission);
    the message names the path. Raise it with `storage_error`."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


# Built-in errors that name a path and mean bad input, not a bug.
FILE_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
)

EXPECTED: tuple[type[BaseException], ...] = (GuardrayError, *FILE_ERRORS)

# errno values meaning "the storage refused this write": the fix is on the user's side.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                            errno.EPERM, errno.EFBIG})


def storage_error(exc: BaseException, path: str | os.PathLike[str]) -> StorageError | None:
    """A `StorageError` naming ``path`` when ``exc`` is an ``OSError`` of `STORAGE_ERRNOS`
    (``raise storage_error(exc, path) or exc``), else None."""
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return None
    what = exc.strerror or os.strerror(exc.errno)
    hint = {errno.ENOSPC: "free space or choose another output location",
            errno.EDQUOT: "free space or choose another output location",
            errno.EROFS: "choose an output location on a writable filesystem"}.get(
                exc.errno, "choose an output location you can write to")
    return StorageError(exc.errno, f"cannot write {os.fspath(path)}: {what}; {hint}")


def _is_ray_wrapper(exc: BaseException) -> bool:
    """A Ray exception that carries the one raised in a task (``RayTaskError(X)``, Ray Data's
    ``UserCodeException``): judged by the error inside, not by itself."""
    return type(exc).__module__.split(".")[0] == "ray"


def expected_error(exc: BaseException) -> BaseException | None:
    """The expected error ``exc`` is, or carries through Ray's wrappers (a task's error is in
    ``cause``, a Ray Data UDF's in ``__cause__``), else None.

    Expected: `EXPECTED`, or an ``OSError`` of `STORAGE_ERRNOS`. Only Ray's wrappers are
    looked through: an unexpected error raised ``from`` an expected one stays a bug.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not _is_ray_wrapper(current):
            storage = isinstance(current, OSError) and current.errno in STORAGE_ERRNOS
            return current if isinstance(current, EXPECTED) or storage else None
        cause = getattr(current, "cause", None)
        current = (cause if isinstance(cause, BaseException) and cause is not current
                   else current.__cause__)
    return None


def is_expected(exc: BaseException) -> bool:
    """True when ``exc`` is or carries an expected error (`expected_error`)."""
    return expected_error(exc) is not None


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message; for an error raised in a Ray task or actor, the
    message of the original error (Ray adds the remote traceback to its text, and Ray Data
    wraps a UDF's error in ``UserCodeException``: `expected_error` looks through both)."""
    inner = expected_error(exc)
    if inner is None:
        cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError keeps the original
        inner = cause if isinstance(cause, BaseException) and cause is not exc else exc
    text = str(inner).strip() or type(inner).__name__
    return text.splitlines()[0]


def exit_status(exc: BaseException) -> int:
    """2 for an invalid configuration, 1 for any other expected error."""
    return 2 if isinstance(expected_error(exc) or exc, ConfigError) else 1


def report(stage: str, exc: BaseException, log: logging.Logger) -> int:
    """Log ``exc`` as one line (its traceback only at debug level); return the exit status."""
    log.error("%s failed: %s", stage, one_line(exc))
    log.debug("traceback of the %s failure", stage, exc_info=exc)
    return exit_status(exc)
