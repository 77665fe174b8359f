"""benchmarks/bench_safeguard_merge.py on tiny Llama models without MergeKit: one table row per
candidate of the sweep, MergeKit reported as not installed, and guardray's linear merge at
weight w equal to (1 - w) base + w fine-tune (safeguard eq. 3), checked by hand on one tensor.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_safeguard_merge.py"
WEIGHTS = ["0.25", "0.75"]


def load_bench():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports benchmarks/_bench.py
    try:
        spec = importlib.util.spec_from_file_location("bench_safeguard_merge", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> dict[str, Path]:
    from guardray.modeling.tiny import build_llama_family

    return build_llama_family(tmp_path_factory.mktemp("llama"), n_finetuned=2)


def test_sweep_table_and_linear_identity(family, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    bench = load_bench()
    report = tmp_path / "rows.json"
    rows = bench.main([
        "--base", str(family["base"]), "--finetuned", str(family["ft0"]), str(family["ft1"]),
        "--weights", *WEIGHTS, "--mergekit-bin", str(tmp_path / "no-mergekit-yaml"),
        "--workdir", str(tmp_path / "work"), "--json", str(report),
    ])
    out = capsys.readouterr().out

    # 3 swept methods x 2 weights + model stock over both fine-tunes
    expected = {(m, w) for m in ("linear", "slerp", "dare_linear") for w in WEIGHTS}
    expected.add(("model_stock", "-"))
    table = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in out.splitlines() if line.startswith("| ")]
    header, body = table[0], table[1:]
    assert header[:5] == ["method", "weight", "guardray s", "MergeKit s", "ratio"]
    cells = [r for r in body if r[0] in ("linear", "slerp", "dare_linear", "model_stock")]
    assert {(r[0], r[1]) for r in cells} == expected and len(cells) == len(expected)
    assert all(r[3] == "not installed" for r in cells)
    assert any(r[0] == "**total**" for r in body)
    assert len(rows) == len(expected) and len(json.loads(report.read_text())["rows"]) == len(rows)

    # guardray's linear merge at w = 0.25, by hand: (1 - w) * base + w * ft0
    w = 0.25
    row = next(r for r in rows if r["method"] == "linear" and r["weight"] == w)
    merged = bench.tensors(Path(row["guardray_out"]))
    name = "model.layers.1.self_attn.q_proj.weight"
    base = load_file(str(family["base"] / "model.safetensors"))[name]
    ft = bench.read(bench.tensors(family["ft0"])[name]).float()  # ft0 is sharded
    got = bench.read(merged[name]).float()
    assert not torch.equal(ft, base)
    torch.testing.assert_close(got, (1 - w) * base + w * ft, rtol=0, atol=1e-6)
