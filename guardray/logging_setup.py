"""Logging configured once for the CLI and the job entrypoints (library code only logs)."""

from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_configured = False


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
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
        root.propagate = False
        _configured = True
