"""Logging configured once for the CLI and the job entrypoints (library code only logs)."""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_configured = False


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to ``sys.stderr`` as it is when a record is emitted, not
    as it was at setup: a replaced stderr (a test's capture, a redirect) gets the lines, and a
    closed one never turns an error message into a "--- Logging error ---" dump."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it: ignored
        pass


def setup_logging(level: int | str | None = None) -> None:
    """Configure the ``guardray`` logger once; later calls only change the level.

    Args:
        level: a logging level; default from ``GUARDRAY_LOG_LEVEL`` or INFO.
    """
    global _configured
    if level is None:
        level = os.environ.get("GUARDRAY_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger("guardray")
    root.setLevel(level)
    if not _configured:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
        root.propagate = False
        _configured = True
