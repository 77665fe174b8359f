"""The end-to-end pipeline job on the debug config, on the shared Ray session."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from guardray import schema as S
from guardray.config import load_config
from guardray.pipeline.config import PipelineConfig

REPO = Path(__file__).resolve().parents[2]


def test_pipeline_debug_config_writes_seed_shards_manifest_and_report(ray_session, tmp_path, monkeypatch, capsys):
    from jobs.pipeline import main

    monkeypatch.chdir(REPO)
    cfg = load_config(PipelineConfig, REPO / "configs/debug/pipeline.yaml", [f"output_dir={tmp_path}"])
    main(cfg)

    table = pq.read_table(tmp_path / "seed" / "part-00000.parquet")
    assert table.column_names == list(S.COLUMNS)
    assert set(table.column(S.POLICY_ID).to_pylist()) == {"tax", "finance"}
    assert table.num_rows == 24
    assert sorted(set(table.column(S.SPLIT).to_pylist())) <= ["test", "train", "validation"]

    manifest = json.loads((tmp_path / "seed" / "manifest.json").read_text())
    assert manifest["counts"]["in"] == manifest["counts"]["out"] == 24
    assert manifest["extra"]["per_policy"] == {"tax": {"unsafe": 6, "safe": 6}, "finance": {"unsafe": 6, "safe": 6}}

    report = (tmp_path / "report.md").read_text()
    assert "| seed | done | 24 rows" in report
    assert "| generate | not yet available |" in report  # never pretends a stage ran
    assert report in capsys.readouterr().out
