"""The end-to-end pipeline job on the debug config, on the shared Ray session."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from guardray import schema as S
from guardray.config import load_config
from guardray.pipeline.config import PipelineConfig

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs/debug/pipeline.yaml"


def test_debug_pipeline_chains_seed_pretrain_finetune_evaluate(ray_session, tmp_path, monkeypatch,
                                                               capsys):
    from transformers import AutoModelForSequenceClassification

    from jobs.pipeline import main

    monkeypatch.chdir(REPO)
    main(load_config(PipelineConfig, DEBUG, [f"output_dir={tmp_path}"]))

    table = pq.read_table(tmp_path / "seed" / "part-00000.parquet")
    assert table.column_names == list(S.COLUMNS) and table.num_rows == 24
    assert set(table.column(S.POLICY_ID).to_pylist()) == {"tax", "finance"}
    manifest = json.loads((tmp_path / "seed" / "manifest.json").read_text())
    assert manifest["extra"]["per_policy"] == {"tax": {"unsafe": 6, "safe": 6},
                                               "finance": {"unsafe": 6, "safe": 6}}

    # the GIP export is what GuardFormer fine-tuned, and each classifier was evaluated
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "pretrain" / "model")
    finetune = json.loads((tmp_path / "finetune" / "summary.json").read_text())
    assert finetune["method"] == "guardformer"
    assert finetune["base_model"] == str(tmp_path / "pretrain" / "model")
    assert sorted(finetune["best"]) == ["finance", "tax"]
    for policy in ("finance", "tax"):
        metrics = json.loads((tmp_path / "evaluate" / policy / "metrics.json").read_text())
        row = metrics["datasets"][0]
        test_rows = table.filter(pc.and_(pc.equal(table[S.POLICY_ID], policy),
                                            pc.equal(table[S.SPLIT], "test")))
        assert row["n"] == test_rows.num_rows > 0  # only that policy's test rows

    # the merge search ran on the two TaskGuards; UniGuard is evaluated under both policies
    search = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert search["trials"] == 2 and (tmp_path / "search" / "recipe.yaml").is_file()
    for policy in ("finance", "tax"):
        assert (tmp_path / "evaluate" / f"uniguard-{policy}" / "metrics.json").is_file()

    report = (tmp_path / "report.md").read_text()
    for stage in ("policies", "seed", "pretrain", "finetune", "merge", "evaluate"):
        assert f"| {stage} | done |" in report, stage
    for stage in ("ingest", "generate", "dedup", "data"):
        assert f"| {stage} | skipped |" in report, stage  # never pretends a stage ran
    assert "(step 4, loss " in report and ", mlm " in report and ", alice " in report
    assert "| tax | tax/seed0 |" in report and "| finance | finance/seed0 |" in report
    assert "| tax | UniGuard |" in report and "| finance | UniGuard |" in report
    assert report in capsys.readouterr().out

    # A rerun (a resubmitted job) reuses every finished training and evaluation step: nothing
    # is trained or written again, and the report is the same but for the reuse notes.
    weights = tmp_path / "finetune" / "tax" / "seed0" / "model.safetensors"
    stamps = {p: p.stat().st_mtime_ns for p in (weights, tmp_path / "search" / "summary.json",
                                                tmp_path / "evaluate" / "tax" / "metrics.json")}
    main(load_config(PipelineConfig, DEBUG, [f"output_dir={tmp_path}"]))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = (tmp_path / "report.md").read_text()
    for stage in ("pretrain", "finetune", "merge"):
        line = next(ln for ln in again.splitlines() if ln.startswith(f"| {stage} | done |"))
        assert line.endswith("(finished in a previous run with this config: reused) |"), line
    def tables(text: str) -> str:
        return text[text.index("## Test metrics"):text.index("\nmodels:")]

    assert tables(again) == tables(report)  # the same metrics, read back from the saved results


def test_a_failing_stage_is_reported_and_raised(ray_session, tmp_path, monkeypatch):
    from guardray.data import DatasetError
    from jobs.pipeline import main

    monkeypatch.chdir(REPO)
    cfg = load_config(PipelineConfig, DEBUG, [
        f"output_dir={tmp_path}", "stages.pretrain.enabled=false",
        "stages.finetune.overrides=[method=policyguard, 'policy_ids=[nope]']"])
    with pytest.raises(DatasetError, match="no rows of policy 'nope'"):
        main(cfg)
    report = (tmp_path / "report.md").read_text()
    assert "| seed | done |" in report and "| pretrain | skipped |" in report
    assert "| finetune | failed | DatasetError: no rows of policy 'nope'" in report
    assert "| evaluate | not run | the finetune stage failed |" in report
    assert "| merge | not run | the finetune stage failed |" in report


@pytest.mark.slow
def test_debug_pipeline_with_generation_and_dedup(ray_session, tmp_path, monkeypatch):
    from jobs.pipeline import main

    monkeypatch.chdir(REPO)
    main(load_config(PipelineConfig, DEBUG, [
        f"output_dir={tmp_path}", "stages.generate.enabled=true",
        "policies=[configs/policies/tax.yaml]",
        "stages.generate.overrides=[expand.unsafe_per_policy=6, expand.safe_per_policy=6]"]))
    report = (tmp_path / "report.md").read_text()
    for stage in ("seed", "generate", "dedup", "pretrain", "finetune", "evaluate"):
        assert f"| {stage} | done |" in report, stage
    finetune = json.loads((tmp_path / "finetune" / "summary.json").read_text())
    assert finetune["groups"]["tax"]["train"]  # trained on the generated, deduplicated rows
    assert json.loads((tmp_path / "generate" / "dedup" / "manifest.json").read_text())


def test_a_policy_without_test_rows_is_reported_not_failed(ray_session, tmp_path, monkeypatch):
    from jobs.pipeline import main

    monkeypatch.chdir(REPO)
    # seed 6 with these splits leaves tax without test rows (finance has 3)
    main(load_config(PipelineConfig, DEBUG, [
        f"output_dir={tmp_path}", "seed=6", "splits={validation: 0.25, test: 0.1}",
        "stages.pretrain.enabled=false", "stages.merge.enabled=false",
        "stages.finetune.overrides=[method=policyguard]"]))
    report = (tmp_path / "report.md").read_text()
    assert "| evaluate | done | finance/seed0 on finance: test F1" in report
    assert "tax: no test rows" in report
    assert "| tax | tax/seed0 | 0 | - | - | - | - | - |" in report
    assert (tmp_path / "evaluate" / "finance" / "metrics.json").is_file()
    assert not (tmp_path / "evaluate" / "tax").exists()


def test_ingested_data_cross_source_alarming_safe_and_judge_in_the_report(ray_session, tmp_path,
                                                                         monkeypatch):
    """The debug data pack is imported, united with the seed rows (dedup, group splits), and
    each guard is scored on its test rows, the held-out sources, the alarming-but-safe
    prompts, and against the SmolLM2 judge on the same judged rows."""
    from jobs.pipeline import main

    monkeypatch.chdir(REPO)
    main(load_config(PipelineConfig, DEBUG, [
        f"output_dir={tmp_path}", "policies=[configs/policies/safety.yaml]",
        "stages.ingest.enabled=true", "stages.pretrain.enabled=false",
        "stages.finetune.overrides=[method=policyguard, train.epochs=1]",
        "evaluation.judge=configs/judges/smollm2-safe-unsafe.yaml",
        "evaluation.judge_policies=[safety]"]))
    data = json.loads((tmp_path / "data" / "manifest.json").read_text())
    counts = data["extra"]["counts"]["safety"]
    assert any(k.startswith("imported (held out) unsafe test") for k in counts), counts
    assert any(k.startswith("imported safe train") for k in counts), counts
    assert any(k.startswith("policy examples") for k in counts), counts
    cross = pq.read_table(tmp_path / "data" / "cross_source" / "part-00000.parquet")
    assert set(cross.column(S.SPLIT).to_pylist()) == {"test"}
    assert all(g.endswith(":held_out") for g in cross.column(S.GENERATOR).to_pylist())
    train = pq.read_table(tmp_path / "data" / "part-00000.parquet").to_pandas()
    assert not set(train[train[S.SPLIT] == "train"][S.TEXT]) & set(
        cross.column(S.TEXT).to_pylist())  # held-out prompts never train
    metrics = json.loads((tmp_path / "evaluate" / "safety" / "metrics.json").read_text())
    names = [d["dataset"] for d in metrics["datasets"]]
    assert names == ["test", "cross-source", "judged", "alarming-safe"]
    alarming = metrics["datasets"][3]
    assert alarming["n_unsafe"] == 0 and 0 <= alarming["fpr"] <= 1
    judged = json.loads((tmp_path / "evaluate" / "judge" / "safety" / "metrics.json").read_text())
    assert judged["datasets"][0]["n"] == metrics["datasets"][2]["n"] == 4  # the same rows
    report = (tmp_path / "report.md").read_text()
    for stage in ("ingest", "data", "finetune", "evaluate"):
        assert f"| {stage} | done |" in report, stage
    quality = report.split("## What the guards are worth", 1)[1]
    row = next(line for line in quality.splitlines() if line.startswith("| safety | safety/"))
    assert row.count("|") == 8 and ("| met |" in row or "missed:" in row)
    assert "(4, " in row or "(4)" in row  # the judged column: guard / judge on the 4 rows
