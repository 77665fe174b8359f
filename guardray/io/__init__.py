"""Shard, manifest and location I/O (local paths and ``s3://``).

Modules:
    uris: parse locations, get pyarrow/fsspec filesystems (S3 endpoint and credentials from
        ``storage_options`` or the AWS environment variables), atomic small-file writes.
    shards: validated, atomic Parquet shards of sample rows; deterministic names; reads.
    manifest: the ``manifest.json`` each stage writes (inputs, config, counts).
    ray_data: Ray Dataset adapter (imports Ray only when called).

Importing this package is cheap: the names below load their module on first use, so
``import guardray.io`` imports neither pyarrow nor Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "parse_uri": "uris",
    "join_uri": "uris",
    "get_filesystem": "uris",
    "get_fsspec_filesystem": "uris",
    "resolve_storage_options": "uris",
    "UriError": "uris",
    "shard_name": "shards",
    "write_shard": "shards",
    "read_shard": "shards",
    "read_shards": "shards",
    "list_shards": "shards",
    "shard_exists": "shards",
    "to_sample_table": "shards",
    "ShardSchemaError": "shards",
    "CorruptShardError": "shards",
    "NoShardsError": "shards",
    "write_manifest": "manifest",
    "read_manifest": "manifest",
    "MANIFEST_NAME": "manifest",
    "read_shards_dataset": "ray_data",
    "write_dataset_shards": "ray_data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'guardray.io' has no attribute {name!r}")
    return getattr(importlib.import_module(f"guardray.io.{module}"), name)
