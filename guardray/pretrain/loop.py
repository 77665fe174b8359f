"""The per-worker GIP training loop (Ray Train + DeepSpeed), GuardFormer 3.3 eq. 1.

Its pieces: `guardray.pretrain.plan` (how many steps, equal on every rank),
`guardray.pretrain.step` (one micro-batch: forward passes and eq. 1) and
`guardray.pretrain.engine` (the DeepSpeed engine, resume, consolidated weights).

Each Ray Train worker runs `train_loop_per_worker`:

1. Builds `GIPModel` from the resolved base folder (same seed on every rank, so newly
   initialised heads agree) and wraps it with ``deepspeed.initialize`` (config from
   `guardray.pretrain.deepspeed_config`). On CPU: DeepSpeed's CPU accelerator over the gloo
   process group Ray Train created, ``torch_adam`` (no fused-Adam compile) and no shared-memory
   comm op (its C++ build takes ~45 s and it only speeds up inference all-reduce).
2. Resumes from the newest checkpoint, ``ray.train.get_checkpoint()`` or the complete one
   the driver found on disk (`guardray.pretrain.resume`; Ray knows only the checkpoints in
   its snapshot file, which a killed run may not have written): DeepSpeed
   ``load_checkpoint`` (module, optimizer, scheduler, ZeRO shards of every rank) plus the
   loop state (global step; the epoch and the position inside it follow from it). Every
   source of randomness is a function of the run's settings and the position only: the rows
   of each rank and their order of (seed, epoch) (`guardray.pretrain.data.split_for_ranks`),
   rationale dropout and MLM masks of (seed, epoch, row), ALICE++'s draws of (seed, step,
   micro-batch), and the dropout RNG is reseeded before every micro-batch from (seed, rank,
   step, micro-batch). So a resumed run ends with the weights of an uninterrupted one (up to
   float rounding), and ``history.jsonl`` keeps each step once: an attempt that starts at
   step k first drops the lines after k that a lost attempt wrote.
3. Per micro-batch (`gip_step`): clean forward -> CE and accuracy; ALICE++ on perturbed
   hidden states (its closure calls the engine with ``perturb=``); masked input -> MLM;
   ``loss = l1*MLM + l2*ALICE++ + l3*CE``; ``engine.backward`` / ``engine.step`` (DeepSpeed
   handles gradient accumulation and clipping). Before every micro-batch all ranks agree
   (all-reduce MIN) that each has a batch: if one rank's data runs out, all raise
   `GIPDataError` together instead of hanging in a collective.
4. Every ``log_every_steps`` optimizer steps: window means of every term, accuracy, lr,
   tokens/s, samples/s and ``data_wait_fraction`` (the share of time the ranks waited for
   input; near 0 = compute-bound) go to ``ray.train.report`` and, from rank 0, to
   TensorBoard (``{log_dir}/tensorboard``). Rank 0 also appends one line per optimizer step
   to ``{log_dir}/history.jsonl`` (terms, tokens, samples, end time, ``data_wait_s``).
5. Every ``checkpoint_every_steps`` and at the end: every rank writes its DeepSpeed
   checkpoint part to a temporary folder and reports it with the same
   ``checkpoint_dir_name``; Ray Train (V2) merges the parts into one storage folder. The last
   checkpoint also holds ``consolidated.safetensors`` (the full GIPModel state dict in fp32,
   gathered from the ZeRO-3 partitions when needed), which the driver exports as a Hugging
   Face checkpoint, and the worker returns the trained model's logits on probe texts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from typing import Any

from guardray.modeling.base import resolve_base
from guardray.pretrain.engine import (
    DS_TAG,
    LOOP_STATE,
    build_engine,
    prepare_deepspeed,
    restore,
    save_consolidated,
)
from guardray.pretrain.plan import LoopPlan
from guardray.pretrain.resume import write_part_record
from guardray.pretrain.step import gip_step, mix_seed
from guardray.progress import Progress

log = logging.getLogger(__name__)

HISTORY = "history.jsonl"
TERMS = ("loss", "mlm", "alice", "alice_label", "alice_virtual", "ce", "accuracy")


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train worker function (see the module docstring).

    Args:
        config: ``{"cfg": PretrainConfig as JSON, "base": model folder, "plan": LoopPlan
            fields, "info": TokenizerInfo, "log_dir": folder, "probe_texts": [str]}``.

    Returns:
        (rank 0's is ``Result.return_value``) ``{"global_step", "start_step", "total_steps",
        "probe_logits": [[float]], "metrics": last window}``.
    """
    import ray.train
    import torch

    from guardray.logging_setup import setup_logging
    from guardray.pretrain.config import PretrainConfig

    setup_logging()  # progress lines reach the driver's console through Ray's log forwarding
    cfg = PretrainConfig.model_validate(config["cfg"])
    plan = LoopPlan(**config["plan"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    threads = cfg.train.torch_threads or max(1, math.ceil(cfg.workers.cpus_per_worker))
    torch.set_num_threads(threads)
    deepspeed = prepare_deepspeed(cfg.workers.use_gpu)
    base = resolve_base(config["base"])  # on this worker's node (a copy of s3://, tiny:, ...)
    engine, model = build_engine(deepspeed, cfg, base, plan, world)
    start_step = restore(engine, config.get("resume"))
    log_dir = config["log_dir"]
    _write_worker_record(log_dir, rank, start_step)
    state = _Run(cfg, plan, engine, model, rank, world, log_dir, start_step)
    try:
        if start_step < plan.total_steps:
            state.train(config["info"])
        else:
            log.info("rank %d: the run already finished (%d steps); nothing to train", rank,
                     start_step)
        probe = _probe_logits(engine, base, config.get("probe_texts") or [], cfg)
    finally:
        state.close()
    return {"global_step": state.global_step, "start_step": start_step,
            "total_steps": plan.total_steps, "probe_logits": probe, "metrics": state.last_metrics}


def truncate_history(path: str, start_step: int) -> int:
    """Keep the lines of ``history.jsonl`` up to ``start_step`` (an attempt resuming there
    will write the later steps again); returns how many lines were dropped. Rewritten
    atomically; a line that is not JSON (a write cut short by a kill) is dropped too."""
    from guardray.io.uris import write_text_atomic

    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    kept = []
    for line in lines:
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue
        if step <= start_step:
            kept.append(line)
    if len(kept) < len(lines):
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
        log.info("history: dropped %d line(s) after step %d, written by an attempt that did not "
                 "reach a checkpoint", len(lines) - len(kept), start_step)
    return len(lines) - len(kept)


def _write_worker_record(log_dir: str, rank: int, start_step: int) -> None:
    import ray

    from guardray.io.uris import write_json_atomic

    record = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(),
              "node_id": ray.get_runtime_context().get_node_id(),
              "start_step": start_step, "time": time.time()}
    write_json_atomic(os.path.join(log_dir, "workers", f"rank{rank}.json"), record)


class _Run:
    """The mutable state of one worker's attempt (step counters, metric windows, writers)."""

    def __init__(self, cfg, plan: LoopPlan, engine, model, rank: int, world: int, log_dir: str,
                 start_step: int):
        import torch

        from guardray.pretrain.losses import AliceParams

        self.cfg, self.plan, self.engine, self.model = cfg, plan, engine, model
        self.rank, self.world, self.log_dir = rank, world, log_dir
        self.start_step = self.global_step = start_step
        self.device = engine.device if cfg.workers.use_gpu else torch.device("cpu")
        self.alice = AliceParams(**cfg.loss.alice.model_dump())
        self.weights = tuple(float(w) for w in cfg.loss.weights)
        self.generator = torch.Generator(device="cpu")
        self.last_metrics: dict[str, float] = {}
        self._step_terms: list[dict] = []
        self._data_s = 0.0  # this optimizer step's wait for batches (incl. the agreement)
        self._reset_window()
        self.writer = self.history = None
        self.progress = Progress(f"pretrain {cfg.run_name}", plan.total_steps, unit="step",
                                 enabled=rank == 0, initial=start_step)
        if rank == 0:
            from tensorboardX import SummaryWriter

            # events of steps after start_step (a lost attempt's) are dropped by TensorBoard
            self.writer = SummaryWriter(os.path.join(log_dir, "tensorboard"),
                                        purge_step=start_step + 1)
            path = os.path.join(log_dir, HISTORY)
            truncate_history(path, start_step)
            self.history = open(path, "a", encoding="utf-8")
        torch.manual_seed(mix_seed(cfg.train.seed, rank, start_step))  # reseeded per micro

    def close(self) -> None:
        self.progress.close()
        if self.writer is not None:
            self.writer.close()
        if self.history is not None:
            self.history.close()

    def _reset_window(self) -> None:
        self.window = {k: 0.0 for k in TERMS}
        self.window_micro = self.window_tokens = self.window_samples = 0
        self.window_data_s = 0.0
        self.window_start = time.perf_counter()

    def train(self, info) -> None:
        import ray.train

        from guardray.pretrain.data import iter_gip_batches, rank_dataset_name

        d = self.cfg.data
        params = self.cfg.data_params()
        shard = ray.train.get_dataset_shard(rank_dataset_name(self.rank))
        self.engine.train()
        epoch, skip = self.plan.position(self.global_step)
        while self.global_step < self.plan.total_steps:
            steps = self.plan.micro_in_epoch(epoch)
            batches = iter_gip_batches(shard, info, params, epoch=epoch, steps=steps, skip=skip,
                                       local_shuffle_buffer_size=d.local_shuffle_buffer_size)
            for _ in range(steps - skip):
                t0 = time.perf_counter()
                batch = self._next_agreed(batches, epoch)
                waited = time.perf_counter() - t0
                self._data_s += waited
                self.window_data_s += waited
                self._micro_step(batch)
            epoch, skip = epoch + 1, 0

    def _next_agreed(self, batches, epoch: int) -> dict:
        """The next batch, after every rank confirmed it has one (else all raise together)."""
        import torch
        import torch.distributed as dist

        from guardray.pretrain.data import GIPDataError

        batch, problem = None, ""
        try:
            batch = next(batches)
        except StopIteration:
            problem = "its data iterator ended"
        except GIPDataError as exc:
            problem = str(exc)
        flag = torch.tensor([0 if batch is None else 1], dtype=torch.int64,
                            device=self.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if int(flag.item()) == 0:
            mine = f"this rank ({self.rank}): {problem}" if problem else "this rank had a batch"
            raise GIPDataError(
                f"a worker ran out of data at epoch {epoch}, step {self.global_step} "
                f"(planned {self.plan.total_steps}); all ranks stop together; {mine}")
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _micro_step(self, batch: dict) -> None:
        engine = self.engine
        # ALICE++ noise and layer: a function of (seed, step, micro-batch) only, the SAME on
        # every rank: under ZeRO-3 all ranks must run identical passes (the perturbed layer
        # sets how deep ALICE++'s inner backward goes, i.e. which partitions get gathered);
        # different layers per rank desynchronise the all-gathers and crash gloo.
        micro = len(self._step_terms)
        self.generator.manual_seed(mix_seed(self.cfg.train.seed, self.global_step, micro))
        # dropout: a function of (seed, rank, step, micro-batch), whatever ran before
        import torch

        torch.manual_seed(mix_seed(self.cfg.train.seed, self.rank, self.global_step, micro))
        out = gip_step(engine, batch, weights=self.weights, alice_params=self.alice,
                       num_layers=self.model.num_layers, hidden_size=self.model.hidden_size,
                       generator=self.generator)
        engine.backward(out["loss"])
        boundary = engine.is_gradient_accumulation_boundary()
        engine.step()
        out["loss"] = float(out["loss"].detach())
        for k in TERMS:
            self.window[k] += out[k]
        self.window_micro += 1
        out["tokens"] = int(batch["attention_mask"].sum())
        out["samples"] = int(batch["input_ids"].shape[0])
        self.window_tokens += out["tokens"]
        self.window_samples += out["samples"]
        self._step_terms.append(out)
        if not boundary:
            return
        self.global_step += 1
        self.progress.update(1, loss=sum(t["loss"] for t in self._step_terms)
                             / len(self._step_terms))
        self._write_history(self._step_terms)
        self._step_terms = []
        step = self.global_step
        last = step >= self.plan.total_steps
        ckpt = last or step % self.cfg.train.checkpoint_every_steps == 0
        if ckpt or step % self.cfg.train.log_every_steps == 0:
            metrics = self._window_metrics()
            if ckpt:
                self._checkpoint(metrics, final=last)
            else:
                import ray.train

                ray.train.report(metrics)

    def _lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def _write_history(self, terms: list[dict]) -> None:
        data_s, self._data_s = self._data_s, 0.0
        if self.history is None:
            return
        n = len(terms)
        rec = {"step": self.global_step, "attempt_start": self.start_step,
               "epoch": self.plan.position(self.global_step - 1)[0], "lr": self._lr(),
               **{k: sum(t[k] for t in terms) / n for k in TERMS},
               "layers": [t["layer"] for t in terms],
               "tokens": sum(t["tokens"] for t in terms),  # this rank's real tokens
               "samples": sum(t["samples"] for t in terms), "time": time.time(),
               "data_wait_s": round(data_s, 6)}
        self.history.write(json.dumps(rec) + "\n")
        self.history.flush()

    def _window_metrics(self) -> dict[str, float]:
        """Means over the window and all ranks; throughput of the whole worker group."""
        import torch
        import torch.distributed as dist

        elapsed = time.perf_counter() - self.window_start
        vec = torch.tensor([self.window[k] for k in TERMS] + [
            self.window_micro, self.window_tokens, self.window_samples, self.window_data_s],
            dtype=torch.float64, device=self.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vals = vec.tolist()
        micro = max(1.0, vals[len(TERMS)])
        metrics = {k: vals[i] / micro for i, k in enumerate(TERMS)}
        metrics.update(
            step=self.global_step, epoch=self.plan.position(self.global_step - 1)[0],
            lr=self._lr(), tokens_per_s=vals[len(TERMS) + 1] / max(elapsed, 1e-9),
            samples_per_s=vals[len(TERMS) + 2] / max(elapsed, 1e-9),
            # share of the window the ranks spent waiting for input (0: never data-bound)
            data_wait_fraction=vals[len(TERMS) + 3] / max(elapsed * self.world, 1e-9),
            attempt_start=self.start_step)
        if self.writer is not None:
            for k, v in metrics.items():
                if k not in ("step", "attempt_start"):
                    self.writer.add_scalar(f"train/{k}", v, self.global_step)
            self.writer.flush()
        self.last_metrics = metrics
        self._reset_window()
        return metrics

    def _checkpoint(self, metrics: dict[str, float], *, final: bool) -> None:
        import ray.train
        from ray.train import Checkpoint

        folder = tempfile.mkdtemp(prefix=f"gip-ckpt-{self.global_step}-r{self.rank}-")
        try:
            self.engine.save_checkpoint(folder, tag=DS_TAG)
            if final:
                save_consolidated(self.engine, self.model, folder, self.rank,
                                   self.cfg.train.zero_stage)
            if self.rank == 0:
                with open(os.path.join(folder, LOOP_STATE), "w", encoding="utf-8") as fh:
                    json.dump({"global_step": self.global_step, "total_steps":
                               self.plan.total_steps, "final": final, "world_size": self.world,
                               "plan": dataclasses.asdict(self.plan)}, fh)
            write_part_record(folder, self.rank)  # last: lists this rank's files and sizes
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder),
                             checkpoint_dir_name=f"checkpoint_{self.global_step:09d}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _probe_logits(engine, base: str, texts: list[str], cfg) -> list[list[float]]:
    """Class logits of the trained model on ``texts`` (every rank runs it: ZeRO-3 forward)."""
    if not texts:
        return []
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base, trust_remote_code=cfg.model.trust_remote_code)
    enc = tok(list(texts), padding=True, truncation=True, max_length=cfg.model.max_length,
              return_tensors="pt")
    device = engine.device if cfg.workers.use_gpu else torch.device("cpu")
    engine.eval()
    with torch.no_grad():
        logits = engine(input_ids=enc["input_ids"].to(device),
                        attention_mask=enc["attention_mask"].to(device), head="cls")
    engine.train()
    return logits.float().cpu().tolist()
