"""What the generate job checks before Ray and the model start (issue 15, items 2-3).

Reproductions: ``guardray generate`` with a binary policy file, with an ``output_dir`` that is a
file or on a read-only filesystem, and resuming into a folder whose finished-task shard is
truncated, zero-byte or not a sample shard (it would count as a finished task and fail only
when the manifest is written, after all the generation). Each ends as one line, before Ray.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fs_testlib import tmpfs
from sample_testlib import sample_rows

from guardray.config import ConfigError, load_config
from guardray.errors import DataError, StorageError
from guardray.generate import preflight
from guardray.generate.config import GenerateConfig
from guardray.io import shards

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs/debug/generate.yaml"


def _cfg(out: Path, *overrides: str) -> GenerateConfig:
    return load_config(GenerateConfig, DEBUG, [f"output_dir={out}",
                                               f"policies=[{REPO}/configs/policies/tax.yaml]",
                                               *overrides])


def test_a_good_setup_passes(tmp_path):
    assert [p.id for p in preflight(_cfg(tmp_path / "out"))] == ["tax"]
    assert not (tmp_path / "out").exists()  # nothing is created by the checks


def test_binary_policy_file(tmp_path):
    logo = tmp_path / "logo.yaml"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ConfigError, match=rf"{logo}: not UTF-8 text \(byte 0x89 at offset 0\)"):
        preflight(_cfg(tmp_path / "out", f"policies=[{logo}]"))


def test_output_that_is_a_file_or_read_only(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"output_dir: output .*/file/out: .*/file exists "
                                                 r"and is a file"):
        preflight(_cfg(tmp_path / "file" / "out"))
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(StorageError, match=rf"output_dir: cannot write {ro}: Read-only"):
            preflight(_cfg(ro / "out"))


@pytest.mark.parametrize("damage, problem", [
    ("truncated", "is not readable Parquet (Parquet magic bytes not found"),
    ("zero-byte", "is not readable Parquet (Parquet file size is 0 bytes)"),
    ("wrong-schema", "missing column(s)"),
])
def test_unreadable_shard_of_a_run_being_resumed(tmp_path, damage, problem):
    out = tmp_path / "out"
    path = Path(shards.write_shard(sample_rows(("tax",), n=(4, 0, 0)), out, index=0, prefix="gen"))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "zero-byte":
        path.write_bytes(b"")
    else:
        pq.write_table(pa.table({"prompt": ["x"]}), path)
    with pytest.raises(DataError) as info:
        preflight(_cfg(out))
    assert f"shard '{path}'" in str(info.value) and problem in str(info.value)


def test_cli_ends_with_one_line_before_ray(tmp_path):
    out = tmp_path / "out"
    path = Path(shards.write_shard(sample_rows(("tax",), n=(4, 0, 0)), out, index=0, prefix="gen"))
    path.write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "guardray", "generate", "--config", str(DEBUG),
                        f"output_dir={out}"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Parquet file size is 0 bytes" in errors[0], r.stderr
    assert "starting a local Ray instance" not in r.stderr
