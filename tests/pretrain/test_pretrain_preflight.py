"""Pretraining checks its inputs before the expensive work (issue 15, items 2-3).

Reproductions: ``output_dir`` pointing at a file trained for 94 s and then failed with a
traceback; a label of 7 failed inside a worker after 108 s without naming the file; a
pickle-only or remote-code base model failed with a traceback; corrupt Parquet data pages
failed inside Ray with a traceback naming no file. `run_pretrain(cfg, connect=...)` runs
`preflight` before ``connect`` (the job's ``init_ray``): here ``connect`` raises `_Stop`, so
a bad input must fail with its own one-line error first.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fs_testlib import tmpfs
from model_testlib import make_bad_models
from pretrain_testlib import debug_config, write_gip_shards

from guardray.errors import ModelError, StorageError
from guardray.io import CorruptShardError, ShardSchemaError
from guardray.modeling.base import resolve_base


class _Stop(Exception):
    """Raised by ``connect``: the run got as far as starting Ray."""


def _stop():
    raise _Stop


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_gip_shards(tmp_path_factory.mktemp("gip-preflight"), n=64, shards=2)


def test_good_input_reaches_ray(data_dir, tmp_path):
    from guardray.pretrain.run import run_pretrain

    with pytest.raises(_Stop):
        run_pretrain(debug_config(tmp_path, data_dir), connect=_stop)


def test_output_locations(data_dir, tmp_path):
    from guardray.pretrain.run import run_pretrain

    (tmp_path / "file").write_text("x")
    for field in ("output_dir", "storage_path", "log_dir"):
        cfg = debug_config(tmp_path, data_dir, f"{field}={tmp_path / 'file' / 'sub'}")
        with pytest.raises(NotADirectoryError, match=rf"^{field}: output .*file exists and is"):
            run_pretrain(cfg, connect=_stop)
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(StorageError, match=rf"^storage_path: cannot write {ro}: Read-only"):
            run_pretrain(debug_config(tmp_path, data_dir, f"storage_path={ro / 'ray'}"),
                         connect=_stop)


def test_label_7_is_named_by_file_and_row(tmp_path):
    from guardray.pretrain.run import run_pretrain

    data = write_gip_shards(tmp_path / "data", n=32, shards=2)
    bad = data / "part-00001.parquet"
    table = pq.read_table(bad)
    labels = table.column("label").to_pylist()
    labels[3] = 7
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label",
                                    pa.array(labels, pa.int8())), bad)
    with pytest.raises(ShardSchemaError, match=rf"shard '{bad}': column 'label' has invalid "
                                               r"value\(s\) \[7\] \(first at row 3\)"):
        run_pretrain(debug_config(tmp_path, data), connect=_stop)


@pytest.mark.parametrize("name, problem", [("pickle_only", "holds only pickle weights"),
                                           ("remote_code", "needs its own model code"),
                                           ("no_tokenizer", "has no tokenizer files")])
def test_base_model_is_checked(data_dir, tmp_path, name, problem):
    from guardray.pretrain.run import run_pretrain

    bad = make_bad_models(tmp_path / "models", Path(resolve_base("tiny:xlmr")))
    with pytest.raises(ModelError, match=rf"^model\.base: {bad[name]} {problem}"):
        run_pretrain(debug_config(tmp_path, data_dir, f"model.base={bad[name]}"),
                     connect=_stop)
    assert not (bad["remote_code"] / "PWNED").exists()


def test_corrupt_data_pages_fail_by_shard_before_training(ray_session, tmp_path):
    """Pages of the text column overwritten (footer intact): the checks before Ray read only
    footers and the label/split/source columns, so this shows when the rows are first read,
    in the counting pass before training: one error naming the shard, no Ray Train run."""
    from guardray.pretrain.run import run_pretrain

    data = write_gip_shards(tmp_path / "data", n=64, shards=2)
    bad = data / "part-00001.parquet"
    raw = bad.read_bytes()
    meta = pq.ParquetFile(bad).metadata.row_group(0)
    chunk = next(meta.column(i) for i in range(meta.num_columns)
                 if meta.column(i).path_in_schema == "text")
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    end = start + chunk.total_compressed_size
    bad.write_bytes(raw[:start] + b"\xab" * (end - start) + raw[end:])
    with pytest.raises(CorruptShardError, match=rf"^shard '{bad}', row group 0 is not "
                                                r"readable Parquet \(") as info:
        run_pretrain(debug_config(tmp_path, data))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "ray" / "gip-debug").exists()  # no Ray Train run was started
