"""Benchmark of the GIP data path: a big shard set streamed through read -> tokenize -> batches.

Writes (once, cached under ``{tmp}/guardray-bench/``) ``--rows`` synthetic sample rows as
``--shards`` Parquet shards (prompts of 8-40 words, rationales of 10-40 words, the four shipped
policies, 95% train / 5% validation), then streams them through
`guardray.pretrain.data`: ``read_gip_dataset -> tokenize_dataset -> iter_gip_batches``
(rationale dropout, truncation, dynamic padding, MLM masking, torch tensors), as

- ``single``: one consumer iterating the Dataset;
- ``split2``: ``streaming_split(2, equal=True)`` with two consumer threads in the driver (as
  Ray Train's two ranks would; there they are worker processes), each running exactly
  ``steps_per_epoch`` steps.

A sampler thread reads, every ``--sample-s`` seconds, the RSS of the driver and the summed
RSS and PSS of the whole process tree (driver, GCS, raylet, Ray workers: the tokenizer
actors, read tasks, the split coordinator). RSS counts shared pages (the object store) once
per process, PSS splits them fairly, so PSS is the better "total memory" figure. The table
gives peaks and the tree PSS when 10%, 50% and 100% of the rows have been consumed: flat
figures mean streaming works (memory does not grow with rows).

Also measured: the two stages alone in this process, no Ray (rows/s of the tokenising UDF
and of ``collate_batch``, one core each), to show where the time goes; and Ray Data's own
per-operator stats of the single-consumer run (stderr).

Usage:
    python benchmarks/bench_gip_data.py --rows 1000000
    python benchmarks/bench_gip_data.py --rows 200000 --modes single
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import _bench
import numpy as np

ROOT = _bench.setup()

WORDS = ("tax money stock fund savings bitcoin return file income rate loan mortgage bank "
         "advice invest portfolio crypto deduction credit refund audit state federal policy "
         "system prompt ignore instructions weapon harm safe unsafe user assistant question "
         "explain general specific personal account retirement pension insurance share bond "
         "market price buy sell hold risk plan budget debt law rule secret password hack").split()


# --------------------------------------------------------------------------- data


def make_shards(out: Path, rows: int, shards: int, seed: int = 0) -> None:
    """Write ``rows`` synthetic sample rows as ``shards`` shards (skipped if already there)."""
    import pyarrow as pa

    from guardray import schema as S
    from guardray.io.shards import write_shard

    done = out / "_DONE"
    if done.exists():
        print(f"reusing {out}", file=sys.stderr)
        return
    out.mkdir(parents=True, exist_ok=True)
    policies = ["finance", "injection", "safety", "tax"]
    words = np.asarray(WORDS)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    bounds = np.linspace(0, rows, shards + 1).astype(int)
    for k in range(shards):
        n = int(bounds[k + 1] - bounds[k])
        n_text = rng.integers(8, 41, n)
        n_rat = rng.integers(10, 41, n)
        flat = words[rng.integers(0, len(words), int(n_text.sum() + n_rat.sum()))].tolist()
        pos, texts, rats = 0, [], []
        for i in range(n):
            texts.append(f"q{bounds[k] + i} " + " ".join(flat[pos:pos + n_text[i]]) + "?")
            pos += n_text[i]
            rats.append("The prompt " + " ".join(flat[pos:pos + n_rat[i]]) + ".")
            pos += n_rat[i]
        pol = [policies[j] for j in rng.integers(0, 4, n)]
        labels = rng.integers(0, 2, n).astype(np.int8)
        table = pa.table({
            S.ID: [S.sample_id(p, t) for p, t in zip(pol, texts)], S.POLICY_ID: pol,
            S.TEXT: texts, S.RATIONALE: rats, S.LABEL: labels, S.LABEL_INITIAL: labels,
            S.SOURCE: ["diverse"] * n, S.GENERATOR: ["bench"] * n,
            S.SPLIT: np.where(rng.random(n) < 0.95, "train", "validation").tolist(),
        })
        write_shard(table, out, index=k, if_exists="overwrite")
    done.write_text(json.dumps({"rows": rows, "shards": shards}))
    print(f"wrote {rows} rows as {shards} shards in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)


# --------------------------------------------------------------------------- memory


class Sampler(threading.Thread):
    """Samples driver RSS and process-tree RSS/PSS (GiB) until stopped."""

    def __init__(self, period: float):
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.period = period
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.peak = {"driver_rss": 0.0, "tree_rss": 0.0, "tree_pss": 0.0}

    def measure(self) -> dict[str, float]:
        import psutil

        procs = [self.me] + self.me.children(recursive=True)
        rss = pss = 0
        driver = 0
        for p in procs:
            try:
                info = p.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            if p.pid == self.me.pid:
                driver = info.rss
        gib = 2.0 ** 30
        sample = {"driver_rss": driver / gib, "tree_rss": rss / gib, "tree_pss": pss / gib,
                  "procs": len(procs)}
        with self.lock:
            for key in self.peak:
                self.peak[key] = max(self.peak[key], sample[key])
        return sample

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            self.measure()


# --------------------------------------------------------------------------- runs


def stages_alone(tokenizer_path: str, shard_dir: Path, descriptions: dict, params,
                 n: int = 20000) -> tuple[float, float]:
    """Rows/s of the tokenising UDF and of `collate_batch`, in this process, no Ray.

    Uses ``n`` rows of the first shard; one core each (the tokenizer runs single-threaded).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from guardray.io.shards import list_shards
    from guardray.pretrain.data import GIPTokenizer, TokenizerInfo, collate_batch

    table = pq.read_table(list_shards(str(shard_dir))[0]).slice(0, n)
    udf = GIPTokenizer(tokenizer_path, descriptions, params.max_length)
    udf(table.slice(0, 256))  # warm-up
    t0 = time.perf_counter()
    parts = [udf(table.slice(start, 1024)) for start in range(0, table.num_rows, 1024)]
    tokenize = table.num_rows / (time.perf_counter() - t0)
    tokens = pa.concat_tables(parts)
    cols = {c: tokens.column(c).to_numpy(zero_copy_only=False) for c in tokens.column_names}
    info = TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(tokenizer_path))
    b = params.batch_size
    t0 = time.perf_counter()
    for start in range(0, tokens.num_rows - b + 1, b):
        collate_batch({k: v[start:start + b] for k, v in cols.items()}, info, params, epoch=0)
    collate = (tokens.num_rows // b * b) / (time.perf_counter() - t0)
    return tokenize, collate


def run_mode(mode: str, shard_dir: Path, tokenizer_path: str, descriptions: dict, params,
             sampler: Sampler, actors: int, block_bytes: int | None) -> dict:
    from transformers import AutoTokenizer

    from guardray.pretrain import data as G

    info = G.TokenizerInfo.from_tokenizer(AutoTokenizer.from_pretrained(tokenizer_path))
    world = 1 if mode == "single" else 2
    t0 = time.perf_counter()
    ds = G.read_gip_dataset(str(shard_dir), block_bytes=block_bytes or G.BLOCK_BYTES)
    num_rows = G.count_rows(ds)
    count_s = time.perf_counter() - t0
    steps = G.steps_per_epoch(num_rows, world, params.batch_size)
    target = steps * world * params.batch_size
    tds = G.tokenize_dataset(ds, tokenizer_path, descriptions, params, num_actors=actors)
    sampler.reset()
    marks: dict[str, float] = {}
    state = {"rows": 0, "tokens": 0, "masked": 0, "with_rationale": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def consume(shard) -> None:
        try:
            for batch in G.iter_gip_batches(shard, info, params, epoch=0, steps=steps):
                with lock:
                    state["rows"] += batch["input_ids"].shape[0]
                    state["tokens"] += int(batch["attention_mask"].sum())
                    state["masked"] += int((batch["mlm_labels"] != -100).sum())
                    state["with_rationale"] += int(batch["has_rationale"].sum())
                    done = state["rows"] / target
                    for pct in (10, 50, 100):
                        if done >= pct / 100 and f"{pct}%" not in marks:
                            marks[f"{pct}%"] = -1.0  # claimed; measured below, outside
                            claim = pct
                            break
                    else:
                        claim = None
                if claim is not None:
                    marks[f"{claim}%"] = sampler.measure()["tree_pss"]
        except BaseException as exc:  # reported by the driver
            errors.append(exc)

    t1 = time.perf_counter()
    if world == 1:
        consume(tds)
    else:
        threads = [threading.Thread(target=consume, args=(s,))
                   for s in tds.streaming_split(world, equal=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seconds = time.perf_counter() - t1
    if errors:
        raise errors[0]
    if world == 1:
        print(f"Ray Data stats ({mode}):\n{tds.stats()}", file=sys.stderr, flush=True)
    final = sampler.measure()
    return {
        "mode": mode, "rows_read": num_rows, "rows": state["rows"], "steps_per_rank": steps,
        "count_s": round(count_s, 1), "seconds": round(seconds, 1),
        "rows_per_s": round(state["rows"] / seconds), "tokens_per_row":
            round(state["tokens"] / max(state["rows"], 1), 1),
        "masked_share": round(state["masked"] / max(state["tokens"], 1), 4),
        "rationale_share": round(state["with_rationale"] / max(state["rows"], 1), 4),
        "peak_driver_rss_gib": round(sampler.peak["driver_rss"], 2),
        "peak_tree_rss_gib": round(sampler.peak["tree_rss"], 2),
        "peak_tree_pss_gib": round(sampler.peak["tree_pss"], 2),
        "pss_at": {k: round(v, 2) for k, v in marks.items()},
        "procs_end": final["procs"],
    }


def print_table(results: list[dict]) -> None:
    print("| mode | rows consumed | steps/rank | seconds | rows/s | tokens/row | driver peak RSS "
          "GiB | tree peak RSS GiB | tree peak PSS GiB | tree PSS @10% / 50% / 100% GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        at = " / ".join(f"{r['pss_at'].get(k, float('nan')):.2f}" for k in ("10%", "50%", "100%"))
        print(f"| {r['mode']} | {r['rows']:,} | {r['steps_per_rank']:,} | {r['seconds']} | "
              f"{r['rows_per_s']:,} | {r['tokens_per_row']} | {r['peak_driver_rss_gib']} | "
              f"{r['peak_tree_rss_gib']} | {r['peak_tree_pss_gib']} | {at} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=["single", "split2"],
                        choices=["single", "split2"])
    parser.add_argument("--tokenizer", default="embedded:all-minilm-l6-v2",
                        help="model ref (embedded:..., tiny:xlmr, or a folder)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--actors", type=int, default=2, help="tokenizer actors")
    parser.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of ray.init")
    parser.add_argument("--sample-s", type=float, default=0.5)
    parser.add_argument("--block-bytes", type=int, default=None,
                        help="read_gip_dataset block_bytes (default: the library's)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "guardray-bench"))
    args = parser.parse_args(argv)

    import ray

    from guardray.finetune.run import resolve_base
    from guardray.policies import load_policies
    from guardray.pretrain.data import GIPDataParams

    shard_dir = Path(args.cache) / f"gip-{args.rows}-{args.shards}"
    make_shards(shard_dir, args.rows, args.shards)
    descriptions = {p.id: p.description for p in load_policies([str(ROOT / "configs/policies")])}
    tokenizer_path = resolve_base(args.tokenizer)
    params = GIPDataParams(max_length=args.max_length, batch_size=args.batch_size)
    alone, collate = stages_alone(tokenizer_path, shard_dir, descriptions, params)
    print(f"alone (1 process, no Ray): tokenize {alone:,.0f} rows/s, collate {collate:,.0f} "
          "rows/s", file=sys.stderr)

    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_s = time.perf_counter() - t0
    sampler = Sampler(args.sample_s)
    idle = sampler.measure()
    sampler.start()
    results = []
    for mode in args.modes:
        result = run_mode(mode, shard_dir, tokenizer_path, descriptions, params, sampler,
                          args.actors, args.block_bytes)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    sampler.stop_event.set()
    ray.shutdown()
    print("\n" + _bench.machine(ray=ray.__version__) + f"; ray.init {init_s:.1f} s; idle "
          f"tree after init: RSS {idle['tree_rss']:.2f} GiB, PSS {idle['tree_pss']:.2f} GiB")
    print(f"data: {args.rows:,} rows in {args.shards} shards ({shard_dir}); tokenizer "
          f"{args.tokenizer}; batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.actors} tokenizer actor(s), read blocks of "
          f"{(args.block_bytes or 8 * 2**20) / 2**20:g} MiB; alone (1 process, no Ray): "
          f"tokenize {alone:,.0f} rows/s, collate {collate:,.0f} rows/s\n")
    print_table(results)
    for r in results:
        print(f"{r['mode']}: count_rows {r['count_s']} s; masked share {r['masked_share']}; "
              f"rows with rationale {r['rationale_share']}; processes at end {r['procs_end']}")


if __name__ == "__main__":
    main()
