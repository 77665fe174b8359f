"""The MergeKit-schema config: shipped YAMLs, validation messages, per-tensor parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from merge_testlib import load_state_dict

from guardray.config import ConfigError
from guardray.merge.config import load_merge_config
from guardray.merge.registry import get_method, layer_t, resolve

REPO = Path(__file__).resolve().parents[2]
MERGE_YAMLS = sorted((REPO / "configs" / "merge").glob("*.yaml"))
DEBUG_YAMLS = sorted((REPO / "configs" / "debug").glob("merge_*.yaml"))


def test_shipped_configs_exist():
    names = {p.name for p in MERGE_YAMLS}
    assert {
        "ties.yaml",
        "model_soup.yaml",
        "dare_ties.yaml",
        "safeguard_slerp.yaml",
        "safeguard_model_stock.yaml",
        "lora_into_base.yaml",
    } <= names
    assert {p.name for p in DEBUG_YAMLS} >= {
        "merge_ties.yaml",
        "merge_linear.yaml",
        "merge_dare_ties.yaml",
        "merge_slerp.yaml",
        "merge_model_stock.yaml",
    }


@pytest.mark.parametrize("path", MERGE_YAMLS + DEBUG_YAMLS, ids=lambda p: p.name)
def test_shipped_config_loads_and_names_its_launch_command(path):
    cfg = load_merge_config(path, overrides=())
    assert cfg.method.name == get_method(cfg.merge_method).name
    first = path.read_text().splitlines()[0]
    assert (
        first.startswith("# ") and f"guardray merge configs/{path.parent.name}/{path.name}" in first
    )


@pytest.mark.parametrize("path", DEBUG_YAMLS, ids=lambda p: p.name)
def test_debug_configs_run_on_tiny_models(path, tiny_llama, tmp_path):
    from guardray.merge.executor import run_merge

    root = tiny_llama["base"].parent
    text = path.read_text().replace("outputs/debug/merge_inputs", str(root))
    cfg = load_merge_config(data=yaml.safe_load(text))
    run_merge(cfg, tmp_path / "out", progress=False)
    merged = load_state_dict(tmp_path / "out")
    assert merged.keys() == load_state_dict(tiny_llama["base"]).keys()
    assert (tmp_path / "out" / "tokenizer.json").is_file()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "merge.yaml"
    p.write_text(text)
    return p


BASE = """
merge_method: ties
base_model: /m/base
models:
  - model: /m/a
    parameters: {weight: 0.5, density: 0.5}
  - model: /m/b
