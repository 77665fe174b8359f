"""A merge killed half-way (issue 15, item 5): nothing loadable is left, and the next run of the
same output cleans up after it.

The reproduction: ``kill -9`` of ``guardray merge`` while it writes left a hidden
``.OUT.tmp-*`` folder, up to the model's size, holding a ``model.safetensors`` that loaded,
with the tensors not yet merged reading as zeros.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _models(root: Path, layers: int = 24, width: int = 512) -> dict[str, Path]:
    """``base``, ``ft0``, ``ft1``: plain safetensors folders of ``layers`` float32 matrices
    (25 MB each), large enough that a TIES merge on one thread takes about a second."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    base = {f"model.layers.{i}.mlp.weight": torch.randn(width, width, generator=gen)
            for i in range(layers)}
    out = {}
    for name, noise in (("base", 0.0), ("ft0", 0.01), ("ft1", 0.01)):
        folder = root / name
        folder.mkdir()
        state = {k: v + noise * torch.randn(v.shape, generator=gen) for k, v in base.items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(f'{{"num_hidden_layers": {layers}}}\n')
        out[name] = folder
    return out


def _recipe(tmp_path: Path, models: dict[str, Path]) -> Path:
    recipe = tmp_path / "ties.yaml"
    recipe.write_text(
        "merge_method: ties\n"
        f"base_model: {models['base']}\n"
        "models:\n"
        f"  - {{model: {models['ft0']}, parameters: {{density: 0.5}}}}\n"
        f"  - {{model: {models['ft1']}, parameters: {{density: 0.5}}}}\n"
        "num_threads: 1\n")
    return recipe


def _loads(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                fh.get_tensor(key)
        return True
    except Exception:  # noqa: BLE001 - any failure to read means "not loadable"
        return False


def test_a_killed_merge_leaves_nothing_loadable_and_a_rerun_cleans_up(tmp_path):
    models = _models(tmp_path)
    recipe = _recipe(tmp_path, models)
    out = tmp_path / "merged"
    cmd = [sys.executable, "-m", "guardray", "merge", str(recipe), str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    partial: list[Path] = []
    try:
        while not partial:  # the shard file exists from the start of the writing
            assert proc.poll() is None, f"the merge ended before it was killed: " \
                                        f"{proc.stderr.read().decode()[-2000:]}"
            assert time.time() < deadline, "the merge never started writing"
            partial = list(tmp_path.glob(".merged.tmp-*/model.safetensors"))
            time.sleep(0.005)
        time.sleep(0.2)  # some tensors are written by now (merging the first takes ~40 ms)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    (leftover,) = partial
    assert leftover.is_file() and leftover.stat().st_size > 20_000_000  # the whole layout...
    assert leftover.read_bytes()[:8] == bytes(8)  # ... but no header yet
    assert not _loads(leftover)

    from guardray.cli import main

    assert main(cmd[3:]) == 0  # the same command again, in this process
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert _loads(out / "model.safetensors")


@pytest.mark.parametrize("fail_after", [0, 5])
def test_writer_failing_half_way_leaves_no_header(tmp_path, fail_after):
    """`ShardedWriter.close` refuses to finish (and writes no header) while tensors are missing."""
    import torch

    from guardray.merge.io import OutputTensor, ShardedWriter

    plan = [OutputTensor(f"t{i}", torch.float32, (4, 4)) for i in range(8)]
    writer = ShardedWriter(tmp_path, plan, max_shard_bytes=3 * 64)
    for t in plan[:fail_after]:
        writer.write(t.name, torch.ones(4, 4))
    with pytest.raises(RuntimeError, match="never written"):
        writer.close()
    assert writer.files and all(not _loads(f) for f in writer.files)
