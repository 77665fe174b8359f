"""LoRA SFT of a tiny chat model: prompt masking (eq. 1), saved adapter and merged model, and
guardray's own LoRA merge (BASE+ADAPTER) equals peft's merge_and_unload."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from guardray.merge import MergeConfig, run_merge
from guardray.modeling.base import resolve_base
from guardray.safeguard.config import FinetuneSection
from guardray.safeguard.sft import (
    IGNORE,
    ChatTemplateError,
    batches,
    check_chat_template,
    collate,
    encode_pair,
    train_lora,
)


@pytest.fixture(scope="module")
def base():
    return resolve_base("tiny:llama-chat")


def test_only_the_answer_is_in_the_loss(base):
    tok = AutoTokenizer.from_pretrained(base)
    ids, labels = encode_pair(tok, "What is AI?", "Artificial intelligence.",
                              system_prompt="Be brief.", max_length=200)
    assert tok.decode(ids).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    target = [i for i, y in zip(ids, labels) if y != IGNORE]
    assert tok.decode(target) == "Artificial intelligence.<|im_end|>\n"
    assert all(y == IGNORE for y in labels[: len(ids) - len(target)])
    short_ids, short_labels = encode_pair(tok, "What is AI?", "Artificial intelligence.",
                                          system_prompt=None, max_length=12)
    assert len(short_ids) == len(short_labels) == 12


def test_collate_and_batches():
    out = collate([([5, 6, 7], [IGNORE, 6, 7]), ([8], [8])], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    got = list(batches(5, 2, 5, seed=0))
    assert [len(b) for b in got] == [2, 2, 2, 2, 2]
    assert sorted(got[0] + got[1]) != [] and set(got[0]).isdisjoint(got[1])  # one epoch
    assert got == list(batches(5, 2, 5, seed=0))


def test_a_tokenizer_without_chat_template_is_refused(tmp_path):
    from guardray.modeling.tiny import build_llama_family

    tok = AutoTokenizer.from_pretrained(build_llama_family(tmp_path, 0)["base"])
    with pytest.raises(ChatTemplateError, match="no chat template"):
        check_chat_template(tok, "base x")


def test_train_lora_saves_adapter_and_merged_model(base, tmp_path):
    pairs = [("What is AI?", "Artificial intelligence."), ("Who are you?", "A bot.")] * 4
    settings = FinetuneSection(steps=6, batch_size=4, lr=5e-3, device="cpu", max_length=64)
    steps = []
    record = train_lora(base, pairs, tmp_path / "seed3", settings=settings, seed=3,
                        on_step=steps.append)
    assert record["steps"] == 6 and steps[-1]["step"] == 6
    adapter_cfg = json.loads((tmp_path / "seed3/adapter/adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == base and adapter_cfg["r"] == 8
    merged = load_file(tmp_path / "seed3/merged/model.safetensors")
    original = load_file(f"{base}/model.safetensors")
    changed = [k for k in original if not torch.equal(original[k], merged[k])]
    assert any("q_proj" in k for k in changed) and all("norm" not in k for k in changed)
    # guardray's hand-written LoRA merge of BASE+ADAPTER gives peft's merged weights
    out = tmp_path / "by-guardray"
    run_merge(MergeConfig(merge_method="linear",
                          models=[{"model": f"{base}+{tmp_path / 'seed3/adapter'}"}]),
              out, progress=False)
    mine = load_file(out / "model.safetensors")
    for k in changed:
        torch.testing.assert_close(mine[k], merged[k], rtol=1e-5, atol=1e-6)
