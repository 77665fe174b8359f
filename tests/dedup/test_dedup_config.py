"""DedupConfig validation, the shipped YAML files and the ``guardray dedup`` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guardray.cli.registry import config_class, load_any_config
from guardray.config import ConfigError, load_config
from guardray.dedup.config import DedupConfig

REPO = Path(__file__).resolve().parents[2]


def test_registry_maps_the_job_name():
    assert config_class("dedup") is DedupConfig and DedupConfig.JOB_NAME == "dedup"


@pytest.mark.parametrize("name", ["configs/dedup.yaml", "configs/debug/dedup.yaml"])
def test_shipped_configs_load(name):
    cfg = load_any_config(REPO / name)
    assert isinstance(cfg, DedupConfig) and cfg.job == "dedup"
    first = (REPO / name).read_text().splitlines()[0]
    assert first.startswith("# guardray dedup --config " + name)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("threshold=1.5", "threshold: Input should be less than or equal to 1"),
        ("threshold=0", "threshold: Input should be greater than 0"),
        ("method=fuzzy", "method: Input should be 'global', 'per_batch' or 'exact_only'"),
        ("scope=everything", "scope: Input should be 'policy' or 'global'"),
        ("embedder.concurrency=[3, 2]", "concurrency must be >= 1 or [min, max]"),
        ("global_method.probe=2", "unknown key (did you mean 'probes'?)"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(DedupConfig, REPO / "configs/debug/dedup.yaml", [override])
    assert message in str(err.value)


def test_wrong_job_is_rejected(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("job: pipeline\n")
    with pytest.raises(ConfigError, match="given to the 'dedup' job"):
        load_config(DedupConfig, p)


def test_cli_prints_the_resolved_config():
    r = subprocess.run(
        [sys.executable, "-m", "guardray", "dedup", "--config", "configs/debug/dedup.yaml",
         "threshold=0.8", "embedder.concurrency=[1, 2]", "--print-config"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "threshold: 0.8" in r.stdout and "job: dedup" in r.stdout
    assert "concurrency:\n  - 1\n  - 2" in r.stdout
