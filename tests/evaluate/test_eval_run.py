"""Evaluating a real tiny classifier on Ray Data: metrics, thresholds, outputs, reports, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from eval_testlib import train_tiny_guard, write_files
from sklearn import metrics as skm

from guardray.evaluate.config import DatasetConfig, EvaluateConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def guard(tmp_path_factory) -> Path:
    return train_tiny_guard(tmp_path_factory.mktemp("guard"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("data"))


def _cfg(guard, files, out, **kw) -> EvaluateConfig:
    data = kw.pop("data", None) or [
        DatasetConfig(path=str(files["csv"]), text_column="prompt", label_column="is_unsafe",
                      name="Test CSV"),
        DatasetConfig(path=str(files["parquet"])),
    ]
    return EvaluateConfig(model=str(guard), data=data, output_dir=str(out), policy="safety",
                          **kw)


@pytest.fixture(scope="module")
def evaluated(ray_session, guard, files, tmp_path_factory):
    from guardray.evaluate.runner import run_evaluation

    out = tmp_path_factory.mktemp("eval") / "out"
    cfg = _cfg(guard, files, out, validation_data=DatasetConfig(path=str(files["val"])))
    return out, run_evaluation(cfg)


def test_metrics_json_and_predictions(evaluated, files):
    out, summary = evaluated
    top = json.loads((out / "metrics.json").read_text())
    assert top["model"] == summary["model"] == "guard"
    assert top["kind"] == "classifier" and top["threshold"]["source"] == "validation"
    assert [d["dataset"] for d in top["datasets"]] == ["Test CSV", "other"]
    for record in top["datasets"]:
        folder = out / record["folder"]
        flat = json.loads((folder / "metrics.json").read_text())
        for key in ("n", "precision", "recall", "f1", "macro_f1", "auroc", "auprc", "threshold",
                    "ms_per_prompt", "prompts_per_s"):
            assert key in flat and flat[key] is not None, key
        assert flat["threshold"] == top["threshold"]["threshold"]
        assert flat["ms_per_prompt"] > 0 and flat["prompts_per_s"] > 0
        pred = pd.read_parquet(folder / "predictions.parquet")
        assert len(pred) == flat["n"] and pred["row"].tolist() == list(range(flat["n"]))
        y, s, p = pred["label"].to_numpy(), pred["score"].to_numpy(), pred["prediction"].to_numpy()
        assert (p == (s >= flat["threshold"])).all()
        assert flat["precision"] == pytest.approx(skm.precision_score(y, p, zero_division=0))
        assert flat["recall"] == pytest.approx(skm.recall_score(y, p, zero_division=0))
        assert flat["f1"] == pytest.approx(skm.f1_score(y, p, zero_division=0))
        assert flat["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
        assert flat["auroc"] == pytest.approx(skm.roc_auc_score(y, s))
        assert flat["auprc"] == pytest.approx(skm.average_precision_score(y, s))
    csv_rows = pd.read_csv(files["csv"])
    pred = pd.read_parquet(out / "test-csv" / "predictions.parquet")
    assert pred["text"].tolist() == csv_rows["prompt"].tolist()  # input order kept
    assert pred["label"].tolist() == csv_rows["is_unsafe"].tolist()
    assert json.loads((out / "manifest.json").read_text())["stage"] == "evaluate"


def test_reports_are_written_and_readable(evaluated):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (not installed)")
    from PIL import Image

    out, _ = evaluated
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert "| model | Test CSV | other | average |" in md
    assert "![F1 per dataset per model (GuardFormer Figure 2)](plots/f1_per_dataset.png)" in md
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") >= 2
    for name in ("f1_per_dataset", "average_f1", "pr_curves", "confusion", "latency"):
        assert f'<img src="plots/{name}.png"' in page
        with Image.open(out / "plots" / f"{name}.png") as img:
            img.verify()
            assert img.format == "PNG"
        import matplotlib.image

        assert matplotlib.image.imread(out / "plots" / f"{name}.png").ndim == 3


@pytest.fixture(scope="module")
def scrambled(ray_session, guard, files, tmp_path_factory):
    """The CSV evaluated again with its labels permuted and flipped."""
    from guardray.evaluate.runner import run_evaluation

    folder = tmp_path_factory.mktemp("scrambled")
    rows = pd.read_csv(files["csv"])
    rng = np.random.default_rng(0)
    rows["is_unsafe"] = 1 - rng.permutation(rows["is_unsafe"].to_numpy())
    rows.to_csv(folder / "test.csv", index=False)
    cfg = _cfg(guard, files, folder / "out", name="scrambled",
               validation_data=DatasetConfig(path=str(files["val"])),
               data=[DatasetConfig(path=str(folder / "test.csv"), text_column="prompt",
                                   label_column="is_unsafe", name="Test CSV")],
               report={"enabled": False})
    return folder / "out", run_evaluation(cfg)


def test_threshold_never_reads_test_labels(evaluated, scrambled):
    """Flipping and permuting every evaluated label leaves threshold and scores unchanged."""
    (base_dir, base), (new_dir, summary) = evaluated, scrambled
    assert summary["threshold"] == base["threshold"]
    new = pd.read_parquet(new_dir / "test-csv" / "predictions.parquet")
    old = pd.read_parquet(base_dir / "test-csv" / "predictions.parquet")
    np.testing.assert_allclose(new["score"], old["score"], rtol=1e-6)
    assert (new["prediction"] == old["prediction"]).all()
    assert (new["label"] != old["label"]).any()
    assert summary["datasets"][0]["f1"] != base["datasets"][0]["f1"]


def test_threshold_from_checkpoint_or_fixed(guard, files, tmp_path):
    from guardray.evaluate.runner import _model_card, _threshold

    cfg = _cfg(guard, files, tmp_path)
    card = _model_card(cfg)
    choice = _threshold(cfg, card, None, None)
    assert choice.source == "checkpoint" and choice.threshold == card["threshold"]["threshold"]
    fixed = _cfg(guard, files, tmp_path, threshold={"rule": "fixed", "value": 0.3})
    assert _threshold(fixed, card, None, None).threshold == 0.3
    assert _threshold(cfg, {}, None, None).source == "default"
    # a UniGuard searched with per-policy thresholds: the evaluated policy's own
    uni = {**card, "threshold": {**card["threshold"], "per_policy": {
        "tax": {"threshold": 0.25, "n_validation": 7, "validation_f1": 0.8}}}}
    own = _threshold(cfg.model_copy(update={"policy": "tax"}), uni, None, None)
    assert (own.threshold, own.n_validation, own.source) == (0.25, 7, "checkpoint")
    other = _threshold(cfg.model_copy(update={"policy": "finance"}), uni, None, None)
    assert other.threshold == card["threshold"]["threshold"]


def test_compare_two_evaluations(evaluated, scrambled, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (not installed)")
    from guardray.evaluate.report import compare_evaluations

    paths = compare_evaluations([str(evaluated[0]), str(scrambled[0])], str(tmp_path / "cmp"))
    md = Path(paths["markdown"]).read_text()
    assert "| model | Test CSV | other | average |" in md
    assert "| guard | " in md and "| scrambled | " in md
    assert len(paths["plots"]) == 5
    page = Path(paths["html"]).read_text()
    assert page.count("<img ") == 5


def _cli(*args, cwd=REPO):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "guardray", "evaluate", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_errors_before_ray(guard, files, tmp_path):
    r = _cli("--model", str(guard), "--data", str(files["csv"]), "--out", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "missing column(s) ['text', 'label']; available: prompt, is_unsafe" in r.stderr
    r = _cli("--model", str(guard), "--data", str(files["csv"]), "--text-column", "prompt",
             "--label-column", "prompt", "--out", str(tmp_path))
    assert r.returncode == 1 and "unknown label value(s)" in r.stderr
    r = _cli("--data", str(files["csv"]), "--out", str(tmp_path))
    assert r.returncode == 2 and "nothing to evaluate" in r.stderr


@pytest.mark.slow
def test_cli_end_to_end(guard, files, tmp_path):
    r = _cli("--model", str(guard), "--data", str(files["csv"]), "--text-column", "prompt",
             "--label-column", "is_unsafe", "--validation-data", str(files["val"]),
             "--validation-text-column", "text", "--validation-label-column", "label",
             "--out", str(tmp_path / "o"), "ray.num_cpus=2")
    assert r.returncode == 0, r.stderr[-1500:]
    assert "average F1" in r.stdout
    assert (tmp_path / "o" / "report.html").is_file()


# --------------------------------------------------------------------------- issue 15


class _Stop(Exception):
    """Raised by the ``connect`` callback: the run got as far as starting Ray."""


def _stop():
    raise _Stop


@pytest.mark.parametrize("name", ["empty", "no_weights", "pickle_only", "remote_code",
                                  "no_tokenizer"])
def test_not_a_model_fails_before_ray(guard, files, tmp_path, name):
    """Item 2: ``--model <not a model>`` failed in a Ray actor after ~20 s (a long traceback
    ending in "install sentencepiece"); now before any data is read or Ray started."""
    from model_testlib import BAD_MODELS, make_bad_models

    from guardray.errors import ModelError
    from guardray.evaluate.runner import run_evaluation

    bad = make_bad_models(tmp_path / "models", guard)
    cfg = EvaluateConfig(model=str(bad[name]), output_dir=str(tmp_path / "out"),
                         data=[DatasetConfig(path=str(files["parquet"]))])
    with pytest.raises(ModelError, match=BAD_MODELS[name].replace("(", r"\(").replace(
            ")", r"\)").replace("*", r"\*")):
        run_evaluation(cfg, connect=_stop)
    assert not (bad["remote_code"] / "PWNED").exists()


def test_cli_not_a_model_is_one_line_and_no_ray(guard, files, tmp_path):
    from model_testlib import make_bad_models

    bad = make_bad_models(tmp_path / "models", guard)
    r = _cli("--model", str(bad["pickle_only"]), "--data", str(files["parquet"]),
             "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "holds only pickle weights" in errors[0], r.stderr
    assert "starting a local Ray instance" not in r.stderr


def test_out_onto_an_earlier_result_is_refused_unless_overwrite(evaluated, guard, files,
                                                                tmp_path):
    """Item 5: ``--out`` onto an earlier result replaced it silently and left the old dataset
    folders beside the new ones."""
    import shutil

    from guardray.evaluate.runner import run_evaluation

    out = tmp_path / "out"
    shutil.copytree(evaluated[0], out)
    (out / "notes.txt").write_text("mine")
    only_csv = [DatasetConfig(path=str(files["csv"]), text_column="prompt",
                              label_column="is_unsafe", name="Test CSV")]
    with pytest.raises(FileExistsError, match=rf"{out} holds an earlier evaluation "
                                              r"\(metrics.json\); pass --overwrite"):
        run_evaluation(_cfg(guard, files, out, data=only_csv), connect=_stop)
    assert (out / "other" / "metrics.json").is_file()  # untouched
    with pytest.raises(_Stop):  # with overwrite: the earlier result goes, just before Ray
        run_evaluation(_cfg(guard, files, out, data=only_csv, overwrite=True), connect=_stop)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_validation_data_that_is_the_evaluated_data_is_refused(guard, files, tmp_path):
    """Item 5: ``--validation-data`` accepted the test file itself (the threshold was tuned on
    the test rows); the same file, and a copy of its rows, are refused."""
    import shutil

    from guardray.config import ConfigError
    from guardray.evaluate.results import EvaluationError
    from guardray.evaluate.runner import run_evaluation

    same = _cfg(guard, files, tmp_path / "o1", data=[DatasetConfig(path=str(files["parquet"]))],
                validation_data=DatasetConfig(path=str(files["parquet"])))
    with pytest.raises(ConfigError, match=r"validation_data \(--validation-data\) is data\[0\] "
                                          r"itself .*other\.parquet"):
        run_evaluation(same, connect=_stop)
    copy = tmp_path / "copy.parquet"
    shutil.copy(files["parquet"], copy)
    copied = _cfg(guard, files, tmp_path / "o2", data=[DatasetConfig(path=str(files["parquet"]))],
                  validation_data=DatasetConfig(path=str(copy)))
    with pytest.raises(EvaluationError, match=r"validation data copy: all its \d+ distinct "
                                              r"text\(s\) are rows of the evaluated dataset"):
        run_evaluation(copied, connect=_stop)
    r = _cli("--model", str(guard), "--data", str(files["parquet"]), "--validation-data",
             str(files["parquet"]), "--out", str(tmp_path / "o3"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "is data[0] itself" in r.stderr


def test_output_that_is_a_file_or_read_only_fails_before_ray(guard, files, tmp_path):
    """Item 3: ``--out`` that is a file or on a read-only filesystem failed after the whole
    evaluation, with a traceback; now before anything is loaded."""
    from fs_testlib import tmpfs

    from guardray.errors import StorageError
    from guardray.evaluate.runner import run_evaluation

    data = [DatasetConfig(path=str(files["parquet"]))]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"output_dir \(--out\): output .*/file/o: .*"
                                                 r"/file exists and is a file"):
        run_evaluation(_cfg(guard, files, tmp_path / "file" / "o", data=data), connect=_stop)
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(StorageError, match=rf"output_dir \(--out\): cannot write {ro}: "
                                               r"Read-only file system"):
            run_evaluation(_cfg(guard, files, ro / "o", data=data), connect=_stop)


def test_overwrite_flag_reaches_the_config(tmp_path):
    from guardray.cli import build_parser
    from guardray.cli.evaluate_cmd import build_config

    base = ["evaluate", "--model", "m", "--data", "d.jsonl", "--out", str(tmp_path)]
    assert build_config(build_parser().parse_args(base)).overwrite is False
    assert build_config(build_parser().parse_args([*base, "--overwrite"])).overwrite is True
