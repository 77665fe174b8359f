"""GuardFormer path: a "GIP checkpoint" fine-tuned with CFT on two policies (instruction
inputs, one model), then evaluated per policy on the test split with Ray Data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sample_testlib import write_sample_shards

from guardray.config import load_config
from guardray.finetune.config import FinetuneConfig
from guardray.finetune.data import build_groups, load_frames
from guardray.finetune.run import finetune_one
from guardray.modeling.tiny import build_tiny_xlmr
from guardray.policies import load_policies

REPO = Path(__file__).resolve().parents[2]

# Short descriptions: the tiny model has 130 positions, and instruction inputs put the
# description before the prompt.
POLICY = """# guardray policies validate {id}.yaml
id: {id}
name: {name}
description: Avoid {name}.
allowed: [general questions]
disallowed: [{name}]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("gf")
    pol = root / "policies"
    pol.mkdir()
    for pid, name in (("tax", "tax advice"), ("finance", "financial advice")):
        (pol / f"{pid}.yaml").write_text(POLICY.format(id=pid, name=name))
    gip = build_tiny_xlmr(root / "gip", seed=3)  # stands in for a GIP checkpoint
    shards = write_sample_shards(root / "data")
    cfg = load_config(FinetuneConfig, REPO / "configs" / "debug" / "finetune.yaml", [
        "method=guardformer", "scope=multi_policy", f"policies=[{pol}]", f"model.base={gip}",
        f"data.path={shards}", f"output_dir={root / 'out'}", "train.lr=0.05", "train.epochs=6"])
    policies = {p.id: p for p in load_policies(cfg.policies)}
    (group,) = build_groups(cfg, *load_frames(cfg), policies)
    record = finetune_one(cfg, str(gip), group, 0, policies)
    return root, gip, shards, record


def test_cft_trains_only_the_head_of_the_gip_checkpoint(trained):
    root, gip, _, record = trained
    ckpt = Path(record["checkpoint"])
    assert ckpt == root / "out" / "multi" / "seed0"
    before, after = load_file(gip / "model.safetensors"), load_file(ckpt / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("classifier.") for k in changed)
    assert record["trainable_params"] < record["total_params"]
    assert record["best_val_f1"] > record["initial_val_f1"]
    card = json.loads((ckpt / "guardray_model.json").read_text())
    assert card["tuning"] == "classifier" and card["input_format"] == "instruction"
    assert card["policies"]["tax"]["description"] == "Avoid tax advice."


def test_evaluate_instruction_model_per_policy(ray_session, trained):
    from guardray.evaluate.config import DatasetConfig, EvaluateConfig
    from guardray.evaluate.runner import run_evaluation

    root, _, shards, record = trained
    cfg = EvaluateConfig(model=record["checkpoint"], output_dir=str(root / "eval"),
                         policies=[], data=[DatasetConfig(path=str(shards), split="test")],
                         report={"plots": False})
    summary = run_evaluation(cfg)
    assert summary["input_format"] == "instruction"  # from the checkpoint's card
    assert summary["threshold"]["source"] == "checkpoint"
    (rec,) = summary["datasets"]
    assert rec["n"] == 32 and rec["dropped"] == {"other_split": 176}
    assert set(rec["by_policy"]) == {"finance", "tax"}
    assert sum(p["n"] for p in rec["by_policy"].values()) == 32
    assert rec["f1"] > 0.5
