"""Config loading: YAML + overrides, unknown keys listed, errors naming file/field/problem."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field

from guardray.config import ConfigError, JobConfig, StrictModel, load_config, parse_overrides
from guardray.config.loader import apply_overrides


class Train(StrictModel):
    lr: float = 1e-3
    steps: int = 10
    layers: list[int] = Field(default_factory=lambda: [1])


class Toy(JobConfig):
    JOB_NAME: ClassVar[str] = "toy"
    name: str = "x"
    train: Train = Field(default_factory=Train)
    sections: list[Train] = Field(default_factory=list)


def write(tmp_path, text: str):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_without_file():
    cfg = load_config(Toy)
    assert cfg.train.lr == 1e-3 and cfg.name == "x"


def test_file_then_overrides_are_typed(tmp_path):
    p = write(tmp_path, "name: a\ntrain: {lr: 0.5}\n")
    cfg = load_config(Toy, p, ["train.steps=7", "train.layers=[3, 4]", "name=b"])
    assert cfg.name == "b"
    assert cfg.train.lr == 0.5
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.train.layers == [3, 4]


def test_override_creates_missing_section():
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="a is a value, not a section"):
        apply_overrides({"a": 3}, ["a.b=1"])


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1", ".a=1"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides([bad])


def test_override_value_kept_as_string_when_not_yaml():
    assert parse_overrides(["a=: x: y"])[0][1] == ": x: y"


def test_unknown_top_level_key_lists_valid_names(tmp_path):
    p = write(tmp_path, "nmae: a\n")
    with pytest.raises(ConfigError) as info:
        load_config(Toy, p)
    msg = str(info.value)
    assert str(p) in msg and "nmae" in msg
    assert "did you mean 'name'" in msg
    assert "valid keys here: job, name, sections, train" in msg


def test_unknown_nested_key_lists_nested_names(tmp_path):
    p = write(tmp_path, "train: {lr: 1, stepz: 3}\n")
    with pytest.raises(ConfigError, match=r"train\.stepz: unknown key .*valid keys here: layers, lr, steps"):
        load_config(Toy, p)


def test_unknown_key_inside_list_item(tmp_path):
    p = write(tmp_path, "sections: [{lr: 1}, {bogus: 2}]\n")
    with pytest.raises(ConfigError, match=r"sections\.1\.bogus: unknown key; valid keys here: layers, lr, steps"):
        load_config(Toy, p)


def test_unknown_key_from_override():
    with pytest.raises(ConfigError, match=r"<config>: train\.momentum: unknown key"):
        load_config(Toy, None, ["train.momentum=0.9"])


def test_wrong_type_names_field(tmp_path):
    p = write(tmp_path, "train: {steps: many}\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: train\.steps: Input should be a valid integer"):
        load_config(Toy, p)


def test_yaml_syntax_error_names_line(tmp_path):
    p = write(tmp_path, "name: a\ntrain: {lr: [1, 2}\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml:2:\d+: invalid YAML"):
        load_config(Toy, p)


def test_top_level_must_be_mapping(tmp_path):
    p = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_config(Toy, p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(Toy, tmp_path / "nope.yaml")


def test_config_for_another_job_is_rejected(tmp_path):
    p = write(tmp_path, "job: pretrain\n")
    with pytest.raises(ConfigError, match="is a 'pretrain' config, but it was given to the 'toy' job"):
        load_config(Toy, p)
    assert load_config(Toy, write(tmp_path, "job: toy\n")).job == "toy"


def test_job_name_is_not_a_field():
    assert "JOB_NAME" not in Toy.model_fields
