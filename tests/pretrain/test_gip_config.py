"""PretrainConfig rules, the step plan, policy descriptions and the ``guardray pretrain`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pretrain_testlib import DEBUG, REPO

from guardray.cli.registry import load_any_config
from guardray.config import ConfigError, load_config
from guardray.pretrain.config import PretrainConfig
from guardray.pretrain.plan import LoopPlan, plan_steps


def _cfg(*overrides: str) -> PretrainConfig:
    return load_config(PretrainConfig, DEBUG, overrides)


def test_yaml_files_load_and_errors_name_fields():
    for path in (DEBUG, REPO / "configs" / "pretrain.yaml"):
        assert isinstance(load_any_config(path), PretrainConfig)
    cfg = _cfg()
    assert cfg.model.base == "tiny:xlmr" and cfg.workers.cpus_per_worker == 0.5
    with pytest.raises(ConfigError, match="fp16.*needs GPUs.*fp32 or bf16"):
        _cfg("train.precision=fp16")
    assert _cfg("train.precision=fp16", "workers.use_gpu=true").train.precision == "fp16"
    with pytest.raises(ConfigError, match="zero_stage"):
        _cfg("train.zero_stage=4")
    with pytest.raises(ConfigError, match="precision"):
        _cfg("train.precision=fp8")
    with pytest.raises(ConfigError, match=r"train.lrate: unknown key.*\blr\b"):
        _cfg("train.lrate=1")
    with pytest.raises(ConfigError, match="loss.weights must be >= 0 with at least one > 0"):
        _cfg("loss.weights=[0,0,0]")
    with pytest.raises(ConfigError, match="schedule"):
        _cfg("train.schedule=step")
    with pytest.raises(ConfigError, match="cpus_per_worker"):
        _cfg("workers.cpus_per_worker=0")
    with pytest.raises(ConfigError, match="method: unknown key"):
        load_config(PretrainConfig, REPO / "configs" / "debug" / "finetune.yaml")


def test_plan_steps_by_hand():
    # 10 micro-batches per epoch, accumulation 3 -> 3 optimizer steps (9 micro-batches) per epoch
    plan = plan_steps(10, grad_accum=3, epochs=2, max_steps=None)
    assert plan == LoopPlan(micro_per_epoch=9, grad_accum=3, total_steps=6)
    assert (plan.steps_per_epoch, plan.epochs) == (3, 2)
    assert plan.position(0) == (0, 0) and plan.position(2) == (0, 6)
    assert plan.position(3) == (1, 0) and plan.position(4) == (1, 3)
    assert [plan.micro_in_epoch(e) for e in range(3)] == [9, 9, 0]
    # max_steps takes as many epochs as needed, the last one partial
    long = plan_steps(10, grad_accum=3, epochs=1, max_steps=7)
    assert long.total_steps == 7 and long.epochs == 3
    assert [long.micro_in_epoch(e) for e in range(3)] == [9, 9, 3]
    with pytest.raises(ValueError, match="fewer than train.grad_accum=4"):
        plan_steps(3, grad_accum=4, epochs=1, max_steps=None)


def test_descriptions_include_synthetic_policies(tmp_path):
    from guardray.policies import load_policies
    from guardray.pretrain.run import load_descriptions

    humans = {p.id: p.description for p in load_policies([REPO / "configs" / "policies"])}
    data = tmp_path / "data"
    (data / "_state").mkdir(parents=True)
    synthetic = {"id": "gardening", "name": "Gardening advice",
                 "description": "Avoid giving gardening advice.", "allowed": ["talk"],
                 "disallowed": ["advise"]}
    (data / "_state" / "diverse_policies.json").write_text(
        json.dumps({"policies": [synthetic], "summary": {}}))
    got = load_descriptions(_cfg(f"data.path={data}"))
    assert got == {**humans, "gardening": "Avoid giving gardening advice."}
    # an explicit list replaces the automatic lookup
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"policies": [{**synthetic, "id": "cooking",
                                               "description": "No recipes."}]}))
    got = load_descriptions(_cfg(f"data.path={data}", f"data.diverse_policies=[{other}]"))
    assert "cooking" in got and "gardening" not in got


def _cli(*args: str):
    return subprocess.run([sys.executable, "-m", "guardray", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_help_print_config_and_bad_config(tmp_path):
    out = _cli("pretrain", "--help")
    assert out.returncode == 0 and "GIP pretraining" in out.stdout and "--config" in out.stdout
    out = _cli("pretrain", "--config", str(DEBUG), "--print-config", "train.zero_stage=3")
    assert out.returncode == 0 and "zero_stage: 3" in out.stdout
    out = _cli("pretrain", "--config", str(DEBUG), "train.precision=fp16")
    assert out.returncode == 2 and "needs GPUs" in out.stderr
    out = _cli("pretrain", "--config", str(DEBUG), "train.zero_stage=7")
    assert out.returncode == 2 and "zero_stage" in out.stderr
