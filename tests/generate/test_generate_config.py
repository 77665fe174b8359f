"""GenerateConfig: the shipped YAMLs, overrides, errors, and the CLI command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guardray.cli.registry import config_class
from guardray.config import ConfigError, load_config
from guardray.generate.config import GenerateConfig

REPO = Path(__file__).resolve().parents[2]


def test_registry_maps_the_job_to_this_class():
    assert config_class("generate") is GenerateConfig


@pytest.mark.parametrize("path", ["configs/generate.yaml", "configs/debug/generate.yaml"])
def test_shipped_configs_load(path):
    cfg = load_config(GenerateConfig, REPO / path)
    assert cfg.job == "generate" and cfg.llm.model == "embedded:smollm2-135m-instruct"
    first = (REPO / path).read_text().splitlines()[0]
    assert first.startswith("# guardray generate --config")


def test_overrides_reach_nested_sections():
    cfg = load_config(GenerateConfig, REPO / "configs/debug/generate.yaml",
                      ["llm.backend=openai_http", "llm.http.qps=5", "reflect.enabled=false",
                       "expand.languages=[German, French]"])
    assert cfg.llm.backend == "openai_http" and cfg.llm.http.qps == 5
    assert not cfg.reflect.enabled and cfg.expand.languages == ["German", "French"]


@pytest.mark.parametrize("override, match", [
    ("llm.backend=gpt", "llm.backend"),
    ("expand.persona=[x]", r"expand.persona: unknown key \(did you mean 'personas'\?\)"),
    ("expand.personas=[]", "expand.personas needs at least one non-empty entry"),
    ("parse.missing_label=guess", "parse.missing_label"),
    ("reflect.on_unparsed=drop", "reflect.on_unparsed"),
    ("task_size=0", "task_size"),
])
def test_bad_values_fail_at_load(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(GenerateConfig, REPO / "configs/debug/generate.yaml", [override])


def test_nothing_to_generate_is_an_error():
    with pytest.raises(ConfigError, match="nothing to generate"):
        load_config(GenerateConfig, data={"expand": {"unsafe_per_policy": 0, "safe_per_policy": 0}})


def test_a_config_for_another_job_is_refused():
    with pytest.raises(ConfigError, match="'pipeline' config, but it was given to the 'generate'"):
        load_config(GenerateConfig, data={"job": "pipeline"})


def test_cli_prints_the_resolved_config():
    r = subprocess.run([sys.executable, "-m", "guardray", "generate", "--config",
                        "configs/debug/generate.yaml", "llm.sampling.max_tokens=9",
                        "--print-config"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "job: generate" in r.stdout and "max_tokens: 9" in r.stdout
    r = subprocess.run([sys.executable, "-m", "guardray", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert "generate" in r.stdout