"""


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "merge_method: tiess\nbase_model: b\nmodels: [a]",
            r"merge\.yaml: merge_method: unknown method 'tiess' \(did you mean 'ties'\?\); "
            r"valid: dare_linear, dare_ties, linear, model_stock, slerp, task_arithmetic, ties",
        ),
        ("merge_method: ties\nmodels: [a]", "base_model: merge_method 'ties' needs a base_model"),
        (
            "merge_method: slerp\nbase_model: b\nmodels: [b, a]",
            r"parameters\.t: required by 'slerp'",
        ),
        (
            "merge_method: slerp\nbase_model: b\nmodels: [a, c]\nparameters: {t: 0.5}",
            "'slerp' merges exactly 1 model",
        ),
        (
            "merge_method: model_stock\nbase_model: b\nmodels: [b, a]",
            "'model_stock' merges at least 2 model",
        ),
        (
            "merge_method: ties\nbase_model: b\nmodels:\n  - {model: a, parameters: {densty: 0.5}}",
            r"models\.0\.parameters\.densty: unknown parameter for 'ties' "
            r"\(did you mean 'density'\?\); valid here: weight, density",
        ),
        (
            "merge_method: ties\nbase_model: b\nmodels:\n  - {model: a, parameters: {lambda: 2}}",
            r"models\.0\.parameters\.lambda: 'lambda' applies to the whole merge",
        ),
        (
            "merge_method: ties\nbase_model: b\nmodels:\n"
            "  - {model: a, parameters: {density: 1.5}}",
            "density must be <= 1.0, got 1.5",
        ),
        (  # issue 15, item 5: TIES density 0 silently dropped the model from the merge
            "merge_method: ties\nbase_model: b\nmodels:\n"
            "  - {model: a, parameters: {density: 0.0}}\n  - {model: c}",
            r"models\.0\.parameters\.density: density must be > 0\.0, got 0\.0",
        ),
        (  # ... also as a gradient or a filtered value, top-level or per model
            "merge_method: ties\nbase_model: b\nmodels: [a, c]\n"
            "parameters: {density: [{filter: mlp, value: [0.5, 0]}]}",
            r"parameters\.density: density must be > 0\.0, got 0\.0",
        ),
        (  # DARE's density 0 failed only while merging; now when the config is read
            "merge_method: dare_linear\nbase_model: b\nmodels:\n"
            "  - {model: a, parameters: {density: 0}}",
            r"models\.0\.parameters\.density: density must be > 0\.0, got 0\.0",
        ),
        (
            "merge_method: dare_ties\nbase_model: b\nmodels:\n"
            "  - {model: a, parameters: {density: 0.5, drop_rate: 0.5}}",
            "not both",
        ),
        (
            "merge_method: dare_linear\nbase_model: b\nmodels:\n"
            "  - {model: a, parameters: {drop_rate: 1}}",
            "drop_rate must be < 1.0",
        ),
        (
            "merge_method: ties\nbase_model: b\nmodels: [a]\nparameters: {sign_vote: majority}",
            "sign_vote must be one of 'unweighted', 'weighted'",
        ),
        (
            "merge_method: linear\nmodels:\n  - {model: a, parameters: {weight: [{filter: x}]}}",
            "needs 'value'",
        ),
        ("merge_method: linear\nmodels: [a]\ndtype: float8", "dtype: unknown dtype 'float8'"),
        ("merge_method: linear\nmodels: [a, a]", r"models\.1\.model: 'a' is listed twice"),
        ("merge_method: linear\nmodels: [a]\nslices: []", "'slices' is not supported"),
        ("merge_method: linear\nmodels: [a]\ntokenizer_source: union", "'union'.*not supported"),
        ("merge_method: linear\nmodels: [a]\nmax_shard_size: lots", "cannot read size 'lots'"),
        ("merge_method: linear\nmodels: [a]\nout_path: x", "out_path: unknown key"),
        ("merge_method: linear\nmodels: [a]\nnum_threads: 0", "num_threads: Input should be"),
        ("job: finetune\nmerge_method: linear\nmodels: [a]", "'finetune' config.*'merge' job"),
    ],
)
def test_bad_configs_fail_with_file_field_and_options(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_merge_config(write(tmp_path, text))
    assert str(tmp_path / "merge.yaml") in str(info.value)


def test_structure_only_paths_are_not_checked_and_overrides_apply(tmp_path):
    cfg = load_merge_config(write(tmp_path, BASE), ["parameters.lambda=0.5", "seed=7"])
    assert cfg.parameters == {"lambda": 0.5} and cfg.seed == 7
    base, inputs = cfg.inputs()
    assert base == "/m/base" and [e.model for e in inputs] == ["/m/a", "/m/b"]


def test_mergekit_model_lists_and_base_handling():
    cfg = load_merge_config(data={"merge_method": "linear", "base_model": "b", "models": ["a"]})
    assert [e.model for e in cfg.inputs()[1]] == ["a", "b"]  # MergeKit adds the base to linear
    cfg = load_merge_config(data={"merge_method": "ties", "base_model": "b", "models": ["b", "a"]})
    assert [e.model for e in cfg.inputs()[1]] == ["a"]  # and drops it from task-vector methods
    assert (
        load_merge_config(data={"merge_method": "model_soup", "models": ["a"]}).method.name
        == "linear"
    )


def test_resolve_per_tensor_filters_gradients_and_precedence():
    spec = get_method("ties")
    global_settings = {
        "density": [0.2, 0.6],
        "lambda": [{"filter": "mlp", "value": 2.0}, {"value": 1.0}],
    }
    model_settings = [{"weight": [{"filter": "self_attn", "value": 0.3}]}, {"density": 0.9}]
    name = "model.layers.1.mlp.up_proj.weight"
    t = layer_t(name, num_layers=3)  # layer 1 of 3 -> 0.5
    assert t == 0.5
    shared, per_model = resolve(spec, name, t, global_settings, model_settings)
    assert shared["lambda"] == 2.0 and shared["normalize"] is True
    assert per_model[0] == {"weight": 1.0, "density": pytest.approx(0.4)}  # no filter match
    assert per_model[1] == {"weight": 1.0, "density": 0.9}  # model value beats global gradient
    name = "model.layers.2.self_attn.q_proj.weight"
    shared, per_model = resolve(spec, name, layer_t(name, 3), global_settings, model_settings)
    assert shared["lambda"] == 1.0 and per_model[0] == {"weight": 0.3, "density": 0.6}
    assert layer_t("model.embed_tokens.weight", 3) == 0.0
