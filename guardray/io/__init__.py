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

from guardray._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
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
})
