"""Reading and writing safetensors by hand: round trips checked with the safetensors library."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from guardray.io.folders import atomic_folder
from guardray.merge.checkpoint import Checkpoint, CheckpointError
from guardray.merge.io import (
    OutputTensor,
    ShardedWriter,
    copy_model_files,
    plan_shards,
)


def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.f32": torch.randn(5, 7, generator=g),
        "b.bf16": torch.randn(3, 4, generator=g).to(torch.bfloat16),
        "c.f16": torch.randn(9, generator=g).to(torch.float16),
        "d.i64": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "e.bool": torch.tensor([True, False, True]),
        "f.scalar": torch.tensor(3.5),
        "g.empty": torch.zeros(0, 4),
        "h.f64": torch.randn(4, generator=g, dtype=torch.float64),
    }


def test_plan_shards_by_size_in_order():
    ts = [
        OutputTensor(n, torch.float32, (s,)) for n, s in [("a", 10), ("b", 10), ("c", 30), ("d", 5)]
    ]
    # 40, 40, 120, 20 bytes with a 100-byte limit: [a, b], [c] (too big, alone), [d]
    assert [[t.name for t in s] for s in plan_shards(ts, 100)] == [["a", "b"], ["c"], ["d"]]
    assert [[t.name for t in s] for s in plan_shards(ts, 1000)] == [["a", "b", "c", "d"]]


@pytest.mark.parametrize("max_bytes, sharded", [(10_000, False), (64, True)])
def test_writer_round_trip_read_by_safetensors_and_by_checkpoint(tmp_path, max_bytes, sharded):
    tensors = sample_tensors()
    plan = [OutputTensor(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    writer = ShardedWriter(tmp_path, plan, max_bytes, metadata={"merge_method": "x"})
    for name in reversed(list(tensors)):  # any write order works
        writer.write(name, tensors[name])
    writer.close()

    index = tmp_path / "model.safetensors.index.json"
    assert index.is_file() == sharded
    if sharded:
        weight_map = json.loads(index.read_text())["weight_map"]
        assert set(weight_map) == set(tensors) and len(set(weight_map.values())) > 1
        files = sorted(set(weight_map.values()))
    else:
        files = ["model.safetensors"]
    seen = {}
    for file in files:
        with safe_open(str(tmp_path / file), framework="pt") as f:
            assert f.metadata()["merge_method"] == "x"
            for key in f.keys():
                seen[key] = f.get_tensor(key)
    ckpt = Checkpoint(tmp_path)
    assert set(seen) == set(tensors) == set(ckpt.keys())
    for name, t in tensors.items():
        assert seen[name].dtype == t.dtype and torch.equal(seen[name], t), name
        assert torch.equal(ckpt.get(name), t), name
    ckpt.close()


def test_writer_refuses_unplanned_shapes_and_missing_tensors(tmp_path):
    writer = ShardedWriter(
        tmp_path,
        [OutputTensor("w", torch.float32, (2,)), OutputTensor("v", torch.float32, (1,))],
        1 << 20,
    )
    with pytest.raises(ValueError, match=r"w: got torch.float32 \[3\], planned"):
        writer.write("w", torch.zeros(3))
    writer.write("w", torch.zeros(2))
    with pytest.raises(RuntimeError, match=r"never written.*'v'"):
        writer.close()


def test_checkpoint_reads_index_and_refuses_bad_files(tmp_path):
    save_file({"x": torch.ones(2)}, str(tmp_path / "part1.safetensors"))
    save_file({"y": torch.zeros(3)}, str(tmp_path / "part2.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "part1.safetensors", "y": "part2.safetensors"}})
    )
    ckpt = Checkpoint(tmp_path)
    assert ckpt.keys() == ["x", "y"] and torch.equal(ckpt.get("y"), torch.zeros(3))

    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "part1.safetensors", "y": "part3.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="part3.safetensors"):
        Checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "part2.safetensors", "y": "part2.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="says 'x' is in part2.safetensors"):
        Checkpoint(tmp_path)

    bad = tmp_path / "bad.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(CheckpointError, match="inconsistent offsets"):
        Checkpoint(bad)
    bad.write_bytes(b"\x05\0\0\0\0\0\0\0{oops")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        Checkpoint(bad)


def test_atomic_folder_keeps_old_content_on_error_and_replaces_on_success(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_folder(final, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("boom")
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(FileExistsError):
        with atomic_folder(final):
            pass
    with atomic_folder(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("done")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_copy_model_files_sets_dtype_and_copies_tokenizer(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "float32"}))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "notes.md"):
        (src / name).write_text("{}")
    copied = copy_model_files(src, dst, dtype_name="bfloat16")
    assert json.loads((dst / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert set(copied) == {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    assert not (dst / "notes.md").exists()
