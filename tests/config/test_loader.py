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


@pytest.mark.parametrize("bad", ["a=: x: y", "name=a: b: c", "train.layers=[1", "name=*alias"])
def test_override_whose_value_is_invalid_yaml_is_an_error(bad):
    """Issue 15, item 6: an invalid value used to become a string silently."""
    with pytest.raises(ConfigError, match=r"override '.*': the value is not valid YAML \(.+\); "
                                          r"quote it"):
        parse_overrides([bad])
    assert parse_overrides(['name="a: b"'])[0][1] == "a: b"  # quoted: the text


@pytest.mark.parametrize("text, value", [("1.0e300", 1e300), ("1e5", 1e5), ("3e-5", 3e-5),
                                         ("-2.5E+3", -2500.0), ("-.5", -0.5), ("1_000.5", 1000.5)])
def test_usual_float_forms_are_floats(tmp_path, text, value):
    """Issue 15, item 6: PyYAML (YAML 1.1) reads ``1.0e300``/``1e5``/``3e-5`` as strings."""
    cfg = load_config(Toy, write(tmp_path, f"train: {{lr: {text}}}\n"))
    assert cfg.train.lr == value and isinstance(cfg.train.lr, float)
    assert load_config(Toy, None, [f"train.lr={text}"]).train.lr == value
    assert load_config(Toy, None, ["train.steps=1e3"]).train.steps == 1000  # integral float
    assert parse_overrides(["a=12", "b=v1e5", "c=1.2.3"]) == [
        (["a"], 12), (["b"], "v1e5"), (["c"], "1.2.3")]  # ints and other text unchanged


@pytest.mark.parametrize("content", [b"name: \xff\xfe\x00bad\n", bytes(range(256))])
def test_binary_or_non_utf8_file_is_one_line(tmp_path, content):
    """Issue 15, item 3: a binary / non-UTF-8 file raised UnicodeDecodeError (a traceback)."""
    p = tmp_path / "cfg.yaml"
    p.write_bytes(content)
    with pytest.raises(ConfigError, match=r"cfg\.yaml: not UTF-8 text \(byte 0x[0-9a-f]{2} at "
                                          r"offset \d+\)") as info:
        load_config(Toy, p)
    assert "\n" not in str(info.value)


def test_nul_bytes_are_invalid_yaml_on_one_line(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_bytes(b"name: a\x00b\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: invalid YAML: unacceptable character #x0000 at "
                                          r"offset 7") as info:
        load_config(Toy, p)
    assert "\n" not in str(info.value)


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
