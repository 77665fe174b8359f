"""Shard and manifest I/O against a real S3-compatible HTTP server (moto, see conftest)."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from guardray import schema
from guardray.io import manifest, shards, uris
from guardray.io.shards import CorruptShardError, NoShardsError, ShardSchemaError


def _keys(client, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def test_endpoint_from_env_vars(s3_bucket, s3_server):
    options = uris.resolve_storage_options(f"s3://{s3_bucket}/x")
    assert options["endpoint_url"] == s3_server
    assert options["key"] and options["secret"]
    filesystem, path = uris.get_filesystem(f"s3://{s3_bucket}/x")
    assert type(filesystem).__name__ == "S3FileSystem" and path == f"{s3_bucket}/x"


def test_generic_endpoint_var_and_explicit_options(s3_bucket, s3_server, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    uris.write_text_atomic(f"s3://{s3_bucket}/a.txt", "via AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    explicit = {"endpoint_url": s3_server}
    assert uris.read_text(f"s3://{s3_bucket}/a.txt", explicit) == "via AWS_ENDPOINT_URL"


def test_round_trip_on_s3(s3_bucket, s3_client, rows, row_factory):
    folder = f"s3://{s3_bucket}/run-1/sdg"
    first = shards.write_shard(rows, folder, index=0)
    second = shards.write_shard(row_factory(4, start=100), folder, index=1)
    assert first == f"{folder}/part-00000.parquet" and second == f"{folder}/part-00001.parquet"
    assert _keys(s3_client, s3_bucket) == [
        "run-1/sdg/part-00000.parquet",
        "run-1/sdg/part-00001.parquet",
    ]
    assert shards.list_shards(folder) == [first, second]
    table = shards.read_shards(folder)
    assert table.schema == schema.arrow_schema()
    assert table.to_pylist() == rows + row_factory(4, start=100)
    assert shards.shard_exists(folder, 1) and not shards.shard_exists(folder, 2)


def test_shard_written_to_s3_is_plain_parquet(s3_bucket, s3_client, rows):
    shards.write_shard(rows, f"s3://{s3_bucket}/d", index=0)
    body = s3_client.get_object(Bucket=s3_bucket, Key="d/part-00000.parquet")["Body"].read()
    fsspec_fs, path = uris.get_fsspec_filesystem(f"s3://{s3_bucket}/d/part-00000.parquet")
    with fsspec_fs.open(path, "rb") as handle:
        assert handle.read() == body
    assert pq.read_table(io.BytesIO(body)).to_pylist() == rows


def test_failed_write_on_s3_sends_nothing_and_keeps_existing(s3_bucket, s3_client, rows):
    folder = f"s3://{s3_bucket}/d"
    shards.write_shard(rows, folder, index=0)

    def rows_then_crash():
        yield from rows[:2]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        shards.write_shard(rows_then_crash(), folder, index=0, if_exists="overwrite")
    with pytest.raises(ShardSchemaError, match="'split'"):
        shards.write_shard([dict(r, split="holdout") for r in rows], folder, index=1)
    assert _keys(s3_client, s3_bucket) == ["d/part-00000.parquet"]
    assert shards.read_shards(folder).to_pylist() == rows


def test_temp_objects_are_ignored_on_s3(s3_bucket, s3_client, rows):
    shards.write_shard(rows, f"s3://{s3_bucket}/d", index=0)
    s3_client.put_object(Bucket=s3_bucket, Key="d/.part-00001.parquet.tmp-x", Body=b"partial")
    s3_client.put_object(Bucket=s3_bucket, Key="d/_SUCCESS", Body=b"")
    s3_client.put_object(Bucket=s3_bucket, Key="d/nested/part-00000.parquet", Body=b"x")
    assert [p.rsplit("/", 1)[1] for p in shards.list_shards(f"s3://{s3_bucket}/d")] == [
        "part-00000.parquet"
    ]


def test_corrupt_shard_on_s3_names_the_object(s3_bucket, s3_client, rows):
    shards.write_shard(rows, f"s3://{s3_bucket}/d", index=0)
    s3_client.put_object(Bucket=s3_bucket, Key="d/part-00001.parquet", Body=b"PAR1 truncated")
    with pytest.raises(CorruptShardError, match=f"s3://{s3_bucket}/d/part-00001.parquet"):
        shards.read_shards(f"s3://{s3_bucket}/d")


def test_empty_prefix_on_s3(s3_bucket):
    with pytest.raises(NoShardsError, match=f"s3://{s3_bucket}/nothing"):
        shards.read_shards(f"s3://{s3_bucket}/nothing")
    assert shards.read_shards(f"s3://{s3_bucket}/nothing", allow_empty=True).num_rows == 0


def test_manifest_on_s3(s3_bucket, s3_client):
    folder = f"s3://{s3_bucket}/stage"
    manifest.write_manifest(folder, "dedup", inputs=["s3://in"], config={"k": 1},
                            counts={"in": 3, "out": 2, "dropped": {"exact_duplicate": 1}})
    assert _keys(s3_client, s3_bucket) == ["stage/manifest.json"]
    data = manifest.read_manifest(folder)
    assert data["counts"] == {"in": 3, "out": 2, "dropped": {"exact_duplicate": 1}}
    assert data["stage"] == "dedup" and data["config"] == {"k": 1}


def test_missing_bucket_is_an_error_naming_it(s3_bucket, rows):
    with pytest.raises(OSError, match="no-such-bucket-xyz"):
        shards.write_shard(rows, "s3://no-such-bucket-xyz/d", index=0)


def test_a_located_folder_carries_its_settings_and_shares_one_filesystem(s3_bucket, rows,
                                                                          monkeypatch):
    """`locate` resolves the environment once: children keep the binding after the variables
    are gone, and every read and write goes through one cached filesystem."""
    from guardray.io import shards, uris

    out = uris.locate(f"s3://{s3_bucket}/run")
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    target = out.child("state", "x.json")
    assert target.bound and str(target) == f"s3://{s3_bucket}/run/state/x.json"
    assert uris.join_uri(out, "a") == out.child("a")  # a Location stays a Location
    assert uris.join_uri(str(out), "a") == f"s3://{s3_bucket}/run/a"
    uris.write_json_atomic(target, {"k": 1})
    assert uris.read_json(target) == {"k": 1}
    shards.write_shard(rows, out, index=0)
    listed = [str(p) for p in shards.list_shards(out)]
    assert listed == [f"s3://{s3_bucket}/run/part-00000.parquet"]
    assert shards.read_shards(out).num_rows == len(rows)
    assert uris.get_filesystem(target)[0] is uris.get_filesystem(out)[0]
