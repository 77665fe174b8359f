"""Benchmark of near-duplicate removal: global dedup at growing sizes, and embedding throughput.

Part 1, global dedup (`guardray.dedup.semantic.global_dedup`) of synthetic 384-d embeddings
with planted near-duplicates (`guardray.dedup.synthetic`), one fresh subprocess per size so
that peak memory (VmHWM of that process: Python, the embeddings loaded from disk, faiss and
every temporary) is measured per size. Quality:

- recall = share of exact near-duplicate pairs (cosine >= threshold, from tiled all-pairs)
  that do not survive with both rows kept; all-pairs where feasible (<= --exact-max rows),
  else estimated from the exact neighbours of 2000 random rows (marked "~");
- the per-batch baseline (the paper's per-mini-batch dedup, batches of 1024) on the same data;
- exact all-pairs time, for the quadratic-vs-linear comparison.

Data: ``topics`` (bases around random topic directions, like sentence embeddings) and a
``uniform`` stress case (no structure: the worst case for any k-means partition).

Part 2, embedding throughput of the embedded all-MiniLM-L6-v2: in one process vs Ray Data
actor pools (``map_batches(Embedder, concurrency=k)``), sentences/s, model load included
for Ray (actor start-up is part of a real run) and reported separately in-process.

Usage:
    python benchmarks/bench_dedup.py                      # 10k, 100k, 1M + embedding
    python benchmarks/bench_dedup.py --sizes 10000 --no-embed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import _bench
import numpy as np

ROOT = _bench.setup()

THRESHOLD = 0.9


def peak_rss_gib() -> float:
    """Peak resident memory of this process (VmHWM), GiB.

    Not ``ru_maxrss``: Linux carries that across fork + exec, so a child would report the
    parent's footprint (the parent holds the generated embeddings).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(path: str, probes: int, target: int) -> None:
    """Child process: load embeddings, run global dedup, print JSON (time, peak memory)."""
    from guardray.dedup.semantic import GlobalParams, global_dedup

    emb = np.load(path)
    rss_loaded = peak_rss_gib()
    t0 = time.perf_counter()
    res, stats = global_dedup(emb, THRESHOLD, GlobalParams(probes=probes, target_cluster_size=target),
                              progress=False)
    seconds = time.perf_counter() - t0
    np.save(path + ".keep.npy", res.keep)
    print(json.dumps({
        "seconds": seconds, "peak_gib": peak_rss_gib(),
        "loaded_gib": rss_loaded, "removed": res.n_removed, "clusters": stats.n_clusters,
        "largest": stats.largest_cluster, "edges": stats.candidate_edges, "phases": stats.seconds,
    }))


