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
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from guardray.errors import GuardrayError, storage_error
from guardray.io.uris import parse_uri

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


def check_output_location(uri: str | os.PathLike[str], field: str = "output_dir") -> None:
    """Fail before any work when a stage could not write its output to ``uri``.

    A local location is checked: no file on its path, and its nearest existing folder takes a
    small probe file (created, written, fsynced and removed at once; nothing is created when
    that fails). That catches a read-only filesystem, a missing permission and a disk already
    full, none of which shows until the first result is written otherwise. An ``s3://``
    location is not probed (an upload is its own check).

    Raises:
        NotADirectoryError: ``uri`` or one of its parents is a file (names ``field``).
        StorageError: the probe write failed (names ``field``, the folder and why).
    """
    loc = parse_uri(uri)
    if loc.is_s3:
        return
    final = Path(loc.path)
    try:
        check_output_dir(final, overwrite=True)
    except NotADirectoryError as exc:
        raise NotADirectoryError(f"{field}: {exc}") from None
    existing = next(p for p in (final, *final.parents) if p.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".guardray-write-probe-") as fh:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        mapped = storage_error(exc, existing)
        if mapped is None:
            raise
        raise type(mapped)(mapped.errno, f"{field}: {mapped}") from exc


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
        StorageError: the storage refused a write, in here or in the caller's block (full
            disk or quota, read-only filesystem, no permission); names ``final``.
    """
    final = Path(final).absolute()
    check_output_dir(final, overwrite=overwrite)
    tag = uuid.uuid4().hex[:8]
    tmp = final.parent / f".{final.name}.tmp-{tag}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in stale_siblings(final):
            log.info("removing %s, left by an interrupted write of %s", stale, final)
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        mapped = storage_error(exc, final)
        if mapped is None:
            raise
        raise mapped from exc
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        mapped = storage_error(exc, final) if not isinstance(exc, GuardrayError) else None
        if mapped is not None:
            raise mapped from exc
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
