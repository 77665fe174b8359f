"""Every YAML under configs/ loads and validates with the config class it is for."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardray.cli.registry import load_any_config
from guardray.config.base import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted(p for p in (REPO / "configs").rglob("*") if p.suffix in (".yaml", ".yml"))


def test_configs_exist():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIG_FILES}
    assert {"pipeline.yaml", "debug/pipeline.yaml", "policies/safety.yaml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_config_validates(path: Path):
    assert load_any_config(path) is not None


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_config_starts_with_a_launch_comment(path: Path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "guardray" in first, f"{path}: first line should give its launch command"


def test_unknown_kind_is_an_error(tmp_path):
    p = tmp_path / "mystery.yaml"
    p.write_text("foo: 1\n")
    with pytest.raises(ConfigError, match="cannot tell what this config is for"):
        load_any_config(p)


def test_unknown_job_lists_jobs(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("job: nonsense\n")
    with pytest.raises(ConfigError, match="unknown job 'nonsense'; valid jobs: .*pipeline"):
        load_any_config(p)
