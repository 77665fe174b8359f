"""Bad shards and unwritable outputs of the dedup job (issue 15, item 3).

The reproductions: ``guardray dedup`` on a truncated, zero-byte or wrong-schema shard, or on a
shard whose Parquet data pages are corrupt (its footer intact), and with an output that is a
file, read-only or on a full disk. Each must end as one line naming the file, the footer and
value problems before Ray starts.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dedup_corpus import DISTINCT, make_row
from fs_testlib import fill, tmpfs

from guardray.config import load_config
from guardray.dedup.config import DedupConfig
from guardray.io import shards

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug" / "dedup.yaml"


def _input(folder: Path) -> Path:
    rows = [make_row(t) for t in DISTINCT]
    shards.write_shard(rows[:4], folder, index=0)
    shards.write_shard(rows[4:], folder, index=1)
    return folder / "part-00001.parquet"


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero-byte":
        path.write_bytes(b"")
    elif how == "wrong-schema":
        pq.write_table(pa.table({"prompt": ["a"], "y": [1]}), path)
    elif how == "label-7":
        table = pq.read_table(path)
        labels = pa.array([7] * table.num_rows, pa.int8())
        pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", labels),
                       path)
    elif how.startswith("corrupt-"):  # one column's data pages overwritten, footer intact
        column = how.removeprefix("corrupt-")
        meta = pq.ParquetFile(path).metadata.row_group(0)
        chunk = next(meta.column(i) for i in range(meta.num_columns)
                     if meta.column(i).path_in_schema == column)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        end = start + chunk.total_compressed_size
        path.write_bytes(data[:start] + b"\xab" * (end - start) + data[end:])


def _cfg(tmp_path: Path, *overrides: str) -> DedupConfig:
    return load_config(DedupConfig, DEBUG_CONFIG, [
        f"input_dir={tmp_path / 'in'}", f"output_dir={tmp_path / 'out'}", "method=exact_only",
        *overrides])


@pytest.mark.parametrize("how, problem", [
    ("truncated", "is not readable Parquet (Parquet magic bytes not found"),
    ("zero-byte", "is not readable Parquet (Parquet file size is 0 bytes)"),
    ("wrong-schema", "missing column(s) ['id', "),
    ("label-7", "column 'label' has invalid value(s) [7] (first at row 0)"),
    ("corrupt-label", "is not readable Parquet (Couldn't deserialize thrift"),
])
def test_bad_shards_fail_before_ray(tmp_path, how, problem):
    from guardray.dedup import check_paths
    from guardray.errors import DataError

    bad = _input(tmp_path / "in")
    _damage(bad, how)
    with pytest.raises(DataError) as info:
        check_paths(_cfg(tmp_path))
    assert f"shard '{bad}'" in str(info.value) and problem in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_bad_shard_is_one_line_without_ray(tmp_path):
    bad = _input(tmp_path / "in")
    _damage(bad, "truncated")
    r = subprocess.run([sys.executable, "-m", "guardray", "dedup", "--config", str(DEBUG_CONFIG),
                        f"input_dir={tmp_path / 'in'}", f"output_dir={tmp_path / 'out'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"dedup failed: shard '{bad}' is not readable" in errors[0]
    assert "starting a local Ray instance" not in r.stderr


def test_output_that_is_a_file_or_read_only_fails_before_ray(tmp_path):
    from guardray.dedup import check_paths
    from guardray.errors import StorageError

    _input(tmp_path / "in")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=rf"output_dir: output {tmp_path}/file/out: "):
        check_paths(_cfg(tmp_path, f"output_dir={tmp_path / 'file' / 'out'}"))
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(StorageError, match=rf"output_dir: cannot write {ro}: Read-only"):
            check_paths(_cfg(tmp_path, f"output_dir={ro / 'out'}"))


def test_corrupt_data_pages_and_a_full_disk_name_the_path(ray_session, tmp_path, monkeypatch):
    """Found only when Ray reads the rows (corrupt pages of the text column: the checks before
    Ray read the footers and the label/split/source columns): a Ray task's ``OSError:
    Couldn't deserialize thrift`` (hundreds of lines, no file name) becomes one line naming
    the shard; a disk that fills up while the kept shards are written (in Ray tasks) names
    the output."""
    from guardray.dedup import check_paths, run_dedup
    from guardray.errors import StorageError, expected_error, one_line
    from guardray.io import CorruptShardError

    bad = _input(tmp_path / "in")
    _damage(bad, "corrupt-text")
    check_paths(_cfg(tmp_path))  # passes: this damage shows only when the text is read
    with pytest.raises(CorruptShardError) as info:
        run_dedup(_cfg(tmp_path))
    assert str(info.value).startswith(f"shard '{bad}', row group 0 is not readable Parquet ("), \
        str(info.value)
    assert "\n" not in str(info.value)
    # as in a job (`guardray.cli.ray_init.init_ray`): a UDF's error reaches the driver as itself
    monkeypatch.setattr(ray_session.data.DataContext.get_current(),
                        "raise_original_map_exception", True)
    rng = random.Random(0)  # ~100 KB of incompressible rows: more than the disk has left
    shards.write_shard([make_row(f"{i} {rng.randbytes(48).hex()}") for i in range(1000)],
                       tmp_path / "good", index=0)
    with tmpfs(tmp_path / "small", size_kb=256) as small:
        fill(small, leave=8192)  # room for the output check's probe, not for the shards
        with pytest.raises(StorageError) as info:  # raised in a Ray task: RayTaskError(it)
            run_dedup(_cfg(tmp_path, f"input_dir={tmp_path / 'good'}",
                           f"output_dir={small / 'out'}"))
    assert isinstance(expected_error(info.value), StorageError), info.value
    line = one_line(info.value)
    assert f"cannot write {small}/out" in line and "No space left on device" in line, line
