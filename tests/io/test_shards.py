"""Local shard I/O: validation, round trip, names, atomicity, corrupt files, empty folders."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guardray import schema
from guardray.io import shards, uris
from guardray.io.shards import (
    CorruptShardError,
    NoShardsError,
    ShardSchemaError,
    list_shards,
    read_shard,
    read_shards,
    shard_exists,
    shard_name,
    to_sample_table,
    write_shard,
)


def test_import_guardray_io_is_light():
    code = (
        "import sys, guardray, guardray.io; "
        "bad = [m for m in ('ray', 'pyarrow', 'deepspeed', 'vllm', 'torch') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout


def test_round_trip_preserves_schema_and_values(tmp_path, rows):
    uri = write_shard(rows, tmp_path / "out", index=0)
    assert uri == str(tmp_path / "out" / "part-00000.parquet")
    table = read_shards(tmp_path / "out")
    assert table.schema == schema.arrow_schema()
    assert table.to_pylist() == rows


def test_file_uri_and_plain_path_name_the_same_folder(tmp_path, rows):
    write_shard(rows, f"file://{tmp_path}", index=1)
    assert list_shards(tmp_path) == [str(tmp_path / "part-00001.parquet")]


def test_accepts_columns_tables_and_pandas(tmp_path, rows):
    columns = {name: [r[name] for r in rows] for name in reversed(schema.COLUMNS)}
    table64 = pa.table(columns)  # labels inferred as int64, columns in reverse order
    assert table64.schema.field(schema.LABEL).type == pa.int64()
    write_shard(columns, tmp_path, index=0)
    write_shard(table64, tmp_path, index=1)
    write_shard(table64.to_pandas(), tmp_path, index=2)
    for path in list_shards(tmp_path):
        assert read_shard(path).to_pylist() == rows


def test_mixed_type_dataframe_names_the_column(rows):
    frame = to_sample_table(rows).to_pandas()
    frame[schema.LABEL] = frame[schema.LABEL].astype(object)
    frame.loc[2, schema.LABEL] = "unsafe"
    with pytest.raises(ShardSchemaError, match="label"):
        to_sample_table(frame)


def test_deterministic_names():
    assert shard_name(0) == "part-00000.parquet"
    assert shard_name(42, prefix="sdg-safety") == "sdg-safety-00042.parquet"
    assert shard_name(123456) == "part-123456.parquet"
    with pytest.raises(ValueError, match="index"):
        shard_name(-1)
    with pytest.raises(ValueError, match="prefix"):
        shard_name(0, prefix="_hidden")
    with pytest.raises(ValueError, match="prefix"):
        shard_name(0, prefix="a/b")


def test_content_names_depend_only_on_rows(tmp_path, rows, row_factory):
    first = write_shard(rows, tmp_path / "a")
    again = write_shard(rows, tmp_path / "b")
    other = write_shard(row_factory(3), tmp_path / "c")
    assert os.path.basename(first) == os.path.basename(again)
    assert os.path.basename(first) != os.path.basename(other)
    assert os.path.basename(first).startswith("part-")


def test_list_shards_sorts_numerically_and_skips_other_files(tmp_path, rows):
    for index in (100000, 2, 10):
        write_shard(rows[:1], tmp_path, index=index)
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".part-00003.parquet.tmp-abc").write_bytes(b"half a file")
    (tmp_path / "_temporary-part-00004.parquet").write_bytes(b"another writer's temp file")
    (tmp_path / ".hidden.parquet").write_bytes(b"hidden")
    names = [os.path.basename(p) for p in list_shards(tmp_path)]
    assert names == ["part-00002.parquet", "part-00010.parquet", "part-100000.parquet"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop(schema.TEXT), r"missing column\(s\) \['text'\]"),
        (lambda r: r.update(score=0.5), r"unexpected column\(s\) \['score'\]"),
        (lambda r: r.update({schema.LABEL: 2}), r"'label' has invalid value\(s\) \[2\]"),
        (lambda r: r.update({schema.LABEL_INITIAL: -1}), r"'label_initial' has invalid"),
        (lambda r: r.update({schema.SOURCE: "web"}), r"'source' has invalid value\(s\) \['web'\]"),
        (lambda r: r.update({schema.SPLIT: "dev"}), r"'split' has invalid value\(s\) \['dev'\]"),
        (lambda r: r.update({schema.TEXT: None}), r"'text' has 1 null value\(s\) \(first at row 3"),
        (lambda r: r.update({schema.ID: ""}), r"'id' has empty ids"),
        (lambda r: r.update({schema.LABEL: "unsafe"}), r"column 'label': cannot convert"),
        (lambda r: r.update({schema.LABEL: 300}), r"column 'label'"),
    ],
)
def test_bad_rows_name_the_column(tmp_path, rows, mutate, message):
    mutate(rows[3])
    with pytest.raises(ShardSchemaError, match=message):
        write_shard(rows, tmp_path, index=0)
    assert not any(tmp_path.iterdir()), "a rejected write must leave nothing behind"


def test_wrong_column_type_names_column_and_expected_type(rows):
    table = to_sample_table(rows)
    floats = table.set_column(4, schema.LABEL, pa.array([0.0] * len(rows)))
    with pytest.raises(ShardSchemaError, match=r"'label' has type double, expected int8"):
        to_sample_table(floats)


def test_failing_generator_leaves_no_shard_and_keeps_existing(tmp_path, rows):
    good = write_shard(rows, tmp_path, index=0)
    before = open(good, "rb").read()

    def rows_then_crash():
        yield from rows
        raise RuntimeError("generator died half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        write_shard(rows_then_crash(), tmp_path, index=1)
    with pytest.raises(RuntimeError, match="half-way"):
        write_shard(rows_then_crash(), tmp_path, index=0, if_exists="overwrite")
    assert sorted(os.listdir(tmp_path)) == ["part-00000.parquet"]
    assert open(good, "rb").read() == before
    assert read_shards(tmp_path).to_pylist() == rows


def test_schema_error_on_overwrite_keeps_existing_shard(tmp_path, rows):
    good = write_shard(rows, tmp_path, index=0)
    bad = [dict(r, label=7) for r in rows]
    with pytest.raises(ShardSchemaError):
        write_shard(bad, tmp_path, index=0, if_exists="overwrite")
    assert read_shard(good).to_pylist() == rows
    assert os.listdir(tmp_path) == ["part-00000.parquet"]


def test_crash_while_writing_bytes_leaves_no_temp_file(tmp_path, rows, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shards.pq, "write_table", explode)
    with pytest.raises(OSError, match="disk full"):
        write_shard(rows, tmp_path, index=0)
    assert os.listdir(tmp_path) == []


def test_crash_mid_write_keeps_previous_shard(tmp_path, rows, row_factory, monkeypatch):
    good = write_shard(rows, tmp_path, index=0)
    before = open(good, "rb").read()

    def half_then_crash(table, where, **kwargs):
        where.write(b"PAR1" + b"x" * 100)  # some bytes reach the disk, then the writer dies
        raise OSError("killed mid-write")

    monkeypatch.setattr(shards.pq, "write_table", half_then_crash)
    with pytest.raises(OSError, match="killed mid-write"):
        write_shard(row_factory(3), tmp_path, index=0, if_exists="overwrite")
    assert os.listdir(tmp_path) == ["part-00000.parquet"]
    assert open(good, "rb").read() == before


def test_shard_is_invisible_until_complete(tmp_path, rows, monkeypatch):
    real_write_table = pq.write_table
    seen = {}

    def observing_write_table(table, where, **kwargs):
        real_write_table(table, where, **kwargs)
        where.flush()
        seen["shards"] = list_shards(tmp_path)
        seen["files"] = os.listdir(tmp_path)

    monkeypatch.setattr(shards.pq, "write_table", observing_write_table)
    write_shard(rows, tmp_path, index=0)
    assert seen["shards"] == [], "a reader must not see the shard while it is being written"
    assert len(seen["files"]) == 1 and seen["files"][0].startswith(".part-00000.parquet.tmp-")
    assert os.listdir(tmp_path) == ["part-00000.parquet"]
    assert read_shards(tmp_path).to_pylist() == rows


def test_list_files_hides_temp_and_marker_files(tmp_path):
    for name in ("b.txt", "a.parquet", ".tmp-x", "_SUCCESS"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    assert uris.list_files(tmp_path) == ["a.parquet", "b.txt"]
    everything = uris.list_files(tmp_path, include_hidden=True)
    assert everything == [".tmp-x", "_SUCCESS", "a.parquet", "b.txt"]
    with pytest.raises(NotADirectoryError):
        uris.list_files(tmp_path / "b.txt")


def test_if_exists_modes(tmp_path, rows, row_factory):
    path = write_shard(rows, tmp_path, index=0)
    with pytest.raises(FileExistsError, match="part-00000.parquet"):
        write_shard(row_factory(2), tmp_path, index=0)
    assert write_shard(row_factory(2), tmp_path, index=0, if_exists="skip") == path
    assert read_shard(path).num_rows == len(rows)
    write_shard(row_factory(2), tmp_path, index=0, if_exists="overwrite")
    assert read_shard(path).num_rows == 2


def test_shard_exists_ignores_temp_files(tmp_path, rows):
    (tmp_path / ".part-00000.parquet.tmp-123").write_bytes(b"partial")
    assert not shard_exists(tmp_path, 0)
    write_shard(rows, tmp_path, index=0)
    assert shard_exists(tmp_path, 0)
    assert not shard_exists(tmp_path, 1)
    assert shard_exists(tmp_path, name="part-00000.parquet")


def test_temp_file_is_ignored_by_readers(tmp_path, rows):
    write_shard(rows, tmp_path, index=0)
    (tmp_path / ".part-00001.parquet.tmp-deadbeef").write_bytes(b"PAR1 half written")
    assert read_shards(tmp_path).num_rows == len(rows)


def test_truncated_shard_error_names_the_file(tmp_path, rows):
    write_shard(rows, tmp_path, index=0)
    broken = write_shard(rows[:3], tmp_path, index=1)
    data = open(broken, "rb").read()
    with open(broken, "wb") as handle:
        handle.write(data[: len(data) // 2])
    with pytest.raises(CorruptShardError, match=r"part-00001\.parquet.*not readable Parquet"):
        read_shards(tmp_path)
    with pytest.raises(CorruptShardError, match=r"part-00001\.parquet"):
        shards.check_shard_schema(broken)


def test_foreign_parquet_file_is_named(tmp_path, rows):
    write_shard(rows, tmp_path, index=0)
    pq.write_table(pa.table({"text": ["x"], "score": [0.1]}), tmp_path / "part-00001.parquet")
    with pytest.raises(ShardSchemaError, match=r"part-00001\.parquet.*missing column"):
        read_shards(tmp_path)


def test_empty_folder_raises_unless_allowed(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(NoShardsError, match=str(tmp_path)):
        read_shards(tmp_path)
    empty = read_shards(tmp_path, allow_empty=True)
    assert empty.num_rows == 0 and empty.schema == schema.arrow_schema()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_shards(tmp_path / "nope")


def test_empty_shard_round_trips(tmp_path):
    write_shard([], tmp_path, index=0)
    table = read_shards(tmp_path)
    assert table.num_rows == 0 and table.schema == schema.arrow_schema()


def test_uri_parsing():
    assert uris.parse_uri("s3://bucket/a/b/").path == "bucket/a/b"
    assert uris.parse_uri("s3://bucket").uri == "s3://bucket"
    assert uris.join_uri("s3://bucket/a", "b.parquet") == "s3://bucket/a/b.parquet"
    assert uris.parse_uri("file:///tmp/x").path == "/tmp/x"
    assert uris.parse_uri("rel/dir").path == os.path.abspath("rel/dir")
    for bad in ("gs://bucket/x", "s3:///key", "", "file://host/x"):
        with pytest.raises(uris.UriError):
            uris.parse_uri(bad)
    with pytest.raises(uris.UriError, match="relative"):
        uris.join_uri("s3://bucket/a", "../b")
    with pytest.raises(uris.UriError, match="valid keys"):
        uris.resolve_storage_options("s3://bucket", {"endpoint": "http://x"})


def test_atomic_json_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "state.json"
    uris.write_json_atomic(target, {"a": 1})
    uris.write_json_atomic(target, {"a": 2, "b": [1, 2]})
    assert uris.read_json(target) == {"a": 2, "b": [1, 2]}
    with pytest.raises(TypeError):
        uris.write_json_atomic(target, {"a": object()})
    assert uris.read_json(target) == {"a": 2, "b": [1, 2]}
    assert os.listdir(target.parent) == ["state.json"]
