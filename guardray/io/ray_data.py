"""Thin Ray Data adapter for shard folders (imports Ray only inside its functions).

- `read_shards_dataset`: a folder of shards (local or ``s3://``) as a ``ray.data.Dataset``.
  Shards are listed here (so temp files, markers and ``manifest.json`` are never read), every
  shard footer is checked against the sample schema up front (a corrupt or foreign file fails
  fast with its name, not deep inside a Ray task), and the S3 filesystem is built with the
  resolved endpoint and credentials so Ray workers need no AWS environment of their own.
  Read tasks pack at most ``block_bytes`` (8 MiB) of row groups: Ray 2.60's Parquet reader
  packs up to 128 MiB per task by default and ignores ``override_num_blocks``, which made a
  million-row shard set 7 blocks of up to 310k rows (few, slow tasks; GiBs in flight).
- `write_dataset_shards`: writes a Dataset as content-named shards from ``map_batches`` tasks
  (`guardray.io.shards.content_shard_name`): every shard is validated and atomic, and a retried
  task rewrites the same name instead of adding a duplicate. Stages that have a natural shard
  index (e.g. one output shard per input shard) call `guardray.io.shards.write_shard` with
  ``index=`` themselves instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

from guardray import schema
from guardray.io import shards, uris

logger = logging.getLogger(__name__)

BLOCK_BYTES = 8 * 2**20
BIN_PACKING_ENV = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"


def read_shards_dataset(
    dir_uri: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    allow_empty: bool = False,
    check_schema: bool = True,
    block_bytes: int = BLOCK_BYTES,
    **read_parquet_kwargs: Any,
):
    """Read a folder of sample shards as a Ray Dataset with the sample schema.

    Args:
        dir_uri: shard folder (local path, ``file://`` or ``s3://``). Local folders must be
            visible to every Ray node (one machine, or a shared filesystem).
        storage_options: S3 settings; missing ones come from the AWS environment variables of
            this process (see `guardray.io.uris`).
        allow_empty: return an empty Dataset (sample schema) for a folder with no shards
            instead of raising `guardray.io.shards.NoShardsError`.
        check_schema: read every shard's footer here first (one small read per shard).
        block_bytes: in-memory bytes of Parquet row groups packed into one read task (and so
            one block); an explicit ``RAY_DATA_PARQUET_BIN_PACKING_BYTES`` in the environment
            wins. Small blocks stream and spread over actors; Ray's 128 MiB default does not.
        **read_parquet_kwargs: passed to ``ray.data.read_parquet`` (e.g. ``override_num_blocks``,
            ``include_paths``). ``partitioning`` defaults to None: a folder named ``k=v`` in
            the path must not turn into a column.

    Returns:
        ``ray.data.Dataset`` whose schema is `guardray.schema.arrow_schema()`.

    Raises:
        NoShardsError, CorruptShardError, ShardSchemaError: naming the folder or the file.
        ValueError: ``block_bytes`` is not an int >= 1.
    """
    import ray

    check_block_bytes(block_bytes)
    paths = shards.list_shards(dir_uri, storage_options)
    if not paths:
        if allow_empty:
            return ray.data.from_arrow(schema.arrow_schema().empty_table())
        raise shards.NoShardsError(f"no shards in {uris.parse_uri(dir_uri).uri!r}; check the "
                                   "path, or pass allow_empty=True")
    if check_schema:
        for path in paths:
            shards.check_shard_schema(path, storage_options)
    filesystem, _ = uris.get_filesystem(dir_uri, storage_options)
    fs_paths = [uris.parse_uri(p).path for p in paths]
    read_parquet_kwargs.setdefault("partitioning", None)
    read_parquet_kwargs.setdefault("schema", schema.arrow_schema())
    logger.info("reading %d shard(s) from %s with Ray Data", len(paths), dir_uri)
    with parquet_read_task_bytes(block_bytes):  # Ray reads it when it plans the read: here
        return ray.data.read_parquet(fs_paths, filesystem=filesystem, **read_parquet_kwargs)


@contextlib.contextmanager
def shard_read_errors(paths: list[str], storage_options: Mapping[str, Any] | None = None):
    """Turn a Ray Data run that failed on an unreadable shard into a `CorruptShardError`
    naming the file.

    A footer check (`read_shards_dataset`) cannot see corrupt data pages: Parquet decodes
    them inside a Ray read task, which fails with a bare ``OSError: Couldn't deserialize
    thrift...`` and hundreds of lines of Ray traceback, naming no file. When a Dataset run
    inside this block fails with an ``OSError`` / Arrow error that is not already one of
    guardray's, each of ``paths`` is read page by page here (the failure path only) until
    the bad one is found. Other errors, or none found, propagate unchanged.

    Raises:
        CorruptShardError: naming the shard and row group, chained to the Ray error.
    """
    import pyarrow as pa

    from guardray.errors import GuardrayError

    try:
        yield
    except GuardrayError:
        raise
    except Exception as exc:
        cause: BaseException | None = exc
        while getattr(cause, "cause", None) is not None and cause.cause is not cause:
            cause = cause.cause  # RayTaskError keeps the task's exception here
        if not isinstance(cause, (OSError, pa.ArrowException)):
            raise
        for path in paths:
            try:
                shards.check_shard_data(path, storage_options)
            except shards.CorruptShardError as found:
                raise found from exc
        raise


def check_block_bytes(n: Any) -> None:
    """Raise ValueError unless ``n`` is an int >= 1 (a ``block_bytes`` argument)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"block_bytes must be an int >= 1, got {n!r}")


