"""LoRA adapters in PEFT's on-disk format, merged into their base by hand (no PEFT)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from merge_testlib import load_state_dict
from safetensors.torch import save_file

from guardray.merge.api import merge_with_config
from guardray.merge.checkpoint import CheckpointError
from guardray.merge.config import load_merge_config
from guardray.merge.executor import open_model, run_merge

Q = "model.layers.0.self_attn.q_proj"
V = "model.layers.1.self_attn.v_proj"
EMB = "model.embed_tokens"


def write_adapter(
    folder: Path,
    base: Path,
    *,
    r: int = 4,
    alpha: float = 8.0,
    seed: int = 0,
    embedding: bool = False,
    extra: dict | None = None,
    **config,
) -> dict:
    """A PEFT-format adapter on q_proj (layer 0) and v_proj (layer 1) of the tiny Llama."""
    g = torch.Generator().manual_seed(seed)
    tensors = {
        f"base_model.model.{Q}.lora_A.weight": torch.randn(r, 32, generator=g),
        f"base_model.model.{Q}.lora_B.weight": torch.randn(32, r, generator=g),
        f"base_model.model.{V}.lora_A.weight": torch.randn(r, 32, generator=g),
        f"base_model.model.{V}.lora_B.weight": torch.randn(16, r, generator=g),  # 2 kv heads x 8
    }
    if embedding:
        tensors[f"base_model.model.{EMB}.lora_embedding_A"] = torch.randn(r, 64, generator=g)
        tensors[f"base_model.model.{EMB}.lora_embedding_B"] = torch.randn(32, r, generator=g)
    tensors.update(extra or {})
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": alpha,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": str(base),
        "fan_in_fan_out": False,
        **config,
    }
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return tensors


def ab(tensors: dict, module: str) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        tensors[f"base_model.model.{module}.lora_A.weight"],
        tensors[f"base_model.model.{module}.lora_B.weight"],
    )


def test_lora_adapter_merged_into_base_matches_w_plus_scaled_ba(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    tensors = write_adapter(adapter, tiny_llama["base"], r=4, alpha=8.0)
    cfg = load_merge_config(
        data={"merge_method": "linear", "models": [{"model": f"{tiny_llama['base']}+{adapter}"}]}
    )
    run_merge(cfg, tmp_path / "merged", progress=False)
    merged, base = load_state_dict(tmp_path / "merged"), load_state_dict(tiny_llama["base"])
    for module in (Q, V):
        a, b = ab(tensors, module)
        expected = base[f"{module}.weight"] + (8.0 / 4) * (b @ a)
        assert torch.allclose(merged[f"{module}.weight"], expected, atol=1e-5), module
    untouched = [n for n in base if n not in (f"{Q}.weight", f"{V}.weight")]
    assert all(torch.equal(merged[n], base[n]) for n in untouched)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_adapter_folder_alone_uses_its_configured_base(tiny_llama, tmp_path):
    adapter = tmp_path / "adapter"
    tensors = write_adapter(adapter, tiny_llama["base"])
    src = open_model(str(adapter))
    a, b = ab(tensors, Q)
    base_q = load_state_dict(tiny_llama["base"])[f"{Q}.weight"]
    assert torch.allclose(src.get(f"{Q}.weight"), base_q + 2.0 * (b @ a), atol=1e-5)

    elsewhere = tmp_path / "adapter2"
    write_adapter(elsewhere, Path("HuggingFaceTB/SmolLM2-135M"))
    with pytest.raises(CheckpointError, match="BASE_FOLDER\\+ADAPTER_FOLDER"):
        open_model(str(elsewhere))


def test_rslora_alpha_pattern_embedding_and_modules_to_save(tiny_llama, tmp_path):
    head = torch.full((64, 32), 0.5)
    emb_copy = torch.full((64, 32), -1.0)  # PEFT saves the embedding base as M.base_layer.weight
    adapter = tmp_path / "adapter"
    tensors = write_adapter(
        adapter,
        tiny_llama["base"],
        r=4,
        alpha=8.0,
        embedding=True,
        use_rslora=True,
        alpha_pattern={"v_proj": 2.0},
        extra={
            "base_model.model.lm_head.weight": head,
            f"base_model.model.{EMB}.base_layer.weight": emb_copy,
        },
    )
    src = open_model(f"{tiny_llama['base']}+{adapter}")
    base = load_state_dict(tiny_llama["base"])
    a, b = ab(tensors, Q)
    assert torch.allclose(
        src.get(f"{Q}.weight"), base[f"{Q}.weight"] + 8.0 / math.sqrt(4) * (b @ a), atol=1e-5
    )
    a, b = ab(tensors, V)  # alpha_pattern: alpha 2 for v_proj
    assert torch.allclose(
        src.get(f"{V}.weight"), base[f"{V}.weight"] + 2.0 / math.sqrt(4) * (b @ a), atol=1e-5
    )
    ea = tensors[f"base_model.model.{EMB}.lora_embedding_A"]
    eb = tensors[f"base_model.model.{EMB}.lora_embedding_B"]
    assert torch.allclose(src.get(f"{EMB}.weight"), emb_copy + 4.0 * (eb @ ea).T, atol=1e-5)
    assert torch.equal(src.get("lm_head.weight"), head)


def test_lora_models_merge_with_other_methods_in_memory_config(tiny_llama, tmp_path):
    # Two adapters on the same base, TIES-merged: equals TIES of the two merged state dicts.
    paths = []
    for i in range(2):
        write_adapter(tmp_path / f"ad{i}", tiny_llama["base"], seed=i)
        paths.append(f"{tiny_llama['base']}+{tmp_path / f'ad{i}'}")
    cfg = load_merge_config(
        data={
            "merge_method": "ties",
            "base_model": str(tiny_llama["base"]),
            "models": [{"model": p, "parameters": {"density": 0.5}} for p in paths],
        }
    )
    run_merge(cfg, tmp_path / "out", progress=False)
    merged = load_state_dict(tmp_path / "out")
    sds = {p: {n: open_model(p).get(n) for n in load_state_dict(tiny_llama["base"])} for p in paths}
    sds[str(tiny_llama["base"])] = load_state_dict(tiny_llama["base"])
    expected = merge_with_config(cfg, sds)
    assert all(torch.allclose(merged[n], expected[n], atol=1e-6) for n in merged)


def test_refuses_dora_half_pairs_and_shape_mismatch(tiny_llama, tmp_path):
    write_adapter(tmp_path / "dora", tiny_llama["base"], use_dora=True)
    with pytest.raises(CheckpointError, match="DoRA"):
        open_model(str(tmp_path / "dora"))

    half = {f"base_model.model.{Q}.lora_A.weight": torch.zeros(4, 32)}
    (tmp_path / "half").mkdir()
    save_file(half, str(tmp_path / "half" / "adapter_model.safetensors"))
    (tmp_path / "half" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(CheckpointError, match="not both"):
        open_model(f"{tiny_llama['base']}+{tmp_path / 'half'}")

    bad = {
        f"base_model.model.{Q}.lora_A.weight": torch.zeros(4, 31),
        f"base_model.model.{Q}.lora_B.weight": torch.zeros(32, 4),
    }
    (tmp_path / "bad").mkdir()
    save_file(bad, str(tmp_path / "bad" / "adapter_model.safetensors"))
    (tmp_path / "bad" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(CheckpointError, match=r"q_proj.weight.*\[32, 31\].*\[32, 32\]"):
        open_model(f"{tiny_llama['base']}+{tmp_path / 'bad'}")
