"""Real small or read-only filesystems for the tests of full disks and read-only outputs.

Tests run as root on the development machines, where ``chmod`` does not stop a write; a
tmpfs mount does: ``size=`` makes a disk that is really full, ``ro`` a filesystem that really
refuses writes (EROFS). Mounting needs root (CAP_SYS_ADMIN); elsewhere the tests that need it
are skipped with the reason. Every mount is removed when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(folder: Path, *, size_kb: int = 256, read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size_kb`` KiB on ``folder`` (created), read-only if asked; yields
    ``folder`` and unmounts it at the end. Skips the test when mounting is not possible."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = f"size={size_kb}k,mode=0777" + (",ro" if read_only else "")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the full-disk / read-only tests use one)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Write into ``folder`` until its filesystem is full (ENOSPC), then give back ``leave``
    bytes (the file ``filler`` keeps the rest)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    if leave:
        os.truncate(folder / "filler", max(0, (folder / "filler").stat().st_size - leave))
