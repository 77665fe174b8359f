"""Stage manifests: contents, JSON conversion, validation, atomic replacement."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

import guardray
from guardray.io.manifest import (
    MANIFEST_NAME,
    ManifestError,
    read_manifest,
    to_jsonable,
    write_manifest,
)


DROPPED = {"exact_duplicate": 2, "near_duplicate": 1}


class _Cfg(BaseModel):
    threshold: float = 0.9
    out: Path = Path("/data/out")


@dataclasses.dataclass
class _Extra:
    seed: int = 3


def test_write_and_read_manifest(tmp_path):
    path = write_manifest(
        tmp_path / "dedup",
        "dedup",
        inputs=[tmp_path / "sdg", "s3://bucket/more"],
        config=_Cfg(),
        counts={"in": np.int64(10), "out": 7, "dropped": DROPPED},
        extra={"run": _Extra(), "tags": {"b", "a"}},
    )
    assert path == str(tmp_path / "dedup" / MANIFEST_NAME)
    data = read_manifest(tmp_path / "dedup")
    assert data["stage"] == "dedup"
    assert data["inputs"] == [str(tmp_path / "sdg"), "s3://bucket/more"]
    assert data["config"] == {"threshold": 0.9, "out": "/data/out"}
    assert data["counts"] == {"in": 10, "out": 7, "dropped": DROPPED}
    assert data["extra"] == {"run": {"seed": 3}, "tags": ["a", "b"]}
    assert data["guardray_version"] == guardray.__version__
    created = dt.datetime.fromisoformat(data["created_at"])
    assert created.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60


def test_counts_default_dropped_to_empty(tmp_path):
    write_manifest(tmp_path, "sdg", inputs=[], config={}, counts={"in": 0, "out": 5})
    assert read_manifest(tmp_path)["counts"] == {"in": 0, "out": 5, "dropped": {}}


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"in": 1}, "expected 'in', 'out'"),
        ({"in": 1, "out": 1, "kept": 1}, "expected 'in', 'out'"),
        ({"in": -1, "out": 0}, r"counts in must be an int >= 0, got -1"),
        ({"in": 1, "out": 1.5}, r"counts out must be an int >= 0, got 1.5"),
        ({"in": 1, "out": 0, "dropped": {"dup": "1"}}, r"dropped\['dup'\]"),
        ({"in": 1, "out": 0, "dropped": [1]}, "reason -> count"),
    ],
)
def test_bad_counts_are_rejected_before_writing(tmp_path, counts, message):
    with pytest.raises(ManifestError, match=message):
        write_manifest(tmp_path, "sdg", inputs=[], config={}, counts=counts)
    assert os.listdir(tmp_path) == []


def test_unserialisable_config_names_the_key_and_keeps_old_manifest(tmp_path):
    write_manifest(tmp_path, "sdg", inputs=[], config={"a": 1}, counts={"in": 1, "out": 1})
    message = r"config\.model\.fn: cannot write a builtins\.function"
    with pytest.raises(ManifestError, match=message):
        write_manifest(tmp_path, "sdg", inputs=[], config={"model": {"fn": lambda: 0}},
                       counts={"in": 1, "out": 1})
    with pytest.raises(ManifestError, match=r"config\.loss: nan is not valid JSON"):
        write_manifest(tmp_path, "sdg", inputs=[], config={"loss": float("nan")},
                       counts={"in": 1, "out": 1})
    assert read_manifest(tmp_path)["config"] == {"a": 1}
    assert os.listdir(tmp_path) == [MANIFEST_NAME]


def test_to_jsonable_handles_numpy_and_rejects_non_string_keys():
    assert to_jsonable({"x": np.arange(3), "y": np.float32(0.5)}) == {"x": [0, 1, 2], "y": 0.5}
    with pytest.raises(ManifestError, match="key 1 is a int"):
        to_jsonable({1: "a"})


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"stage": "x"}))
    with pytest.raises(ManifestError, match="missing key"):
        read_manifest(tmp_path)


def test_empty_stage_name_rejected(tmp_path):
    with pytest.raises(ManifestError, match="stage"):
        write_manifest(tmp_path, " ", inputs=[], config={}, counts={"in": 0, "out": 0})
