"""How the pipeline chains its stages' configs (no Ray: configs only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardray.config import ConfigError, load_config
from guardray.pipeline import wiring as W
from guardray.pipeline.config import PipelineConfig
from guardray.pipeline.runner import plan_stages

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # stage configs are repo-relative paths


def pipeline(*overrides: str, path: str = "configs/pipeline.yaml") -> PipelineConfig:
    return load_config(PipelineConfig, path, ["output_dir=/tmp/gr-pipe", *overrides])


def test_every_stage_reads_the_previous_stages_folder():
    # configs/pipeline.yaml turns GIP off for the 2-core demo; with it on, GuardFormer
    # fine-tunes the GIP export
    cfg = pipeline("seed=5", "ray.num_cpus=3", "models.embedder=/models/emb",
                   "stages.pretrain.enabled=true", "stages.finetune.overrides=[method=guardformer]")
    plan = plan_stages(cfg)
    assert plan.data_dir == "/tmp/gr-pipe/data"  # the data step unites every source
    i = plan.ingest
    assert i.output_dir == "/tmp/gr-pipe/ingest" and i.seed == 5 and i.policies == cfg.policies
    assert i.other_policies == "skip" and i.dedup.method == "exact_only"  # data step dedups
    g = plan.generate
    assert g.output_dir == "/tmp/gr-pipe/generate" and g.seed == 5
    assert g.policies == cfg.policies and g.splits == cfg.splits
    assert g.llm.model == cfg.models.generator and g.dedup.embedder.model == "/models/emb"
    assert g.expand.unsafe_per_policy == 4  # the stage override from configs/pipeline.yaml
    assert W.source_dirs(cfg, i, g) == ["/tmp/gr-pipe/ingest", "/tmp/gr-pipe/seed",
                                        "/tmp/gr-pipe/generate/dedup"]
    p = plan.pretrain
    assert p.data.path == plan.data_dir and p.output_dir == "/tmp/gr-pipe/pretrain"
    assert p.storage_path == "/tmp/gr-pipe/pretrain/ray" and p.train.seed == 5
    f = plan.finetune
    assert f.data.path == plan.data_dir and f.output_dir == "/tmp/gr-pipe/finetune"
    assert f.method == "guardformer" and f.model.base == "/tmp/gr-pipe/pretrain/model"
    for stage in (i, g, p, f, plan.evaluate):
        assert stage.ray.num_cpus == 3


def test_without_ingest_and_generation_the_stages_train_on_the_seed_rows():
    plan = plan_stages(pipeline("stages.generate.enabled=false", "stages.ingest.enabled=false"))
    assert plan.generate is None and plan.ingest is None and plan.data_dir == "/tmp/gr-pipe/seed"
    assert plan.pretrain is None  # off in configs/pipeline.yaml
    assert plan.finetune.data.path == "/tmp/gr-pipe/seed"
    plan = plan_stages(pipeline("stages.generate.enabled=false", "stages.ingest.enabled=false",
                                "stages.pretrain.enabled=true"))
    assert plan.pretrain.data.path == "/tmp/gr-pipe/seed"
    cfg = pipeline("stages.generate.overrides=[dedup.enabled=false]")
    plan = plan_stages(cfg)
    assert plan.data_dir == "/tmp/gr-pipe/data"
    assert W.source_dirs(cfg, None, plan.generate)[-1] == "/tmp/gr-pipe/generate"  # raw shards


def test_evaluation_is_per_policy_on_its_test_rows_threshold_on_validation():
    cfg = pipeline()
    e = W.evaluate_config(cfg, "/d", "tax", "/tmp/gr-pipe/finetune/tax/seed0")
    assert e.model == "/tmp/gr-pipe/finetune/tax/seed0" and e.policy == "tax" and e.judge is None
    assert [(d.path, d.split) for d in e.data] == [("/d", "test")]
    assert (e.validation_data.path, e.validation_data.split) == ("/d", "validation")
    assert e.output_dir == "/tmp/gr-pipe/evaluate/tax"


def test_the_report_picks_each_models_threshold_with_its_stages_rule():
    # finetune's train.threshold_rule / the search's objective.threshold_rule reach the
    # evaluation of the models they made; an evaluate override still wins
    cfg = pipeline()
    assert W.evaluate_config(cfg, "/d", "tax", "/m").threshold.rule == "max_f1"  # evaluate.yaml
    e = W.evaluate_config(cfg, "/d", "tax", "/m", threshold_rule="max_f1_1se")
    assert e.threshold.rule == "max_f1_1se" and e.threshold.value == 0.5
    cfg = pipeline("stages.evaluate.overrides=[threshold.rule=fixed]")
    assert W.evaluate_config(cfg, "/d", "tax", "/m",
                             threshold_rule="max_f1_1se").threshold.rule == "fixed"
    plan = plan_stages(pipeline("stages.finetune.overrides=[method=policyguard, "
                                "train.threshold_rule=max_f1_1se]"))
    assert plan.finetune.train.threshold_rule == "max_f1_1se"
    assert plan.merge.objective.threshold_rule == "max_f1"
    # UniGuard is evaluated once per policy: the search scores each policy at its own cut
    assert plan.merge.objective.threshold_scope == "policy"
    plan = plan_stages(pipeline("stages.merge.overrides=[objective.threshold_scope=all]"))
    assert plan.merge.objective.threshold_scope == "all"


def test_policyguard_or_an_explicit_base_needs_no_pretraining():
    plan = plan_stages(pipeline("stages.pretrain.enabled=false",
                                "stages.finetune.overrides=[method=policyguard]"))
    assert plan.pretrain is None and plan.finetune.model.base == "embedded:all-minilm-l6-v2"
    plan = plan_stages(pipeline("stages.pretrain.enabled=false", "stages.finetune.overrides="
                                "[method=guardformer, model.base=/ckpt/gip]"))
    assert plan.finetune.model.base == "/ckpt/gip"


def test_inconsistent_stages_fail_before_anything_runs():
    with pytest.raises(ConfigError, match="guardformer fine-tunes a GIP checkpoint"):
        plan_stages(pipeline("stages.pretrain.enabled=false",
                             "stages.finetune.overrides=[method=guardformer]"))
    with pytest.raises(ConfigError, match="enable stages.finetune"):
        plan_stages(pipeline("stages.finetune.enabled=false"))
    with pytest.raises(ConfigError, match=r"stage 'generate' \(configs/generate.yaml\).*expand"):
        plan_stages(pipeline("stages.generate.overrides=[expand.unsafe_per_polcy=1]"))
    with pytest.raises(ConfigError, match="stage 'pretrain'.*file not found"):
        plan_stages(pipeline("stages.pretrain.enabled=true",
                             "stages.pretrain.config=configs/nope.yaml"))


def test_debug_pipeline_plans_tiny_stages():
    plan = plan_stages(pipeline(path="configs/debug/pipeline.yaml"))
    assert plan.generate is None and plan.pretrain.model.base == "tiny:xlmr"
    assert plan.finetune.model.base == plan.pretrain.output_dir + "/model"
