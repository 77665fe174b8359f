"""Benchmark of SDG generation: the local (transformers) backend, direct vs on Ray Data.

For each batch size it generates completions for the same SDG requests (the real generation
prompts of the shipped policies, `guardray.generate.expand`) twice:

- direct: one `guardray.llm.hf.HFChatGenerator` in this process, batches in a loop;
- Ray Data: `guardray.llm.generate_dataset` (one actor, same threads, same batch size).

Both include loading the model (the actor loads its own copy); Ray's own start-up
(``ray.init``) is reported separately. Outputs are checked to be identical (per-row seeds),
so both sides do exactly the same work. Optionally (``--http``) the same requests go through
the ``openai_http`` backend to `guardray.llm.openai_server` on 127.0.0.1.

Usage:
    python benchmarks/bench_generate.py [--requests 24] [--max-tokens 32] [--batch-sizes 1 8]
        [--threads 1] [--http] [--json out.json]

Prints a Markdown table (samples/s, completion tokens/s, Ray Data overhead vs direct).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _bench

_bench.setup()

MODEL = "embedded:smollm2-135m-instruct"


def sdg_requests(n: int) -> list[dict]:
    """``n`` real SDG generation requests (messages + per-row seed) over the shipped policies."""
    from guardray.generate.config import ExpandConfig
    from guardray.generate.expand import MESSAGES, SEED, expand_requests
    from guardray.generate.templates import load_templates
    from guardray.policies import load_policies

    policies = load_policies([Path(__file__).resolve().parent.parent / "configs" / "policies"])
    per = -(-n // (2 * len(policies)))
    rows = expand_requests(policies, ExpandConfig(unsafe_per_policy=per, safe_per_policy=per),
                           load_templates(), seed=0)
    # interleave policies/labels so every batch mixes prompt lengths, as in a real run
    rows = sorted(rows, key=lambda r: (int(r["request_id"][-5:]), r["request_id"]))[:n]
    return [{"key": i, "messages": r[MESSAGES], "seed": r[SEED]} for i, r in enumerate(rows)]


def run_direct(rows, batch_size, max_tokens, threads):
    from guardray.llm.hf import HFChatGenerator, RowSampling

    started = time.perf_counter()
    gen = HFChatGenerator(MODEL, num_threads=threads)
    loaded = time.perf_counter()
    texts, tokens = [], 0
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        out = gen.generate([r["messages"] for r in chunk], [
            RowSampling(max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=r["seed"])
            for r in chunk])
        texts += [g.text for g in out]
        tokens += sum(g.completion_tokens for g in out)
    done = time.perf_counter()
    return {"total_s": done - started, "load_s": loaded - started, "texts": texts, "tokens": tokens}


def llm_cfg(backend, batch_size, max_tokens, threads, url=None, concurrency=1):
    from guardray.llm import LLMConfig

    data = {"backend": backend, "model": MODEL, "batch_size": batch_size,
            "concurrency": concurrency,
            "sampling": {"max_tokens": max_tokens, "temperature": 0.7, "top_p": 0.95},
            "transformers": {"num_cpus": 1, "num_threads": threads}}
    if url:
        data["http"] = {"url": url, "max_retries": 2}
    return LLMConfig.model_validate(data)


def run_ray(rows, cfg):
    import ray

    from guardray.llm import generate_dataset

    started = time.perf_counter()
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // cfg.batch_size))
    out = generate_dataset(ds, cfg, seed_column="seed", tokens_column="n").take_all()
    done = time.perf_counter()
    out.sort(key=lambda r: r["key"])
    return {"total_s": done - started, "texts": [r["generated_text"] for r in out],
            "tokens": sum(int(r["n"]) for r in out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=24)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=1, help="torch threads (direct and actor)")
    p.add_argument("--http", action="store_true", help="also run the openai_http backend")
    p.add_argument("--http-concurrency", type=int, nargs="+", default=[1, 4],
                   help="HTTP workers to try (batch = the largest --batch-sizes)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    import ray
    import torch

    from guardray.modeling.offline import resolve_model

    resolve_model(MODEL)  # convert once, outside every timing
    rows = sdg_requests(args.requests)
    t0 = time.perf_counter()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_init_s = time.perf_counter() - t0
    results = []
    for bs in args.batch_sizes:
        direct = run_direct(rows, bs, args.max_tokens, args.threads)
        on_ray = run_ray(rows, llm_cfg("transformers", bs, args.max_tokens, args.threads))
        same = direct["texts"] == on_ray["texts"]
        results.append({"backend": "transformers", "batch_size": bs, "direct": direct,
                        "ray": on_ray, "identical_outputs": same})
        print(f"batch {bs}: direct {direct['total_s']:.1f} s, ray {on_ray['total_s']:.1f} s, "
              f"identical outputs: {same}", flush=True)
    if args.http:
        from guardray.llm.hf import HFChatGenerator
        from guardray.llm.openai_server import OpenAICompatServer

        server_gen = HFChatGenerator(MODEL, num_threads=args.threads)
        bs = max(args.batch_sizes)
        with OpenAICompatServer(server_gen, MODEL, max_batch_size=bs) as srv:
            for workers in args.http_concurrency:
                res = run_ray(rows, llm_cfg("openai_http", bs, args.max_tokens, args.threads,
                                            srv.chat_url, concurrency=workers))
                same = res["texts"] == results[0]["direct"]["texts"]
                results.append({"backend": "openai_http", "batch_size": bs, "ray": res,
                                "workers": workers, "identical_outputs": same})
                print(f"http {workers} worker(s): {res['total_s']:.1f} s, identical outputs: "
                      f"{same}", flush=True)

    lines = [
        _bench.machine(torch=torch.__version__, ray=ray.__version__)
        + f"; {args.requests} SDG requests, max_tokens {args.max_tokens}, "
        f"{args.threads} torch thread(s); ray.init {ray_init_s:.1f} s (not counted)",
        "",
        "| backend | batch | path | wall s | model load s | samples/s | tokens/s "
        "| Ray Data overhead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = args.requests
        if "direct" in r:
            d = r["direct"]
            lines.append(f"| transformers | {r['batch_size']} | direct (1 process) | "
                         f"{d['total_s']:.1f} | {d['load_s']:.1f} | {n / d['total_s']:.2f} | "
                         f"{d['tokens'] / d['total_s']:.1f} | - |")
            overhead = (r["ray"]["total_s"] - d["total_s"]) / d["total_s"]
            extra = f"{100 * overhead:+.1f}%"
            if not r["identical_outputs"]:
                extra += " (outputs differ!)"
        else:
            extra = "-" if r["identical_outputs"] else "- (outputs differ!)"
        x = r["ray"]
        path = ("Ray Data actor" if r["backend"] == "transformers" else
                f"Ray Data, {r['workers']} HTTP worker(s) -> server")
        lines.append(f"| {r['backend']} | {r['batch_size']} | {path} | {x['total_s']:.1f} | "
                     f"{'incl.' if r['backend'] == 'transformers' else '-'} | "
                     f"{n / x['total_s']:.2f} | {x['tokens'] / x['total_s']:.1f} | {extra} |")
    print("\n".join(lines))
    if args.json:
        for r in results:
            for side in ("direct", "ray"):
                if side in r:
                    r[side].pop("texts", None)
        Path(args.json).write_text(json.dumps({"ray_init_s": ray_init_s, "results": results},
                                              indent=2))
    ray.shutdown()


if __name__ == "__main__":
    main()