@contextlib.contextmanager
def parquet_read_task_bytes(n: int):
    """Set Ray's Parquet bin-packing size (bytes per read task) while a read is planned.

    An explicit ``RAY_DATA_PARQUET_BIN_PACKING_BYTES`` in the environment is left alone.
    """
    check_block_bytes(n)
    if BIN_PACKING_ENV in os.environ:
        yield
        return
    os.environ[BIN_PACKING_ENV] = str(n)
    try:
        yield
    finally:
        os.environ.pop(BIN_PACKING_ENV, None)


def write_dataset_shards(
    ds,
    dir_uri: str | os.PathLike[str],
    *,
    prefix: str = shards.DEFAULT_PREFIX,
    rows_per_shard: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write a Dataset of sample rows as validated, atomic, content-named shards.

    Each ``map_batches`` batch becomes one shard named from its rows' ids, so running the same
    pipeline again (or retrying a failed task) rewrites the same files. Runs the Dataset.

    Args:
        ds: a ``ray.data.Dataset`` with exactly the sample columns.
        dir_uri: destination folder.
        prefix: shard name prefix.
        rows_per_shard: batch size of the writing tasks (None: one shard per block).
        storage_options: S3 settings, resolved here and shipped to the tasks.

    Returns:
        The written shard locations, sorted.

    Raises:
        ShardSchemaError: a batch does not match the sample schema (raised through Ray).
    """
    uris.makedirs(dir_uri)
    options = uris.resolve_storage_options(dir_uri, storage_options)
    writer = functools.partial(
        _write_batch, dir_uri=uris.parse_uri(dir_uri).uri, prefix=prefix, storage_options=options
    )
    result = ds.map_batches(writer, batch_format="pyarrow", batch_size=rows_per_shard,
                            zero_copy_batch=True)
    written = sorted({row["path"] for row in result.take_all()})
    logger.info("wrote %d shard(s) to %s", len(written), dir_uri)
    return written


def _write_batch(batch, *, dir_uri: str, prefix: str, storage_options: dict[str, Any]):
    """``map_batches`` body: one batch -> one shard; returns ``{"path", "num_rows"}``."""
    import pyarrow as pa

    if batch.num_rows == 0:
        return pa.table({"path": pa.array([], pa.string()), "num_rows": pa.array([], pa.int64())})
    path = shards.write_shard(batch, dir_uri, prefix=prefix, if_exists="overwrite",
                              storage_options=storage_options)
    return pa.table({"path": [path], "num_rows": [batch.num_rows]})


def to_pandas_with_progress(ds, what: str, total: int | None, unit: str = "row"):
    """``ds.to_pandas()``, reporting rows as they arrive (`guardray.progress`).

    Args:
        ds: a Ray Dataset.
        what: names the work in the progress lines.
        total: rows expected (None: unknown).
        unit: name of a row.
    """
    import pandas as pd

    from guardray.progress import Progress

    parts = []
    with Progress(what, total, unit=unit) as progress:
        for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
            parts.append(batch)
            progress.update(len(batch))
    return pd.concat(parts, ignore_index=True) if parts else ds.limit(0).to_pandas()
