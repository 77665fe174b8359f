"""The streaming executor on tiny real checkpoints: outputs that transformers loads and runs,
values checked against formulas, the in-memory API, and the refusals."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from merge_testlib import load_state_dict

from guardray.merge.api import merge_state_dicts
from guardray.merge.checkpoint import CheckpointError
from guardray.merge.config import load_merge_config
from guardray.merge.engine import MergeError
from guardray.merge.executor import MANIFEST_NAME, run_merge
from guardray.modeling.training import DeviceError


def cfg_for(method: str, base: Path | None, models: list[tuple[Path, dict]], **top):
    data = {
        "merge_method": method,
        "models": [{"model": str(p), "parameters": params} for p, params in models],
        **top,
    }
    if base is not None:
        data["base_model"] = str(base)
    return load_merge_config(data=data)


def test_ties_merge_on_disk_loads_in_transformers_and_equals_in_memory_api(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fts = [tiny_llama[f"ft{i}"] for i in range(3)]
    cfg = cfg_for(
        "ties",
        tiny_llama["base"],
        [(p, {"weight": 1.0, "density": 0.5}) for p in fts],
        parameters={"lambda": 0.9},
        max_shard_size="30KB",
    )
    out = tmp_path / "merged"
    result = run_merge(cfg, out, progress=False)

    assert (out / "model.safetensors.index.json").is_file()  # sharded at 30KB
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert (
        manifest["merge_method"] == "ties"
        and manifest["tensors"]["merged"] == result.stats["merged"] > 0
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".merged")]  # no temp left

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("w1 w2 w3 w4", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, 4, 64) and torch.isfinite(logits).all()

    on_disk = load_state_dict(out)
    in_memory = merge_state_dicts(
        "ties",
        [load_state_dict(p) for p in fts],
        base=load_state_dict(tiny_llama["base"]),
        model_parameters=[{"weight": 1.0, "density": 0.5}] * 3,
        parameters={"lambda": 0.9},
    )
    assert on_disk.keys() == in_memory.keys()
    for name in on_disk:
        assert torch.equal(on_disk[name], in_memory[name]), name


def test_linear_merge_equals_formula_tensor_by_tensor(tiny_llama, tmp_path):
    fts = [tiny_llama[f"ft{i}"] for i in range(3)]
    weights = [2.0, 3.0, 5.0]
    cfg = cfg_for("linear", None, [(p, {"weight": w}) for p, w in zip(fts, weights)])
    run_merge(cfg, tmp_path / "out", progress=False)
    merged = load_state_dict(tmp_path / "out")
    sds = [load_state_dict(p) for p in fts]
    for name, value in merged.items():
        expected = sum(w * sd[name] for w, sd in zip(weights, sds)) / 10.0
        assert torch.allclose(value, expected, atol=1e-6), name


def test_linear_weights_one_zero_returns_model_a_exactly(tiny_llama, tmp_path):
    cfg = cfg_for(
        "linear", None, [(tiny_llama["ft1"], {"weight": 1.0}), (tiny_llama["ft2"], {"weight": 0.0})]
    )
    run_merge(cfg, tmp_path / "out", progress=False)
    merged, a = load_state_dict(tmp_path / "out"), load_state_dict(tiny_llama["ft1"])
    assert all(torch.equal(merged[n], a[n]) for n in a)


def test_slerp_gradient_over_layers_picks_endpoints(tiny_llama, tmp_path):
    # t: [0, 1] over 2 layers: layer 0 -> t=0 (base), layer 1 -> t=1 (ft0); other tensors t=0.
    cfg = cfg_for(
        "slerp",
        tiny_llama["base"],
        [(tiny_llama["base"], None), (tiny_llama["ft0"], None)],
        parameters={"t": [{"filter": "mlp", "value": [0.0, 1.0]}, {"value": 0.0}]},
    )
    run_merge(cfg, tmp_path / "out", progress=False)
    merged = load_state_dict(tmp_path / "out")
    base, ft = load_state_dict(tiny_llama["base"]), load_state_dict(tiny_llama["ft0"])
    for name, value in merged.items():
        if "layers.1." in name and "mlp" in name:
            assert torch.equal(value, ft[name]), name
        else:
            assert torch.equal(value, base[name]), name


def test_dare_ties_is_seeded_and_executor_equals_api(tiny_llama, tmp_path):
    fts = [tiny_llama[f"ft{i}"] for i in range(3)]
    models = [(p, {"weight": 1.0, "density": 0.6}) for p in fts]
    run_merge(
        cfg_for("dare_ties", tiny_llama["base"], models, seed=5),
        tmp_path / "a",
        progress=False,
        prefetch=False,
    )
    run_merge(
        cfg_for("dare_ties", tiny_llama["base"], models, seed=6), tmp_path / "b", progress=False
    )
    a, b = load_state_dict(tmp_path / "a"), load_state_dict(tmp_path / "b")
    api = merge_state_dicts(
        "dare_ties",
        [load_state_dict(p) for p in fts],
        base=load_state_dict(tiny_llama["base"]),
        model_parameters=[{"weight": 1.0, "density": 0.6}] * 3,
        seed=5,
    )
    assert all(torch.equal(a[n], api[n]) for n in a)
    assert any(not torch.equal(a[n], b[n]) for n in a)


def test_model_stock_of_identical_models_returns_them_on_disk(tiny_llama, tmp_path):
    copy = tmp_path / "ft0_copy"
    shutil.copytree(tiny_llama["ft0"], copy)
    cfg = cfg_for("model_stock", tiny_llama["base"], [(tiny_llama["ft0"], None), (copy, None)])
    run_merge(cfg, tmp_path / "out", progress=False)
    merged, ft = load_state_dict(tmp_path / "out"), load_state_dict(tiny_llama["ft0"])
    assert all(torch.allclose(merged[n], ft[n], atol=1e-6) for n in ft)


def test_encoder_classifier_merge_runs_in_a_pipeline(tiny_xlmr, tmp_path):
    from transformers import pipeline

    cfg = cfg_for(
        "task_arithmetic",
        tiny_xlmr["base"],
        [(tiny_xlmr["ft0"], {"weight": 0.5}), (tiny_xlmr["ft1"], {"weight": 0.5})],
        dtype="bfloat16",
    )
    out = tmp_path / "clf"
    run_merge(cfg, out, progress=False)
    merged = load_state_dict(out)
    assert {v.dtype for v in merged.values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert any(n.startswith("classifier.") for n in merged)
    clf = pipeline("text-classification", model=str(out), tokenizer=str(out))
    pred = clf("w1 w2 w3")
    assert pred[0]["label"] in ("LABEL_0", "LABEL_1")


def test_output_dir_is_replaced_atomically_and_kept_on_failure(tiny_llama, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    good = cfg_for("linear", None, [(tiny_llama["ft0"], None), (tiny_llama["ft1"], None)])
    with pytest.raises(FileExistsError, match="overwrite"):
        run_merge(good, out, progress=False)

    bad_model = tmp_path / "nan_model"
    shutil.copytree(tiny_llama["ft1"], bad_model)
    sd = load_state_dict(bad_model)
    last = list(sd)[-1]
    sd[last][0] = float("nan")
    from safetensors.torch import save_file

    save_file(sd, str(bad_model / "model.safetensors"), metadata={"format": "pt"})
    bad = cfg_for("linear", None, [(tiny_llama["ft0"], None), (bad_model, None)])
    with pytest.raises(MergeError, match=rf"{last}.*nan_model.*NaN"):
        run_merge(bad, out, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan_model", "out"]

    run_merge(good, out, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_refuses_mismatched_architectures_shapes_and_missing_tensors(
    tiny_llama, tiny_xlmr, tmp_path
):
    with pytest.raises(MergeError, match="architectures differ"):
        run_merge(
            cfg_for("linear", None, [(tiny_llama["ft0"], None), (tiny_xlmr["ft0"], None)]),
            tmp_path / "o1",
            progress=False,
        )

    from safetensors.torch import save_file

    shaped = tmp_path / "shaped"
    shutil.copytree(tiny_llama["ft1"], shaped)
    sd = load_state_dict(shaped)
    name = "model.layers.0.mlp.up_proj.weight"
    sd[name] = sd[name][:-1]
    save_file(sd, str(shaped / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MergeError, match=rf"{name}.*shape \[63, 32\]"):
        run_merge(
            cfg_for("ties", tiny_llama["base"], [(shaped, None)]), tmp_path / "o2", progress=False
        )

    missing = tmp_path / "missing"
    shutil.copytree(tiny_llama["ft1"], missing)
    sd = load_state_dict(missing)
    del sd["model.norm.weight"]
    save_file(sd, str(missing / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MergeError, match="missing 1 tensor.*model.norm.weight"):
        run_merge(
            cfg_for("ties", tiny_llama["base"], [(missing, None)]), tmp_path / "o3", progress=False
        )
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


def test_refuses_unreadable_inputs_and_overlapping_output(tiny_llama, tmp_path):
    with pytest.raises(CheckpointError, match="no such folder.*local"):
        run_merge(
            cfg_for("linear", None, [(tmp_path / "nope", None)]), tmp_path / "o", progress=False
        )
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="never unpickles"):
        run_merge(cfg_for("linear", None, [(pickled, None)]), tmp_path / "o", progress=False)
    with pytest.raises(MergeError, match="overlaps input"):
        run_merge(
            cfg_for("linear", None, [(tiny_llama["ft0"], None)]),
            tiny_llama["ft0"] / "sub",
            progress=False,
        )
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        if torch.cuda.is_available():  # pragma: no cover - only on GPU machines
            raise DeviceError("no CUDA GPU (skipped: a GPU is present)")
        run_merge(
            cfg_for("linear", None, [(tiny_llama["ft0"], None)]),
            tmp_path / "o",
            device="cuda",
            progress=False,
        )


def _write_with_buffer(folder: Path, buffer: torch.Tensor) -> None:
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(
        {"w": torch.full((3,), float(buffer.sum())), "ids": buffer},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )


def test_integer_tensors_are_copied_not_averaged(tmp_path, caplog):
    ids = torch.arange(5, dtype=torch.int64)
    _write_with_buffer(tmp_path / "a", ids)
    _write_with_buffer(tmp_path / "b", ids)
    _write_with_buffer(tmp_path / "c", ids * 2)
    cfg = cfg_for("linear", None, [(tmp_path / "a", None), (tmp_path / "b", None)])
    run_merge(cfg, tmp_path / "ab", progress=False)
    out = load_state_dict(tmp_path / "ab")
    assert out["ids"].dtype == torch.int64 and torch.equal(out["ids"], ids)
    assert torch.equal(out["w"], torch.full((3,), 10.0))

    with caplog.at_level(logging.WARNING, logger="guardray.merge.engine"):
        cfg = cfg_for("linear", None, [(tmp_path / "a", None), (tmp_path / "c", None)])
        run_merge(cfg, tmp_path / "ac", progress=False)
    assert torch.equal(load_state_dict(tmp_path / "ac")["ids"], ids)
    assert "integer tensor 'ids' differs" in caplog.text


def test_api_integer_tensors_and_inputs_untouched():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([7])}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([7])}
    base = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor([7])}
    out = merge_state_dicts(
        "task_arithmetic", [a, b], base=base, weights=[1.0, 0.5], parameters={"lambda": 2.0}
    )
    # tau_a = [0, 1], tau_b = [2, 5]; 1*tau_a + 0.5*tau_b = [1, 3.5]; base + 2 * that
    assert torch.allclose(out["w"], torch.tensor([3.0, 8.0]))
    assert torch.equal(out["n"], torch.tensor([7]))
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0])) and torch.equal(
        b["w"], torch.tensor([3.0, 6.0])
    )


def test_api_refuses_unknown_method_and_parameters():
    from guardray.config import ConfigError

    sd = {"w": torch.zeros(2)}
    with pytest.raises(ConfigError, match="unknown method 'tie'.*did you mean 'ties'"):
        merge_state_dicts("tie", [sd], base=sd)
    with pytest.raises(ConfigError, match="unknown parameter for 'slerp'.*valid here: t"):
        merge_state_dicts("slerp", [sd], base=sd, parameters={"t": 0.5, "lamda": 1})
    with pytest.raises(MergeError, match="NaN"):
        merge_state_dicts("linear", [{"w": torch.tensor([float("inf")])}])


def test_output_overflowing_float16_is_refused():
    big = {"w": torch.tensor([60000.0, 1.0])}
    with pytest.raises(MergeError, match="NaN/Inf values in torch.float16"):
        merge_state_dicts(
            "linear", [big, big], weights=[1, 1], parameters={"normalize": False}, dtype="float16"
        )
    out = merge_state_dicts("linear", [big, big], dtype="float16")
    assert out["w"].dtype == torch.float16 and float(out["w"][0]) == 60000.0


def test_num_threads_applies_during_the_merge_and_is_restored(tiny_llama, tmp_path, monkeypatch):
    from guardray.merge import engine

    seen = []
    real = engine.merge_one

    def spy(job, name, raw):
        seen.append(torch.get_num_threads())
        return real(job, name, raw)

    monkeypatch.setattr(engine, "merge_one", spy)
    before = torch.get_num_threads()
    cfg = cfg_for("linear", None, [(tiny_llama["ft0"], None)], num_threads=1)
    run_merge(cfg, tmp_path / "out", progress=False)
    assert set(seen) == {1} and torch.get_num_threads() == before
