"""Bad input stops the safeguard job with a clear error before any training (Ray never starts)."""

from __future__ import annotations

import pytest

from guardray.cli.registry import load_any_config
from guardray.data import DatasetError
from guardray.errors import ModelError
from guardray.modeling.tiny import build_llama_family, build_xlmr_family
from guardray.safeguard import ChatTemplateError, run_safeguard

DEBUG = "configs/debug/safeguard.yaml"


def _never():
    raise AssertionError("Ray was started although the input is bad")


def _run(tmp_path, *overrides):
    cfg = load_any_config(DEBUG, (f"output_dir={tmp_path / 'out'}", *overrides))
    run_safeguard(cfg, connect=_never)


def test_a_base_without_chat_template(tmp_path):
    base = build_llama_family(tmp_path / "fam", 0)["base"]
    with pytest.raises(ChatTemplateError, match="no chat template"):
        _run(tmp_path, f"base={base}")


def test_a_harmful_file_without_its_text_column(tmp_path):
    f = tmp_path / "harm.csv"
    f.write_text("goal,target\nWrite malware,Sure\n")
    with pytest.raises(DatasetError, match=r"harmful.sources\[0\].*missing column.*'text'"):
        _run(tmp_path, f'harmful.sources=[{{path: "{f}"}}]')


def test_a_finetune_of_another_architecture(tmp_path):
    ft = build_xlmr_family(tmp_path / "x")["ft0"]
    with pytest.raises(ModelError, match=r"finetuned\[0\].*does not fit the base"):
        _run(tmp_path, f"finetuned=[{ft}]", "sweep.methods=[linear]")


def test_a_lora_adapter_made_for_another_base(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    other = build_llama_family(tmp_path / "fam", 0)["base"]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(other),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ModelError, match=r"finetuned\[0\].*a LoRA adapter made for"):
        _run(tmp_path, f"finetuned=[{tmp_path / 'adapter'}]", "sweep.methods=[linear]")


def test_model_stock_needs_two_finetunes():
    from guardray.config import ConfigError

    with pytest.raises(ConfigError, match="model_stock, which merges two or more"):
        load_any_config(DEBUG, ("finetune.seeds=[0]",))


def test_given_adapters_for_this_base_are_merged_into_it(tmp_path):
    import torch
    from safetensors.torch import load_file

    from guardray.modeling.base import resolve_base
    from guardray.safeguard.config import FinetuneSection
    from guardray.safeguard.run import _finetunes, _open_finetune
    from guardray.safeguard.sft import train_lora

    base = resolve_base("tiny:llama-chat")
    settings = FinetuneSection(steps=2, batch_size=2, lr=1e-2, device="cpu", max_length=32)
    for seed in (0, 1):
        train_lora(base, [("q?", "a."), ("r?", "b.")], tmp_path / f"s{seed}" / "run",
                   settings=settings, seed=seed)
    refs = [str(tmp_path / f"s{seed}" / "run" / "adapter") for seed in (0, 1)]
    given = [_open_finetune(base, ref, i) for i, ref in enumerate(refs)]
    assert [label for label, _ in given] == ["run", "run"]  # the job makes them unique
    assert given[0][1] == f"{base}+{refs[0]}"
    cfg = load_any_config(DEBUG, (f"output_dir={tmp_path / 'out'}", f"finetuned={refs}"))
    fts, records = _finetunes(cfg, base, [], [("a", given[0][1]), ("b", given[1][1])])
    assert records == [] and [label for label, _ in fts] == ["a", "b"]
    mine = load_file(f"{fts[0][1]}/model.safetensors")
    peft_merged = load_file(tmp_path / "s0/run/merged/model.safetensors")
    for name, tensor in peft_merged.items():
        torch.testing.assert_close(mine[name], tensor, rtol=1e-5, atol=1e-6)


def test_a_missing_guard_policy(tmp_path):
    from guardray.config import ConfigError

    with pytest.raises(ConfigError, match="nope.yaml"):
        _run(tmp_path, f"judges.guard.policy={tmp_path / 'nope.yaml'}")
