"""Model folders on shared storage (``s3://``), copied once per node into guardray's cache.

On a cluster, stages hand models over through the storage path: the pretraining stage
exports ``s3://.../pretrain/model``, fine-tuning trials on any node load it. transformers
loads only local folders (or hub ids), so each process that needs such a model calls
`localize`, which copies the folder's files into ``$GUARDRAY_CACHE/remote/`` on its own node.

The cache entry is named by the URI and a fingerprint of the folder's listing (each file's
name, size and modification time), so a folder rewritten in place (a rerun with
``--overwrite``) is fetched again, and an unchanged one is not. Copies are made in a
temporary folder and renamed into place (`guardray.io.folders.build_once`), so concurrent
trials on one node share one copy and a copy cut short is never used.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardray.errors import ModelError
from guardray.io import uris

log = logging.getLogger(__name__)


def is_remote(ref: str) -> bool:
    """True for a reference on shared storage (``s3://bucket/key``)."""
    return ref.startswith("s3://")


def _listing(uri: str, storage_options: Mapping[str, Any] | None) -> list[tuple[str, int, str]]:
    """``(relative name, size, modified)`` of every file under folder ``uri``, recursively."""
    from pyarrow import fs as pafs

    filesystem, path = uris.get_filesystem(uri, storage_options)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    out = []
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(path):].lstrip("/")
        if any(uris.is_hidden_name(part) for part in rel.split("/")):
            continue  # temp files of a writer, markers
        out.append((rel, int(info.size or 0), str(info.mtime_ns or "")))
    return sorted(out)


def cache_entry(uri: str, listing: list[tuple[str, int, str]]) -> Path:
    """Where `localize` keeps the copy of ``uri`` with this ``listing``."""
    from guardray.modeling.offline import cache_dir

    digest = hashlib.sha256(repr((uri, listing)).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", uris.parse_uri(uri).name) or "model"
    return cache_dir() / "remote" / f"{name}-{digest}"


def localize(uri: str, storage_options: Mapping[str, Any] | None = None, *,
             field: str = "model") -> Path:
    """A local copy of the model folder at ``uri`` (``s3://``), fetched once per node.

    Args:
        uri: the folder on shared storage.
        storage_options: S3 settings (`guardray.io.uris.resolve_storage_options`); the
            standard AWS variables when None.
        field: the config field that named it (starts the error message).

    Returns:
        The local folder, with the same files and sub-folders.

    Raises:
        ModelError: no files under ``uri``.
    """
    from guardray.io.folders import build_once

    listing = _listing(uri, storage_options)
    if not listing:
        raise ModelError(f"{field}: {uri}: no such folder (no files under it)")
    final = cache_entry(uri, listing)
    if (final / ".complete").is_file():
        return final

    def fetch(tmp: Path) -> None:
        from pyarrow import fs as pafs

        log.info("copying %s (%d files, %.1f MB) to %s", uri, len(listing),
                 sum(size for _, size, _ in listing) / 1e6, final)
        filesystem, path = uris.get_filesystem(uri, storage_options)
        local = pafs.LocalFileSystem()
        for rel, _, _ in listing:  # streamed file by file, never whole in memory
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(f"{path}/{rel}", str(tmp / rel), source_filesystem=filesystem,
                            destination_filesystem=local)
        (tmp / ".complete").write_text(uri + "\n", encoding="utf-8")

    return build_once(final, fetch, done=".complete")


def local_model(ref: str, storage_options: Mapping[str, Any] | None = None, *,
                field: str = "model") -> str:
    """``ref`` itself, or for a remote folder its local copy (`localize`)."""
    if is_remote(ref):
        return str(localize(ref, storage_options, field=field))
    return ref


__all__ = ["cache_entry", "is_remote", "local_model", "localize"]
