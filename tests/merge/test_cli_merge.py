"""``guardray merge CONFIG OUTPUT_DIR [key=value ...]`` through the real CLI entry point."""

from __future__ import annotations

import json

import torch
import yaml
from merge_testlib import load_state_dict

from guardray.cli import main


def write_config(tmp_path, tiny_llama, **extra):
    cfg = {
        "merge_method": "task_arithmetic",
        "base_model": str(tiny_llama["base"]),
        "models": [{"model": str(tiny_llama["ft1"]), "parameters": {"weight": 1.0}}],
        "parameters": {"lambda": 1.0},
        **extra,
    }
    path = tmp_path / "merge.yaml"
    path.write_text("# guardray merge merge.yaml out\n" + yaml.safe_dump(cfg))
    return path


def test_cli_merge_with_override(tiny_llama, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_llama)
    out = tmp_path / "out"
    assert main(["merge", str(cfg), str(out), "parameters.lambda=0.5", "--no-progress"]) == 0
    assert "merged" in capsys.readouterr().out
    merged = load_state_dict(out)
    base, ft = load_state_dict(tiny_llama["base"]), load_state_dict(tiny_llama["ft1"])
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(merged[name], base[name] + 0.5 * (ft[name] - base[name]), atol=1e-6)
    manifest = json.loads((out / "merge_manifest.json").read_text())
    assert manifest["config"]["parameters"] == {"lambda": 0.5}

    # an existing output is kept unless --overwrite
    assert main(["merge", str(cfg), str(out), "--no-progress"]) == 1
    assert main(["merge", str(cfg), str(out), "--no-progress", "--overwrite"]) == 0


def test_cli_merge_bad_config_exits_2_with_the_problem(tiny_llama, tmp_path, caplog):
    cfg = write_config(tmp_path, tiny_llama, merge_method="slurp")
    assert main(["merge", str(cfg), str(tmp_path / "out")]) == 2
    assert "unknown method 'slurp'" in caplog.text and "slerp" in caplog.text
    assert not (tmp_path / "out").exists()


def test_cli_merge_missing_model_exits_1_and_dry_run_writes_nothing(tiny_llama, tmp_path, caplog):
    cfg = write_config(tmp_path, tiny_llama)
    assert main(["merge", str(cfg), str(tmp_path / "out"), "--dry-run"]) == 0
    assert not (tmp_path / "out").exists()
    cfg = write_config(tmp_path, tiny_llama, base_model=str(tmp_path / "absent"))
    assert main(["merge", str(cfg), str(tmp_path / "out"), "--no-progress"]) == 1
    assert "absent: no such folder" in caplog.text
