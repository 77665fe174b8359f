"""Shard folders as Ray Datasets (local and S3), and Dataset -> shards. Uses `ray_session`."""

from __future__ import annotations

import os

import pytest

from guardray import schema
from guardray.io import shards
from guardray.io.ray_data import read_shards_dataset, write_dataset_shards


def _by_id(rows):
    return sorted(rows, key=lambda r: r[schema.ID])


def test_read_local_folder_as_dataset(ray_session, tmp_path, row_factory):
    folder = tmp_path / "run=3"  # a hive-like folder name must not become a column
    expected = []
    for index in range(3):
        batch = row_factory(4, start=10 * index)
        shards.write_shard(batch, folder, index=index)
        expected += batch
    (folder / ".part-00003.parquet.tmp-x").write_bytes(b"half written")
    (folder / "manifest.json").write_text("{}")
    ds = read_shards_dataset(folder).materialize()  # one execution; the checks below reuse it
    assert ds.count() == 12
    assert ds.schema().base_schema == schema.arrow_schema()
    assert _by_id(ds.take_all()) == _by_id(expected)


def test_read_s3_folder_as_dataset(ray_session, s3_bucket, row_factory):
    folder = f"s3://{s3_bucket}/shards"
    expected = row_factory(5) + row_factory(3, start=50)
    shards.write_shard(expected[:5], folder, index=0)
    shards.write_shard(expected[5:], folder, index=1)
    rows = read_shards_dataset(folder).take_all()
    assert len(rows) == 8
    assert _by_id(rows) == _by_id(expected)
    assert sum(r[schema.LABEL] for r in rows) == sum(r[schema.LABEL] for r in expected) == 3


def test_read_tasks_follow_block_bytes(ray_session, tmp_path, row_factory, monkeypatch):
    """Ray 2.60 packs row groups into 128 MiB read tasks unless told: blocks follow
    ``block_bytes``; an explicit environment setting wins; bad values are refused."""
    from guardray.io.ray_data import BIN_PACKING_ENV

    for index in range(3):
        shards.write_shard(row_factory(4, start=10 * index), tmp_path, index=index)
    assert read_shards_dataset(tmp_path).materialize().num_blocks() == 1  # 8 MiB: all 3
    small = read_shards_dataset(tmp_path, block_bytes=1).materialize()
    assert small.num_blocks() == 3 and small.count() == 12  # one shard per block
    assert BIN_PACKING_ENV not in os.environ  # set only while Ray plans the read
    monkeypatch.setenv(BIN_PACKING_ENV, str(2**30))
    assert read_shards_dataset(tmp_path, block_bytes=1).materialize().num_blocks() == 1
    assert os.environ[BIN_PACKING_ENV] == str(2**30)
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="block_bytes must be an int >= 1"):
            read_shards_dataset(tmp_path, block_bytes=bad)


def test_corrupt_shard_fails_before_ray_reads(ray_session, tmp_path, rows):
    shards.write_shard(rows, tmp_path, index=0)
    (tmp_path / "part-00001.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(shards.CorruptShardError, match=r"part-00001\.parquet"):
        read_shards_dataset(tmp_path)


def test_empty_folder(ray_session, tmp_path):
    with pytest.raises(shards.NoShardsError):
        read_shards_dataset(tmp_path)
    assert read_shards_dataset(tmp_path, allow_empty=True).count() == 0


def test_write_dataset_shards_round_trip(ray_session, tmp_path, row_factory):
    import ray

    expected = row_factory(9)
    ds = ray.data.from_items(expected, override_num_blocks=3)
    written = write_dataset_shards(ds, tmp_path / "out", rows_per_shard=4)
    assert written == shards.list_shards(tmp_path / "out")
    assert all(os.path.basename(p).startswith("part-") for p in written)
    assert _by_id(shards.read_shards(tmp_path / "out").to_pylist()) == _by_id(expected)
    again = write_dataset_shards(ds, tmp_path / "out", rows_per_shard=4)
    assert again == written, "same rows must give the same shard names (no duplicates)"
    assert shards.read_shards(tmp_path / "out").num_rows == 9


def test_write_dataset_shards_rejects_bad_rows(ray_session, tmp_path, rows):
    import ray

    ds = ray.data.from_items([dict(r, label=5) for r in rows])
    with pytest.raises(Exception, match="'label' has invalid value"):
        write_dataset_shards(ds, tmp_path / "out")
    assert shards.list_shards(tmp_path / "out") == []
