"""Outputs that cannot be written (issue 15, item 3): a file in the way, a read-only filesystem,
a full disk. Each ends as one line naming the path (`guardray.errors.StorageError`), and a
failed atomic write leaves no file behind.
"""

from __future__ import annotations

import errno

import pytest
from fs_testlib import fill, tmpfs

from guardray.errors import StorageError, is_expected, storage_error
from guardray.io import uris
from guardray.io.folders import atomic_folder, check_output_location


def test_output_through_a_file_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=rf"output_dir: output {tmp_path}/f/out: "
                                                 rf"{tmp_path}/f exists and is a file"):
        check_output_location(tmp_path / "f" / "out")
    check_output_location(tmp_path / "new" / "out")  # missing folders are fine ...
    assert not (tmp_path / "new").exists()  # ... and not created by the check
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]  # the probe file is gone


def test_read_only_filesystem(tmp_path):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(StorageError, match=rf"^output_dir: cannot write {ro}: Read-only file "
                                               r"system; choose an output location on a "
                                               r"writable filesystem$"):
            check_output_location(ro / "out")
        with pytest.raises(StorageError, match=rf"cannot write {ro}/out/a.json: Read-only"):
            uris.write_json_atomic(ro / "out" / "a.json", {"a": 1})
        with pytest.raises(StorageError, match=rf"cannot write {ro}/m: Read-only"):
            with atomic_folder(ro / "m"):
                pass


def test_full_disk(tmp_path):
    with tmpfs(tmp_path / "small", size_kb=64) as small:
        uris.write_bytes_atomic(small / "ok.bin", b"1" * 1000)  # room at first
        with pytest.raises(StorageError, match=rf"^cannot write {small}/big.bin: No space left "
                                               r"on device; free space or choose another"):
            uris.write_bytes_atomic(small / "big.bin", b"2" * 200_000)
        assert sorted(p.name for p in small.iterdir()) == ["ok.bin"]  # no temp file left
        fill(small)
        with pytest.raises(StorageError, match=rf"output_dir: cannot write {small}: No space"):
            check_output_location(small / "out")
        with pytest.raises(StorageError, match=rf"cannot write {small}/model: No space"):
            with atomic_folder(small / "model") as tmp:
                (tmp / "weights").write_bytes(b"3" * 100_000)
        assert sorted(p.name for p in small.iterdir()) == ["filler", "ok.bin"]


def test_storage_errnos_are_expected_errors_also_from_ray_tasks():
    """An error raised in a Ray Data UDF reaches the driver as ``RayTaskError(
    UserCodeException)`` whose ``cause`` is the ``UserCodeException``, whose ``__cause__`` is
    the UDF's error: the CLI looks through both (real Ray exception classes; no Ray started)."""
    from ray.exceptions import RayTaskError, UserCodeException

    from guardray.errors import expected_error, one_line

    err = OSError(errno.ENOSPC, "No space left on device")
    assert is_expected(err) and not is_expected(OSError(errno.EIO, "I/O error"))
    assert storage_error(OSError(errno.EIO, "I/O error"), "/x") is None
    mapped = storage_error(err, "/out/a.parquet")
    udf = UserCodeException("UDF failed")
    udf.__cause__ = mapped
    wrapped = RayTaskError("MapBatches(_write_batch)", "Traceback ...\nmany lines", udf)
    wrapped = wrapped.as_instanceof_cause()
    assert expected_error(wrapped) is mapped and is_expected(wrapped)
    assert one_line(wrapped) == ("cannot write /out/a.parquet: No space left on device; free "
                                 "space or choose another output location")
    bug = RuntimeError("a bug")
    bug.__cause__ = err  # an unexpected error raised from an expected one stays a bug
    assert not is_expected(bug)
