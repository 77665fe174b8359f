"""Model folders on S3 (a real S3 API: moto over HTTP) become one local copy per node cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guardray.errors import ModelError
from guardray.modeling.base import portable_ref, resolve_base
from guardray.modeling.remote import is_remote, localize


def upload(client, bucket: str, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    from guardray.modeling.tiny import build_tiny_xlmr

    return Path(build_tiny_xlmr(tmp_path / "tiny", task="sequence-classification", seed=0))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GUARDRAY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_localize_copies_every_file_once_and_refetches_a_rewritten_folder(
        s3_bucket, s3_client, tiny_folder, cache):
    upload(s3_client, s3_bucket, tiny_folder, "run/pretrain/model")
    s3_client.put_object(Bucket=s3_bucket, Key="run/pretrain/model/.part-tmp", Body=b"x")
    uri = f"s3://{s3_bucket}/run/pretrain/model"

    local = localize(uri)
    expected = {p.relative_to(tiny_folder) for p in tiny_folder.rglob("*") if p.is_file()}
    got = {p.relative_to(local) for p in local.rglob("*") if p.is_file()} - {Path(".complete")}
    assert got == expected  # hidden writer files are not copied
    for rel in expected:
        assert (local / rel).read_bytes() == (tiny_folder / rel).read_bytes()
    assert local.is_relative_to(cache / "remote")

    stamp = (local / "config.json").stat().st_mtime_ns
    assert localize(uri) == local and (local / "config.json").stat().st_mtime_ns == stamp

    s3_client.put_object(Bucket=s3_bucket, Key="run/pretrain/model/config.json",
                         Body=(tiny_folder / "config.json").read_bytes() + b"\n")
    again = localize(uri)
    assert again != local and (again / "config.json").read_bytes().endswith(b"}\n\n")


def test_resolve_base_loads_a_model_from_s3(s3_bucket, s3_client, tiny_folder, cache):
    from transformers import AutoConfig

    upload(s3_client, s3_bucket, tiny_folder, "m")
    path = resolve_base(f"s3://{s3_bucket}/m")
    assert os.path.isdir(path)
    assert AutoConfig.from_pretrained(path).model_type == "xlm-roberta"


def test_missing_remote_folder_is_a_model_error_naming_it(s3_bucket, cache):
    with pytest.raises(ModelError, match=rf"model.base: s3://{s3_bucket}/nothing: no such folder"):
        resolve_base(f"s3://{s3_bucket}/nothing")


def test_portable_ref_keeps_node_local_forms_and_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    assert portable_ref("model") == str(tmp_path / "model")
    for ref in ("tiny:xlmr", "embedded:all-minilm-l6-v2", "s3://b/m", "org/name"):
        assert portable_ref(ref) == ref
    assert is_remote("s3://b/m") and not is_remote(str(tmp_path))