def bench_sizes(sizes: list[int], probes: list[int], target: int, exact_max: int,
                topic_weight: float = 0.8) -> list[dict]:
    from guardray.dedup import metrics
    from guardray.dedup.greedy import per_batch_greedy
    from guardray.dedup.synthetic import planted_near_duplicates

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        for n in sizes:
            emb = planted_near_duplicates(n, 384, seed=n, topic_weight=topic_weight)
            path = os.path.join(tmp, f"emb-{n}.npy")
            np.save(path, emb)
            pairs = None
            exact_s = None
            if n <= exact_max:
                t0 = time.perf_counter()
                pairs = metrics.exact_pairs(emb, THRESHOLD)
                exact_s = time.perf_counter() - t0
            base = per_batch_greedy(emb, THRESHOLD, 1024)
            for p in probes:
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", path, "--probes", str(p),
                     "--target", str(target)], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                keep = np.load(path + ".keep.npy")
                if pairs is not None:
                    recall = f"{metrics.pair_recall(pairs[0], pairs[1], keep):.4f}"
                    base_recall = f"{metrics.pair_recall(pairs[0], pairs[1], base.keep):.4f}"
                    n_pairs = len(pairs[0])
                else:
                    rec, n_pairs = metrics.sampled_pair_recall(emb, keep, THRESHOLD)
                    brec, _ = metrics.sampled_pair_recall(emb, base.keep, THRESHOLD)
                    recall, base_recall = f"~{rec:.4f}", f"~{brec:.4f}"
                data = "uniform" if topic_weight == 0 else "topics"
                row = {"n": n, "data": data, "probes": p, **r, "recall": recall,
                       "per_batch_recall": base_recall,
                       "pairs": n_pairs, "exact_s": exact_s}
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
            del emb
    return rows


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` varied prompt-like sentences from templates (10-20 tokens each)."""
    rng = np.random.default_rng(seed)
    who = ["my accountant", "a friend", "the bank", "my employer", "our landlord", "the IRS",
           "a stranger online", "my manager", "the insurance company", "a customer"]
    what = ["asked me to transfer money", "wants my password", "says I owe back taxes",
            "offered a guaranteed return", "sent me a strange link", "needs my social security number",
            "told me to buy this stock", "refused to give a receipt", "changed the contract",
            "suggested hiding income"]
    ask = ["What should I do?", "Is this legal?", "How do I respond?", "Can I trust them?",
           "What are the risks?", "Should I report it?", "How do I protect myself?",
           "Is this a scam?", "What does the law say?", "Who can help me?"]
    return [f"{who[a]} {what[b]} last {d} days ago. {ask[c]}" for a, b, c, d in
            rng.integers(0, 10, (n, 4)) * [1, 1, 1, 7]]


def bench_embedding(n: int, batch_size: int, pools: list[int]) -> list[dict]:
    import ray

    from guardray import schema
    from guardray.dedup.config import EmbedderConfig
    from guardray.dedup.embed import Embedder, embed_dataset

    texts = sentences(n)
    rows = []
    cores = os.cpu_count() or 2
    for threads in sorted({1, cores}):
        t0 = time.perf_counter()
        model = Embedder("embedded:all-minilm-l6-v2", batch_size=batch_size, num_threads=threads)
        load = time.perf_counter() - t0
        model.encode(texts[:batch_size])  # warm-up
        t0 = time.perf_counter()
        model.encode(texts)
        s = time.perf_counter() - t0
        rows.append({"how": f"one process, torch threads={threads}", "sentences": n,
                     "seconds": s, "per_s": n / s, "note": f"model load {load:.1f} s excluded"})
        del model
    # twice the cores as logical CPUs (as the tests do): actors that hold every CPU would leave
    # nothing for Ray Data's own tasks
    ray.init(num_cpus=2 * cores, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        for k in pools:
            ds = ray.data.from_items([{schema.TEXT: t, "i": i} for i, t in enumerate(texts)],
                                     override_num_blocks=max(4, 2 * k))
            cfg = EmbedderConfig(batch_size=batch_size, concurrency=k,
                                 num_cpus_per_actor=max(1, cores // k))
            t0 = time.perf_counter()
            count, first_rows, t_first = 0, 0, None
            for b in embed_dataset(ds, cfg, ["i"]).iter_batches(batch_format="numpy",
                                                                batch_size=None):
                count += len(b["i"])
                if t_first is None:
                    t_first, first_rows = time.perf_counter(), len(b["i"])
            t_end = time.perf_counter()
            s = t_end - t0
            assert count == n
            steady = (n - first_rows) / (t_end - t_first) if t_end > t_first else float("nan")
            rows.append({"how": f"Ray Data, {k} actor(s) x {cfg.num_cpus_per_actor:g} CPU",
                         "sentences": n, "seconds": s, "per_s": n / s,
                         "note": f"actor start + model load included; {steady:.0f}/s after "
                                 "the first batch"})
    finally:
        ray.shutdown()
    return rows


def print_tables(dedup_rows: list[dict], embed_rows: list[dict]) -> None:
    print("\n" + _bench.machine(platform=platform.platform()))
    if dedup_rows:
        print("\n| rows | data | probes | clusters | time (s) | partition / pairwise / resolve (s) | "
              "peak RSS (GiB) | embeddings (GiB) | removed | recall | per-batch recall | "
              "exact all-pairs (s) |")
        print("|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in dedup_rows:
            ph = r["phases"]
            print(f"| {r['n']:,} | {r['data']} | {r['probes']} | {r['clusters']:,} | {r['seconds']:.1f} | "
                  f"{ph.get('partition', 0):.1f} / {ph.get('pairwise', 0):.1f} / "
                  f"{ph.get('resolve', 0):.1f} | {r['peak_gib']:.2f} | "
                  f"{r['n'] * 384 * 4 / 2**30:.2f} | {r['removed']:,} | {r['recall']} | "
                  f"{r['per_batch_recall']} | "
                  f"{'-' if r['exact_s'] is None else format(r['exact_s'], '.1f')} |")
    if embed_rows:
        print("\n| embedding (all-MiniLM-L6-v2) | sentences | seconds | sentences/s | note |")
        print("|---|---:|---:|---:|---|")
        for r in embed_rows:
            print(f"| {r['how']} | {r['sentences']} | {r['seconds']:.1f} | {r['per_s']:.0f} | {r['note']} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--probes", type=int, nargs="*", default=[3])
    p.add_argument("--target", type=int, default=1000, help="target cluster size")
    p.add_argument("--exact-max", type=int, default=100_000,
                   help="largest size measured against exact all-pairs")
    p.add_argument("--uniform-sizes", type=int, nargs="*", default=[100_000],
                   help="stress sizes without topic structure (uniform on the sphere)")
    p.add_argument("--no-embed", action="store_true")
    p.add_argument("--embed-n", type=int, default=2000)
    p.add_argument("--embed-batch", type=int, default=64)
    p.add_argument("--pools", type=int, nargs="*", default=[1, 2])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.probes[0], args.target)
        return
    dedup_rows = bench_sizes(args.sizes, args.probes, args.target, args.exact_max)
    dedup_rows += bench_sizes(args.uniform_sizes, args.probes, args.target, 0, topic_weight=0.0)
    embed_rows = [] if args.no_embed else bench_embedding(args.embed_n, args.embed_batch, args.pools)
    print_tables(dedup_rows, embed_rows)


if __name__ == "__main__":
    main()
