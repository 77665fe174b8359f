"""Benchmark the GIP pretraining loop: Ray Train + DeepSpeed against a bare PyTorch loop.

Measures, on the same model (default: the embedded all-MiniLM-L6-v2) and the same rows:

1. tokens/s and samples/s of the full job (`guardray.pretrain.run.run_pretrain`: Ray Data
   streaming + tokenisation, Ray Train TorchTrainer, DeepSpeed fp32, all-reduce guard,
   metric reports) with 1 worker (``--repeats`` times, ZeRO ``--zero-stage``, default 0:
   one rank has nothing to partition) and 2 workers (ZeRO-2), from the per-step timestamps
   rank 0 writes to ``history.jsonl``;
2. a bare single-process loop: GIPModel + ``torch.optim.AdamW``, the same `gip_step`
   (eq. 1), batches collated in the loop from rows tokenised beforehand; run before the
   first Ray run and after each one, so every Ray run is bracketed by two bare runs;
3. the same single-process loop through the job's DeepSpeed engine (ZeRO-0 and ZeRO-2,
   1-rank gloo group), separating DeepSpeed's cost from Ray's;
4. where the Ray runs' CPU goes during their timed steps (Train worker, tokenizer actors,
   the other Ray processes, the rest of the machine, from ``/proc``) and how long the worker
   waited for input per step (``data_wait_s`` in history.jsonl);
5. the cost of ALICE++: bare-loop step time with l2 = 0 against l2 > 0 (1 and 2 ascent
   steps), and of the MLM head with logits at every position against the masked ones only.

All loops skip the first ``--warmup`` steps (start-up, allocator warm-up) and time the rest
(the Ray run's final step, which writes the final checkpoint, is left out too); rates use
the median step time. The overhead of repeat r is ``1 - ray_r / mean(bare_r, bare_r+1)`` in
tokens/s, same torch threads; the script prints each and their median. Prints Markdown
tables; paste them into docs/BENCHMARKS.md.

Usage:
    python benchmarks/bench_pretrain.py [--model embedded:all-minilm-l6-v2] [--steps 20]
        [--batch-size 8] [--threads 2] [--repeats 3] [--zero-stage 0] [--skip-ray]
        [--skip-two-workers] [--skip-variants]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import _bench

REPO = _bench.setup("pretrain")


def write_rows(folder: Path, n: int) -> Path:
    from pretrain_testlib import write_gip_shards

    return write_gip_shards(folder, n=n, shards=4)


def make_config(tmp: Path, data: Path, args, *, workers: int, name: str, weights=(1, 1, 1),
                alice_steps: int = 1, zero_stage: int = 2):
    from guardray.config import load_config
    from guardray.pretrain.config import PretrainConfig

    return load_config(PretrainConfig, REPO / "configs" / "debug" / "pretrain.yaml", (
        f"model.base={args.model}", f"model.max_length={args.max_length}",
        f"data.path={data}", f"storage_path={tmp / 'ray'}", f"output_dir={tmp / name}",
        f"run_name={name}", f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}", "train.lr=2e-5",
        f"train.checkpoint_every_steps={10**6}", "train.log_every_steps=10",
        f"train.zero_stage={zero_stage}", f"train.torch_threads={args.threads}",
        f"workers.num_workers={workers}", f"workers.cpus_per_worker={args.cpus_per_worker}",
        f"loss.weights=[{weights[0]},{weights[1]},{weights[2]}]",
        f"loss.alice.steps={alice_steps}", "failure.max_failures=0"))


def rate(records: list[dict], warmup: int, world: int = 1) -> dict:
    """Throughput over records[warmup:] (times are step-end timestamps).

    On a shared machine load spikes hit single steps, so the rates use the MEDIAN step time
    (``s_per_step``); ``mean_s_per_step`` is the plain span / steps.
    """
    timed = records[warmup:]
    times = [records[warmup - 1]["time"]] + [r["time"] for r in timed]
    steps = [b - a for a, b in zip(times, times[1:])]
    med = statistics.median(steps)
    tokens = statistics.mean(r["tokens"] for r in timed) * world  # rank 0's x ranks
    samples = statistics.mean(r["samples"] for r in timed) * world
    return {"steps": len(timed), "seconds": times[-1] - times[0], "s_per_step": med,
            "mean_s_per_step": (times[-1] - times[0]) / len(timed),
            "tokens_per_s": tokens / med, "samples_per_s": samples / med}


class Prepared:
    """Rows tokenised once (outside the timed loop) and the collate parameters."""

    def __init__(self, cfg, base: str, data: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq
        from transformers import AutoTokenizer

        from guardray.io.shards import list_shards
        from guardray.pretrain.data import GIPTokenizer, TokenizerInfo
        from guardray.pretrain.run import load_descriptions

        self.info = TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(base))
        self.params = cfg.data_params()
        table = pa.concat_tables([pq.read_table(p) for p in list_shards(str(data))])
        self.tokenized = GIPTokenizer(base, load_descriptions(cfg), cfg.model.max_length)(table)

    def batch(self, step: int, bs: int) -> dict:
        from guardray.pretrain.data import collate_batch

        part = self.tokenized.slice((step * bs) % (self.tokenized.num_rows - bs), bs)
        return collate_batch({c: part.column(c).to_numpy(zero_copy_only=False)
                              for c in part.column_names}, self.info, self.params, epoch=0)


def single_process_loop(cfg, base: str, prepared: Prepared, args, *,
                        deepspeed_engine: bool = False) -> dict:
    """One process, no Ray: GIPModel + `gip_step` on pre-tokenised rows.

    ``deepspeed_engine=False``: plain ``torch.optim.AdamW`` + grad clipping (the bare loop).
    ``True``: the DeepSpeed config the job builds for ``cfg`` (its ZeRO stage, torch AdamW,
    clipping, LR schedule) on a 1-rank gloo process group: DeepSpeed's cost without Ray's.
    """
    import torch

    from guardray.modeling.training import param_groups
    from guardray.pretrain.losses import AliceParams
    from guardray.pretrain.model import GIPModel
    from guardray.pretrain.step import gip_step

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GIPModel.from_pretrained(base)
    model.train()
    groups = param_groups(model, cfg.train.weight_decay)
    if deepspeed_engine:
        engine = _deepspeed_engine(cfg, model, groups, args.steps)
    else:
        engine = model
        opt = torch.optim.AdamW(groups, lr=cfg.train.lr)
    alice = AliceParams(**cfg.loss.alice.model_dump())
    gen = torch.Generator()
    records = []
    bs = cfg.train.batch_size
    for step in range(args.steps):
        batch = prepared.batch(step, bs)
        gen.manual_seed(step)
        out = gip_step(engine, batch, weights=tuple(cfg.loss.weights), alice_params=alice,
                       num_layers=model.num_layers, hidden_size=model.hidden_size,
                       generator=gen)
        if deepspeed_engine:
            engine.backward(out["loss"])
            engine.step()
        else:
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
        records.append({"time": time.time(), "cpu": time.process_time(),
                        "tokens": int(batch["attention_mask"].sum()), "samples": bs})
    result = rate(records, args.warmup)
    timed = records[args.warmup - 1:]
    result["cpu_s_per_step"] = (timed[-1]["cpu"] - timed[0]["cpu"]) / (len(timed) - 1)
    return result


def _deepspeed_engine(cfg, model, groups, steps: int):
    import socket

    import torch.distributed as dist

    from guardray.pretrain.deepspeed_config import build_deepspeed_config
    from guardray.pretrain.engine import prepare_deepspeed

    deepspeed = prepare_deepspeed(use_gpu=False)
    if not dist.is_initialized():  # one 1-rank gloo group for every DeepSpeed row
        with socket.socket() as sock:  # a free port
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(DIST_ENV, MASTER_PORT=str(port))
        deepspeed.init_distributed(dist_backend="gloo")
    ds_config = build_deepspeed_config(cfg.train, total_steps=steps, world_size=1)
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=groups,
                                           config=ds_config)
    return engine


DIST_ENV = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "", "RANK": "0", "WORLD_SIZE": "1",
            "LOCAL_RANK": "0"}


class CpuWindow(threading.Thread):
    """CPU seconds of every process on the machine over the Ray run's timed steps.

    Watches rank 0's ``history.jsonl``; snapshots ``/proc/*/stat`` (utime + stime) when
    ``start`` lines exist and again at ``end`` lines, then groups the deltas: the Train
    worker(s), the tokenizer actors, other Ray processes (controller, coordinators, raylet,
    GCS, idle workers, ...), and everything else on the machine (this script included).
    """

    def __init__(self, history: Path, start: int, end: int):
        super().__init__(daemon=True)
        self.history, self.start_line, self.end_line = history, start, end
        self.result: dict | None = None

    def _lines(self) -> int:
        try:
            return len(self.history.read_text().splitlines())
        except OSError:
            return 0

    @staticmethod
    def _snapshot() -> dict[str, tuple[float, str]]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            out[pid] = ((int(fields[11]) + int(fields[12])) / tick, cmd)
        return out

    def run(self) -> None:
        while self._lines() < self.start_line:
            time.sleep(0.05)
        a, ta = self._snapshot(), time.time()
        while self._lines() < self.end_line:
            time.sleep(0.05)
        b, tb = self._snapshot(), time.time()
        groups = {"train worker(s)": 0.0, "tokenizer actors": 0.0, "other Ray processes": 0.0,
                  "rest of the machine": 0.0}
        for pid, (cpu, cmd) in b.items():
            delta = cpu - a.get(pid, (0.0, ""))[0]
            if "RayTrainWorker" in cmd:
                groups["train worker(s)"] += delta
            elif "MapWorker" in cmd or "GIPTokenizer" in cmd:
                groups["tokenizer actors"] += delta
            elif "ray::" in cmd or "/ray/" in cmd:
                groups["other Ray processes"] += delta
            else:
                groups["rest of the machine"] += delta
        self.result = {"seconds": tb - ta, "steps": self.end_line - self.start_line,
                       "cpu_s": groups}


def ray_loop(cfg, args) -> dict:
    from guardray.pretrain.run import resolve_log_dir, run_pretrain

    history = Path(resolve_log_dir(cfg)) / "history.jsonl"
    # timed window: after the warm-up steps, up to the step before the final checkpoint
    monitor = CpuWindow(history, args.warmup, args.steps - 1)
    monitor.start()
    summary = run_pretrain(cfg)
    monitor.join(timeout=30)
    hist = [json.loads(x) for x in (Path(summary["log_dir"]) / "history.jsonl")
            .read_text().splitlines()]
    hist = [h for h in hist if h["attempt_start"] == 0][:-1]  # drop the final-checkpoint step
    result = {**rate(hist, args.warmup, cfg.workers.num_workers),
              "job_seconds": summary["seconds"],
              "data_wait_s_per_step": statistics.median(h["data_wait_s"]
                                                        for h in hist[args.warmup:])}
    if monitor.result:
        window = monitor.result
        result["cpu_cores"] = {k: v / window["seconds"] for k, v in window["cpu_s"].items()}
        result["cpu_s_per_step"] = (window["cpu_s"]["train worker(s)"] / window["steps"]
                                    / cfg.workers.num_workers)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded:all-minilm-l6-v2")
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch threads (bare and per worker)")
    p.add_argument("--cpus-per-worker", type=float, default=0.5)
    p.add_argument("--zero-stage", type=int, default=0,
                   help="ZeRO stage of the 1-worker Ray runs (1 rank: stages 1-3 partition "
                        "nothing; the DeepSpeed-alone rows show their cost)")
    p.add_argument("--repeats", type=int, default=3,
                   help="bare/Ray pairs, interleaved (the overhead is their median)")
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--skip-two-workers", action="store_true")
    p.add_argument("--skip-variants", action="store_true", help="no ALICE++ cost rows")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()

    from guardray.finetune.run import resolve_base

    base = resolve_base(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    data = write_rows(tmp / "data", args.rows)
    results: dict[str, dict] = {}
    full = make_config(tmp, data, args, workers=1, name="w1")
    prepared = Prepared(full, base, data)
    results["bare 1"] = single_process_loop(full, base, prepared, args)
    for stage in (0, 2):
        results[f"DeepSpeed ZeRO-{stage}, 1 process, no Ray"] = single_process_loop(
            make_config(tmp, data, args, workers=1, name="ds", zero_stage=stage), base,
            prepared, args, deepspeed_engine=True)
    if not args.skip_variants:
        variants(results, tmp, data, base, prepared, args)
    if not args.skip_ray:
        import ray

        for key in DIST_ENV:  # the Ray workers must not inherit the 1-rank group's variables
            os.environ.pop(key, None)

        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        for r in range(1, args.repeats + 1):
            results[f"Ray Train + DeepSpeed ZeRO-{args.zero_stage}, 1 worker ({r})"] = ray_loop(
                make_config(tmp, data, args, workers=1, name=f"w1-{r}",
                            zero_stage=args.zero_stage), args)
            results[f"bare {r + 1}"] = single_process_loop(full, base, prepared, args)
        if not args.skip_two_workers:
            results["Ray Train + DeepSpeed ZeRO-2, 2 workers"] = ray_loop(
                make_config(tmp, data, args, workers=2, name="w2"), args)
        ray.shutdown()
    report(results, args)


def variants(results: dict, tmp: Path, data: Path, base: str, prepared: Prepared,
             args) -> None:
    """Bare-loop step time without ALICE++, with 2 ascent steps, and CE alone."""
    results["MLM head cost"] = mlm_head_cost(base, args)
    for name, kwargs in (("bare, l2=0 (MLM + CE)", {"weights": (1, 0, 1)}),
                         ("bare, ALICE++ 2 steps", {"alice_steps": 2}),
                         ("bare, CE only", {"weights": (0, 0, 1)})):
        cfg = make_config(tmp, data, args, workers=1, name="variant", **kwargs)
        results[name] = single_process_loop(cfg, base, prepared, args)


def mlm_head_cost(base: str, args, pairs: int = 12) -> dict:
    """One MLM forward + backward with logits everywhere vs at the masked positions only.

    Same model, same random batch (``--batch-size`` x ``--max-length`` tokens, 15 % masked),
    the two variants interleaved ``pairs`` times; medians of all but the first two pairs.
    """
    import torch

    from guardray.pretrain.losses import IGNORE_INDEX, mlm_loss
    from guardray.pretrain.model import GIPModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GIPModel.from_pretrained(base)
    model.train()
    ids = torch.randint(1000, model.vocab_size, (args.batch_size, args.max_length))
    mask = torch.ones_like(ids)
    picked = torch.rand(ids.shape) < 0.15
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[picked] = ids[picked]
    variants = {
        "all positions": lambda: mlm_loss(model(ids, mask, head="mlm"), labels),
        "masked positions only": lambda: mlm_loss(
            model(ids, mask, head="mlm", mlm_positions=picked), labels[picked]),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(pairs):
        for name, loss in variants.items():
            start = time.perf_counter()
            loss().backward()
            model.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v[2:]) for k, v in times.items()} | {
        "masked": int(picked.sum())}


def report(results: dict, args) -> None:
    bare = results["bare 1"]
    print(f"\nmodel {args.model}, batch {args.batch_size} rows/worker, max_length "
          f"{args.max_length}, {args.steps} steps (first {args.warmup} not timed), torch "
          f"threads {args.threads}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores\n")
    print("| loop | median s/step | mean s/step | samples/s | tokens/s | CPU s/step | "
          "vs bare 1 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "s_per_step" not in r:
            continue
        cpu = f"{r['cpu_s_per_step']:.2f}" if "cpu_s_per_step" in r else "-"
        print(f"| {name} | {r['s_per_step']:.3f} | {r['mean_s_per_step']:.3f} | "
              f"{r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | {cpu} | "
              f"{r['tokens_per_s'] / bare['tokens_per_s']:.2f}x |")
    overheads = []
    for r in range(1, args.repeats + 1):
        one = results.get(f"Ray Train + DeepSpeed ZeRO-{args.zero_stage}, 1 worker ({r})")
        if one is None:
            continue
        ref = (results[f"bare {r}"]["tokens_per_s"] + results[f"bare {r + 1}"]["tokens_per_s"]) / 2
        overheads.append(100 * (1 - one["tokens_per_s"] / ref))
    if overheads:
        print("\norchestration overhead per repeat (1 worker vs the mean of the bare runs just "
              "before and after): " + ", ".join(f"{o:.1f} %" for o in overheads)
              + f"; median {statistics.median(overheads):.1f} % (target <= 15 %)")
    for stage in (0, 2):
        ds = results.get(f"DeepSpeed ZeRO-{stage}, 1 process, no Ray")
        if ds:
            print(f"DeepSpeed ZeRO-{stage} alone vs bare 1: "
                  f"{100 * (1 - ds['tokens_per_s'] / bare['tokens_per_s']):.1f} % fewer tokens/s")
    ray_rows = {k: v for k, v in results.items() if "cpu_cores" in v}
    if ray_rows:
        groups = list(next(iter(ray_rows.values()))["cpu_cores"])
        print("\nCPU cores used during the timed steps of the Ray runs (of "
              f"{os.cpu_count()}), and the worker's median wait for input per step:\n")
        print("| run | " + " | ".join(groups) + " | data wait s/step |")
        print("|---|" + "---|" * (len(groups) + 1))
        for name, r in ray_rows.items():
            print(f"| {name} | " + " | ".join(f"{r['cpu_cores'][g]:.2f}" for g in groups)
                  + f" | {r['data_wait_s_per_step']:.3f} |")
    mlm = results.get("MLM head cost")
    if mlm:
        print(f"\nMLM forward + backward, {mlm['masked']} masked positions: logits at all "
              f"positions {mlm['all positions']:.3f} s, at the masked ones only "
              f"{mlm['masked positions only']:.3f} s "
              f"({mlm['masked positions only'] / mlm['all positions']:.2f}x)")
    if "bare, l2=0 (MLM + CE)" in results:
        base_t = results["bare, l2=0 (MLM + CE)"]["s_per_step"]
        cost2 = results["bare, ALICE++ 2 steps"]["s_per_step"] / base_t
        print(f"\nALICE++ cost: step time x{bare['s_per_step'] / base_t:.2f} (1 ascent step), "
              f"x{cost2:.2f} (2 steps) relative to l2 = 0")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
