"""The safeguard job end to end on the tiny config (real Ray Tune, Ray Data, peft, merges).

Marked slow (~80 s on 2 cores: two Tune experiments and seven Ray Data passes); the default
suite covers the pieces (tests/safeguard/test_safeguard_*.py) and stays under 20 minutes.
Run with ``pytest -m slow tests/safeguard``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from guardray.cli.registry import load_any_config
from guardray.merge import load_merge_config, run_merge
from guardray.safeguard import run_safeguard
from guardray.safeguard.evaluate import fingerprint
from guardray.safeguard.sweep import candidates

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def job(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("safeguard") / "out"
    cfg = load_any_config("configs/debug/safeguard.yaml", (
        f"output_dir={out}", "sweep.methods=[linear,model_stock]"))
    return cfg, run_safeguard(cfg), out


def test_every_candidate_is_scored_and_judged(job):
    cfg, result, out = job
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["base", "ft-seed0", "ft-seed1", "linear-w0.50-seed0", "model_stock"]
    judged = pd.read_parquet(out / "judgements.parquet")
    for name, row in rows.items():
        mine = judged[judged["candidate"] == name]
        assert len(mine) == row["total_guard"] == cfg.harmful.max_eval
        # ASR = harmful / (total - unparseable): the guard always answers
        assert row["asr_guard"] == pytest.approx(mine["guard_label"].mean())
        assert row["unparseable_guard"] == 0
        n_llm = int(mine["llm_label"].notna().sum())
        assert row["unparseable_llm"] == len(mine) - n_llm
        expected = (mine["llm_label"].sum() / n_llm) if n_llm else None
        assert row["asr_llm"] == (pytest.approx(expected) if n_llm else None)
        assert isinstance(row["downstream"], float) and -1.0 <= row["downstream"] <= 1.0
        responses = pd.read_parquet(out / "responses" / f"{name}.parquet")
        assert sorted(set(responses["kind"])) == ["downstream", "harmful"]
    assert not list((out / "candidates").glob("*/config.json"))  # merged weights removed


def test_report_choice_and_exports(job):
    cfg, result, out = job
    report = (out / "report.md").read_text()
    assert "| linear-w0.50-seed0 | linear | 0.50 |" in report and "## Choice" in report
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved["chosen"] == result["chosen"] is not None  # the debug rule accepts any ASR
    assert (out / "chosen" / "config.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["eval_harmful"] == cfg.harmful.max_eval
    guard = result["guard"]
    assert 0.0 <= guard["threshold"] <= 1.0 and (out / "judge/guard_data").is_dir()
    for seed in (0, 1):
        assert (out / f"finetune/seed{seed}/adapter/adapter_model.safetensors").is_file()


def test_a_recipe_reproduces_eq3_with_guardray_merge(job, tmp_path):
    _, _, out = job
    cfg = load_merge_config(out / "recipes" / "linear-w0.50-seed0.yaml")
    run_merge(cfg, tmp_path / "m", progress=False)
    merged = load_file(tmp_path / "m" / "model.safetensors")
    base = load_file(f"{cfg.base_model}/model.safetensors")
    ft = load_file(out / "finetune/seed0/merged/model.safetensors")
    name = next(k for k in base if "q_proj" in k)
    assert not torch.equal(base[name], ft[name])
    torch.testing.assert_close(merged[name], 0.5 * base[name] + 0.5 * ft[name])


def test_fingerprint_follows_what_responses_depend_on(job):
    cfg, _, out = job
    base = cfg.base
    cand = candidates(str(out / "finetune/seed0/merged"), [], methods=[], weights=[0.5],
                      drop_rate=0.0)[0]
    splits = {"eval_pairs": [("q", "a")], "eval_harmful": ["h"]}
    key = fingerprint(cfg, cand, splits)
    assert key == fingerprint(cfg, cand, splits)
    longer = cfg.model_copy(update={"generation": cfg.generation.with_sampling(max_tokens=9)})
    assert fingerprint(longer, cand, splits) != key
    assert fingerprint(cfg, cand, {**splits, "eval_harmful": ["h2"]}) != key
    assert base  # the config is unchanged by the run


def test_a_rerun_reuses_finished_steps(job):
    """A rerun trains and generates nothing."""
    cfg, result, out = job
    stamps = {p: p.stat().st_mtime_ns for p in [
        *(out / "responses").glob("*.parquet"), out / "finetune/seed0/merged/model.safetensors",
        out / "judge/guard_data/part-00000.parquet"]}
    tune_runs = set((out / "_tune").iterdir())
    again = run_safeguard(cfg.model_copy(update={"overwrite": True}))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing trained or generated
    assert set((out / "_tune").iterdir()) == tune_runs  # no new Tune experiment
    assert [r["asr_guard"] for r in again["rows"]] == [r["asr_guard"] for r in result["rows"]]
