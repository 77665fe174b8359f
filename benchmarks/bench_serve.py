"""Latency of the served guard (Ray Serve, HTTP) against the SmolLM2 LLM judge, same prompts.

    python benchmarks/bench_serve.py [--requests 64] [--judge-prompts 16]

- Guard: all-MiniLM-L6-v2 (embedded) as a 2-label classifier with a guardray card, served by
  `guardray.serve` on a local Ray instance; each request is one prompt under one policy over
  real HTTP (`guardray.client`). Settings (`SETTINGS`, each deployed alone): float32 or
  dynamic int8 (`model.quantize`), dynamic batching on (max 16 pairs, 5 or 0 ms wait) or off
  (max_batch_size 1); each at concurrency 1 and 8 (client threads).
- Judge: the embedded SmolLM2-135M-Instruct with the paper's Safe/Unsafe template
  (`guardray.evaluate.judges.build_messages` / `parse_answer`,
  configs/judges/smollm2-safe-unsafe.yaml: greedy, 8 new tokens), called in-process (no Ray,
  no HTTP: the judge's best case); concurrency 1 = one prompt per generate call, concurrency
  8 = 8 prompts per call (each request's latency is its call's).

Prompts: configs/data/ordinary/requests.jsonl and configs/data/attacks/injection.jsonl.
Prints one table; timings are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _bench import machine, setup

REPO = setup()


def prompts(n: int) -> list[str]:
    out = []
    for rel in ("configs/data/ordinary/requests.jsonl", "configs/data/attacks/injection.jsonl"):
        for line in (REPO / rel).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out.append(row.get("text") or row.get("prompt"))
    mixed = [p for pair in zip(out[: len(out) // 2], out[len(out) // 2:]) for p in pair]
    return (mixed * (n // max(1, len(mixed)) + 1))[:n]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def run_load(fn, items: list, concurrency: int) -> tuple[list[float], float]:
    """Latency (ms) of fn(item) for every item with ``concurrency`` threads; wall seconds."""
    lat: list[float] = []
    lock = threading.Lock()
    it = iter(items)

    def worker():
        while True:
            with lock:
                item = next(it, None)
            if item is None:
                return
            t0 = time.perf_counter()
            fn(item)
            with lock:
                lat.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0


def make_guard(folder: Path) -> Path:
    from guardray.modeling.checkpoint import load_classifier, save_checkpoint
    from guardray.modeling.offline import embedded_embedding_model_path

    model, tok = load_classifier(str(embedded_embedding_model_path()))
    card = {"kind": "guardray-classifier", "input_format": "text", "policy_ids": ["injection"],
            "group": "minilm-injection", "threshold": {"threshold": 0.5, "rule": "fixed"}}
    return Path(save_checkpoint(model, tok, str(folder / "guard"), card))


SETTINGS = {  # name -> (max_batch_size, batch_wait_timeout_s, quantize)
    "fp32-batch16-wait5ms": (16, 0.005, "none"),
    "fp32-nobatch": (1, 0.0, "none"),
    "int8-batch16-wait5ms": (16, 0.005, "int8"),
    "int8-batch16-wait0": (16, 0.0, "int8"),
    "int8-nobatch": (1, 0.0, "int8"),
}


def bench_guard(model: Path, texts: list[str], rows: list, settings: list[str]) -> None:
    """Each setting deployed alone (1 replica, 1 CPU), warmed up, then loaded at 1 and 8."""
    from ray import serve

    from guardray.cli.ray_init import init_ray
    from guardray.client import GuardClient
    from guardray.config import RayConfig
    from guardray.serve import config_from_args
    from guardray.serve.run import start_serving, stop_serving

    init_ray(RayConfig(num_cpus=2))
    for name in settings:
        size, wait, quantize = SETTINGS[name]
        cfg = config_from_args({"model": {"path": str(model), "policies": [],
                                          "quantize": quantize},
                                "app_name": "bench", "route_prefix": "/bench",
                                "deployment": {"num_cpus": 1},
                                "batching": {"max_batch_size": size,
                                             "batch_wait_timeout_s": wait}})
        client = GuardClient(start_serving(cfg))
        for t in texts[:8]:  # warm-up
            client.classify(t)
        for conc in (1, 8):
            lat, wall = run_load(lambda t: client.classify(t, policies=["injection"]), texts,
                                 conc)
            stats = client.stats()
            rows.append((f"guard ({name})", conc, len(lat), statistics.median(lat),
                         pct(lat, 99), len(lat) / wall, stats["max_batch_size_seen"]))
        stop_serving(cfg)
    serve.shutdown()


def bench_judge(texts: list[str], rows: list) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from guardray.evaluate.judges import build_messages, parse_answer
    from guardray.modeling.offline import embedded_llm_path
    from guardray.policies import load_policy

    torch.set_num_threads(2)
    policy = load_policy(REPO / "configs/policies/injection.yaml")
    path = str(embedded_llm_path())
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).eval()

    def judge(batch: list[str]) -> list:
        chats = [tok.apply_chat_template(build_messages("safe_unsafe", policy, t),
                                         tokenize=False, add_generation_prompt=True)
                 for t in batch]
        enc = tok(chats, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=8, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        answers = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [parse_answer("safe_unsafe", a) for a in answers]

    judge(texts[:1])  # warm-up
    for conc in (1, 8):
        lat, wall = run_load(judge, [texts[i:i + conc] for i in range(0, len(texts), conc)], 1)
        per_request = [x for x in lat for _ in range(conc)]  # each prompt waits for its call
        rows.append(("SmolLM2-135M judge", conc, len(texts), statistics.median(per_request),
                     pct(per_request, 99), len(texts) / wall, conc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=64, help="guard requests per setting")
    ap.add_argument("--judge-prompts", type=int, default=16, help="prompts for the judge")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated guard settings among: {list(SETTINGS)}")
    args = ap.parse_args()
    texts = prompts(max(args.requests, args.judge_prompts))
    rows: list = []
    with tempfile.TemporaryDirectory(prefix="gr-bench-serve-") as tmp:
        model = make_guard(Path(tmp))
        bench_guard(model, texts[: args.requests], rows,
                    [n.strip() for n in args.settings.split(",") if n.strip()])
    bench_judge(texts[: args.judge_prompts], rows)
    judge_p50 = {r[1]: r[3] for r in rows if r[0].startswith("SmolLM2")}
    print(machine())
    print("| system | concurrency | requests | p50 ms | p99 ms | req/s | largest batch | "
          "judge p50 / p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, conc, n, p50, p99, rps, batch in rows:
        ratio = judge_p50.get(conc, float("nan")) / p50
        print(f"| {name} | {conc} | {n} | {p50:.1f} | {p99:.1f} | {rps:.1f} | {batch} | "
              f"{ratio:.0f}x |")


if __name__ == "__main__":
    main()
