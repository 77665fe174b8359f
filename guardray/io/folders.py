"""Whole folders written atomically: a reader sees the old folder or the new one, never a mix.

- `atomic_folder`: write into a hidden sibling ``.NAME.tmp-XXXX`` and swap it into place
  (the old folder, if any, is renamed aside first and deleted after). Used for every model
  folder guardray writes: fine-tuned checkpoints, the GIP export, merged models.
- `build_once`: the same for a cache entry that several processes may build at once (the
  first finished wins, the others keep it).

Both are local-filesystem operations; S3 folders are uploaded from a finished local one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def check_output_dir(final: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Fail before any work if ``final`` cannot be (re)placed.

    Raises:
        NotADirectoryError: ``final`` (or a parent) exists and is a file.
        FileExistsError: ``final`` is a non-empty folder and ``overwrite`` is false.
    """
    final = Path(final)
    for parent in (final, *final.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"output {final}: {parent} exists and is a file")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {final} exists and is not empty; pass --overwrite (or set "
            "overwrite: true) to replace it")


def stale_siblings(final: Path) -> list[Path]:
    """Temporary folders a killed writer of ``final`` left behind (``.NAME.tmp-*``/``.old-*``)."""
    if not final.parent.is_dir():
        return []
    return sorted(p for p in final.parent.iterdir()
                  if p.name.startswith((f".{final.name}.tmp-", f".{final.name}.old-")))


@contextlib.contextmanager
def atomic_folder(final: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``final``; on success it replaces ``final``.

    On an exception the temporary folder is removed and ``final`` is untouched. Temporary
    folders that an earlier, killed writer of the same ``final`` left are removed first (one
    writer per output folder).

    Raises:
        FileExistsError / NotADirectoryError: see `check_output_dir`.
    """
    final = Path(final).absolute()
    check_output_dir(final, overwrite=overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_siblings(final):
        log.info("removing %s, left by an interrupted write of %s", stale, final)
        shutil.rmtree(stale, ignore_errors=True)
    tag = uuid.uuid4().hex[:8]
    tmp = final.parent / f".{final.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.parent / f".{final.name}.old-{tag}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    fsync_dir(final.parent)


def build_once(final: str | os.PathLike[str], build: Callable[[Path], None],
               done: str = "config.json") -> Path:
    """``final``, built by ``build(tmp_folder)`` unless ``final/done`` already exists.

    Safe when several processes build the same entry at once: each builds in its own
    temporary folder; the first rename wins and the others keep its result.
    """
    final = Path(final)
    if (final / done).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: keep theirs
            if not (final / done).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename durable; some filesystems cannot fsync folders, which is fine to skip."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
