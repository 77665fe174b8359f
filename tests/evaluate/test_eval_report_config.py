"""Reports from in-memory results (classifier + judge), evaluate/judge configs, CLI parsing."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guardray.cli.registry import load_any_config
from guardray.config import ConfigError, load_config
from guardray.evaluate.config import EvaluateConfig
from guardray.evaluate.report import render, write_report
from guardray.evaluate.runner import DatasetResult
from guardray.metrics.binary import compute_metrics

REPO = Path(__file__).resolve().parents[2]
JUDGES = sorted((REPO / "configs" / "judges").glob("*.yaml"))


def _results():
    rng = np.random.default_rng(0)
    out = []
    for model, kind in (("guard", "classifier"), ("gpt-judge", "judge")):
        for dataset in ("ToxicChat", "DeepSet | pipes"):
            y = rng.integers(0, 2, 50)
            if kind == "classifier":
                s = np.clip(y * 0.4 + rng.random(50) * 0.6, 0, 1)
                rec = compute_metrics(y, s, 0.5)
                pred = (s >= 0.5).astype(int)
            else:
                s, pred = None, np.where(rng.random(50) < 0.1, -1, rng.integers(0, 2, 50))
                ok = pred >= 0
                rec = compute_metrics(y[ok], pred[ok].astype(float), 0.5)
                rec.update(n_unparseable=int((~ok).sum()), threshold=None)
            rec.update(model=model, dataset=dataset, ms_per_prompt=3.5, prompts_per_s=200.0,
                       threshold_source="validation" if s is not None else "judge",
                       by_policy={"safety": {"n": 30, "precision": 0.5, "recall": 0.5,
                                             "f1": 0.5, "macro_f1": 0.5}})
            out.append(DatasetResult(model, kind, dataset, dataset.lower(), rec, y, s, pred))
    return out


def test_tables_and_documents():
    md, page = render(_results(), title="T <&>", notes=["a note"])
    assert "| model | ToxicChat | DeepSet \\| pipes | average |" in md
    assert "| gpt-judge | " in md and "| safety |" in md
    assert "<h1>T &lt;&amp;&gt;</h1>" in page and "<li>a note</li>" in page
    assert page.count("<table>") == 3


def test_write_report_with_plots(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (not installed)")
    from PIL import Image

    paths = write_report(str(tmp_path), _results(), title="x")
    assert [Path(p).name for p in paths["plots"]] == [
        "f1_per_dataset.png", "average_f1.png", "pr_curves.png", "confusion.png", "latency.png"]
    for p in paths["plots"]:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.size[0] > 100
    page = (tmp_path / "report.html").read_text()
    assert page.count('<img src="plots/') == 5
    no_plots = write_report(str(tmp_path / "np"), _results(), title="x", plots=False)
    assert no_plots["plots"] == [] and "<img" not in (tmp_path / "np" / "report.html").read_text()


def test_nan_metrics_render_as_dash():
    r = _results()[0]
    r.record["auroc"] = math.nan
    md, _ = render([r], title="t")
    assert "| – |" in md


@pytest.mark.parametrize("path", JUDGES, ids=lambda p: p.name)
def test_judge_files_are_evaluate_configs(path):
    cfg = load_any_config(path)
    assert isinstance(cfg, EvaluateConfig) and cfg.judge is not None and cfg.model is None
    assert cfg.judge.template in ("safe_unsafe", "llamaguard")
    with pytest.raises(ConfigError, match="no data to evaluate on"):
        cfg.check_runnable()


def test_evaluate_config_rules(tmp_path):
    with pytest.raises(ConfigError, match="either model or judge, not both"):
        load_config(EvaluateConfig, data={"model": "m", "judge": {}})
    with pytest.raises(ConfigError, match="a dataset needs a path or a benchmark"):
        load_config(EvaluateConfig, data={"model": "m", "data": [{"name": "x"}]})
    with pytest.raises(ConfigError, match="unknown benchmark 'toxic'; valid: deepset"):
        load_config(EvaluateConfig, data={"model": "m", "data": [{"benchmark": "toxic"}]})
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        EvaluateConfig(data=[{"path": "x.csv"}]).check_runnable()
    assert EvaluateConfig(model="out/tax/seed3").display_name == "tax/seed3"
    assert EvaluateConfig(model="models/uniguard/").display_name == "uniguard"


def test_cli_judge_flags_override_the_file(tmp_path):
    judge = REPO / "configs" / "judges" / "smollm2-llamaguard.yaml"
    r = subprocess.run(
        [sys.executable, "-m", "guardray", "evaluate", "--judge", str(judge), "--data",
         "bench:toxicchat=export.parquet", "--data", "mine.csv", "--policy", "safety",
         "--limit", "3", "--out", str(tmp_path), "judge.llm.batch_size=2", "--print-config"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cfg = load_config(EvaluateConfig, data=__import__("yaml").safe_load(r.stdout))
    assert cfg.judge.template == "llamaguard" and cfg.judge.llm.batch_size == 2
    assert [d.benchmark for d in cfg.data] == ["toxicchat", None]
    assert cfg.data[0].limit == 3 and cfg.policy == "safety" and cfg.output_dir == str(tmp_path)
    bad = tmp_path / "notajudge.yaml"
    bad.write_text("# guardray\njob: evaluate\n")
    r = subprocess.run([sys.executable, "-m", "guardray", "evaluate", "--judge", str(bad),
                        "--data", "x.csv", "--out", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "needs a 'judge:' section" in r.stderr


def test_judge_needs_a_policy_before_anything_runs(tmp_path):
    from guardray.evaluate.runner import EvaluationError, run_evaluation

    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hi", "label": 0}\n')
    cfg = load_config(EvaluateConfig, REPO / "configs" / "judges" / "smollm2-safe-unsafe.yaml")
    base = {"data": [{"path": str(data)}], "output_dir": str(tmp_path / "o"),
            "policies": [str(REPO / "configs" / "policies")]}

    def never():
        raise AssertionError("Ray must not start for a config that cannot run")

    with pytest.raises(EvaluationError, match="rows have no policy; .* pass --policy ID"):
        run_evaluation(cfg.model_copy(update=_validated(base)), connect=never)
    with pytest.raises(EvaluationError, match="policy 'nope' is not among the loaded policies"):
        run_evaluation(cfg.model_copy(update=_validated({**base, "policy": "nope"})),
                       connect=never)


def _validated(update: dict) -> dict:
    cfg = EvaluateConfig.model_validate({"model": "x", **update})
    return {k: getattr(cfg, k) for k in update}
