"""``guardray classify`` on Ray Data: values equal direct model calls, policies, truncation,
pass-through columns, outputs; bad input fails before Ray with one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from serve_testlib import POLICIES, PROMPTS, direct_scores, make_guard

from guardray.serve import ClassifyConfig, run_classify


@pytest.fixture(scope="module")
def guards(tmp_path_factory):
    root = tmp_path_factory.mktemp("guards")
    return {"text": make_guard(root / "text", threshold=0.45),
            "instruction": make_guard(root / "inst", input_format="instruction", seed=1)}


def _cfg(model, inp, out, **kw) -> ClassifyConfig:
    model_kw = {k: kw.pop(k) for k in ("policy_ids", "max_length") if k in kw}
    return ClassifyConfig(model={"path": str(model), "policies": [], **model_kw},
                          input=str(inp), output_dir=str(out), batch_size=3,
                          num_cpus=0.5, num_gpus=0, **kw)


def test_classify_equals_direct_model_calls_and_flags_truncation(ray_session, guards, tmp_path):
    long = " ".join(["compound interest stocks savings"] * 60)  # > 128 tokens
    texts = PROMPTS + [long]
    inp = tmp_path / "traffic.jsonl"
    inp.write_text("".join(json.dumps({"text": t, "user": f"u{i}"}) + "\n"
                           for i, t in enumerate(texts)))
    summary = run_classify(_cfg(guards["text"], inp, tmp_path / "out"), connect=lambda: None)
    out = pd.concat(pd.read_parquet(f) for f in summary["files"])
    assert summary["pairs"] == len(texts) == len(out)
    assert list(out["row"]) == list(range(len(texts))) and list(out["user"]) == [
        f"u{i}" for i in range(len(texts))]
    expected = direct_scores(guards["text"], texts, max_length=128)
    np.testing.assert_allclose(out["unsafe_probability"], expected, atol=1e-5)
    assert list(out["label"]) == ["unsafe" if p >= 0.45 else "safe" for p in expected]
    assert list(out["truncated"]) == [False] * len(PROMPTS) + [True]
    assert set(out["policy_id"]) == {"finance"} and set(out["threshold"]) == {0.45}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["counts"]["in"], manifest["counts"]["out"]) == (5, 5)
    assert manifest["stage"] == "classify"


@pytest.mark.slow
def test_instruction_guard_scores_each_row_under_each_policy(ray_session, guards, tmp_path):
    inp = tmp_path / "traffic.csv"
    pd.DataFrame({"text": PROMPTS[:3]}).to_csv(inp, index=False)
    out_file = tmp_path / "verdicts.jsonl"
    run_classify(_cfg(guards["instruction"], inp, out_file, policy_ids=sorted(POLICIES)),
                 connect=lambda: None)
    out = pd.read_json(out_file, lines=True)
    pids = sorted(POLICIES) * 3
    assert list(out["policy_id"]) == pids and list(out["row"]) == [0, 0, 1, 1, 2, 2]
    texts = [t for t in PROMPTS[:3] for _ in POLICIES]
    expected = direct_scores(guards["instruction"], texts, pids, instruction=True)
    np.testing.assert_allclose(out["unsafe_probability"], expected, atol=1e-5)
    # the policy text changes the input, so the two policies' scores differ
    assert not np.allclose(out["unsafe_probability"][::2], out["unsafe_probability"][1::2])


def test_cli_classify_refuses_bad_runs_with_one_line_before_ray(guards, tmp_path, capsys):
    from guardray.cli import main

    inp = tmp_path / "in.parquet"
    pd.DataFrame({"prompt": PROMPTS}).to_parquet(inp)
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(b"earlier output")
    base = ["classify", "--model", str(guards["instruction"]), "--text-column", "prompt",
            "model.policies=[]"]
    assert main(base + ["--input", str(inp), "--output", str(out)]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "part-00000.parquet").read_bytes() == b"earlier output"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "policy_id": "tax"}) + "\n")
    assert main(base + ["--input", str(bad), "--output", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 0: unknown policy 'tax'" in err[0]
    assert main(["classify", "--model", str(tmp_path / "nope"), "--input", str(inp),
                 "--output", str(tmp_path / "o3")]) == 1
    assert "no such folder" in capsys.readouterr().err
