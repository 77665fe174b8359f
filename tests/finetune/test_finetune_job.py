"""The finetune job: config rules, data grouping, and (policy x seed) trials on Ray Tune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sample_testlib import sample_rows, write_sample_shards

from guardray import schema as S
from guardray.config import ConfigError, load_config
from guardray.data import DatasetError
from guardray.finetune.config import FinetuneConfig
from guardray.finetune.data import FinetuneDataError, build_groups, build_inputs, load_frames
from guardray.policies import load_policies

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug" / "finetune.yaml"


def _cfg(*overrides: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, DEBUG, overrides)


def test_method_defaults_and_multi_policy_rule():
    cfg = _cfg()
    assert (cfg.resolved_tuning, cfg.resolved_input_format) == ("full", "text")
    gf = _cfg("method=guardformer")
    assert (gf.resolved_tuning, gf.resolved_input_format) == ("classifier", "instruction")
    assert _cfg("method=guardformer", "tuning=full").resolved_tuning == "full"
    with pytest.raises(ConfigError, match="needs input_format 'instruction'"):
        _cfg("scope=multi_policy")
    with pytest.raises(ConfigError, match=r"train.lrate: unknown key.*valid keys here: .*\blr\b"):
        _cfg("train.lrate=1")


def test_groups_use_train_and_validation_only(tmp_path):
    shards = write_sample_shards(tmp_path / "data")
    policies = {p.id: p for p in load_policies([REPO / "configs" / "policies"])}
    cfg = _cfg(f"data.path={shards}")
    train, val = load_frames(cfg)
    assert set(train[S.SPLIT]) == {"train"} and set(val[S.SPLIT]) == {"validation"}
    groups = build_groups(cfg, train, val, policies)
    assert [g.name for g in groups] == ["finance", "tax"]
    assert len(groups[0].train) == 64 and len(groups[0].validation) == 24
    multi = _cfg(f"data.path={shards}", "method=guardformer", "scope=multi_policy")
    (g,) = build_groups(multi, *load_frames(multi), policies)
    assert g.name == "multi" and g.policy_ids == ["finance", "tax"] and len(g.train) == 128
    inputs = build_inputs(g.validation, input_format="instruction", policies=policies,
                          sep_token="</s>")
    assert inputs[0].startswith(policies[g.validation.policy_ids[0]].description + "\nQuery: ")


def test_data_errors_are_explained(tmp_path):
    policies = {p.id: p for p in load_policies([REPO / "configs" / "policies"])}
    shards = write_sample_shards(tmp_path / "d")
    cfg = _cfg(f"data.path={shards}", "policy_ids=[tax,safety]")
    with pytest.raises(FinetuneDataError, match=r"no rows for policy id\(s\) \['safety'\]"):
        build_groups(cfg, *load_frames(cfg), policies)
    with pytest.raises(DatasetError, match=r"no rows of policy 'safety'; policies present"):
        load_frames(_cfg(f"data.path={shards}", "policy_ids=[safety]"))
    rows = [r for r in sample_rows() if not (r[S.SPLIT] == "train" and r[S.LABEL] == 1)]
    from guardray.io.shards import write_shard

    write_shard(rows, tmp_path / "one-class", index=0)
    cfg = _cfg(f"data.path={tmp_path / 'one-class'}")
    with pytest.raises(FinetuneDataError, match="training rows hold one class only"):
        build_groups(cfg, *load_frames(cfg), policies)
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n"
                             for i in range(40)))
    with pytest.raises(FinetuneDataError, match="set policy_ids to the one policy"):
        load_frames(_cfg(f"data.path={plain}"))
    train, val = load_frames(_cfg(f"data.path={plain}", "policy_ids=[tax]"))
    assert len(train) + len(val) == 40 and 0 < len(val) < 20  # hash split, 10 % validation


def test_finetune_job_runs_trials_on_ray(ray_session, tmp_path):
    from jobs.finetune import main

    shards = write_sample_shards(tmp_path / "data")
    out = tmp_path / "out"
    cfg = _cfg(f"data.path={shards}", f"output_dir={out}", "overwrite=false")
    main(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 0 and len(summary["trials"]) == 2
    for record in summary["trials"]:
        ckpt = out / record["group"] / "seed0"
        assert record["checkpoint"] == str(ckpt)
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "guardray_model.json").is_file()
        assert record["best_val_f1"] > record["initial_val_f1"]
        card = json.loads((ckpt / "guardray_model.json").read_text())
        assert card["input_format"] == "text" and card["policy_ids"] == [record["group"]]
        assert card["threshold"]["source"] in ("validation", "default")
    assert set(summary["best"]) == {"finance", "tax"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "finetune" and manifest["counts"]["out"] == 2
    assert "| finance | 0 * | ok |" in (out / "summary.md").read_text()
    # A second run would overwrite the checkpoints: refused before any trial starts.
    with pytest.raises(FileExistsError, match="already exist"):
        main(cfg)


def test_cli_print_config_and_data_error(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "guardray", "finetune", "--config", str(DEBUG),
                        "trials.seeds=[0,1]", "--print-config"], cwd=REPO, capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "job: finetune" in r.stdout and "- 1" in r.stdout
    r = subprocess.run([sys.executable, "-m", "guardray", "finetune", "--config", str(DEBUG),
                        f"data.path={tmp_path / 'missing.jsonl'}"], cwd=REPO,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "file not found" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_policyguard_on_embedded_minilm(tmp_path):
    """Full fine-tuning of the packaged all-MiniLM-L6-v2 (a real pretrained encoder)."""
    from guardray.finetune.run import finetune_one, resolve_base
    from guardray.modeling.offline import MissingExtraError

    try:
        base = resolve_base("embedded:all-minilm-l6-v2")
    except MissingExtraError as exc:
        pytest.skip(str(exc))
    shards = write_sample_shards(tmp_path / "data", policy_ids=("tax",))
    cfg = _cfg(f"data.path={shards}", f"output_dir={tmp_path / 'out'}", "policy_ids=[tax]",
               "model.base=embedded:all-minilm-l6-v2", "train.lr=5e-5", "train.epochs=3",
               "model.max_length=64")
    policies = {p.id: p for p in load_policies(cfg.policies)}
    (group,) = build_groups(cfg, *load_frames(cfg), policies)
    record = finetune_one(cfg, base, group, 0, policies)
    assert record["best_val_f1"] >= 0.9
    assert (tmp_path / "out" / "tax" / "seed0" / "model.safetensors").is_file()
