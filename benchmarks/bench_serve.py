"""Latency of the served guard (Ray Serve, HTTP) against the SmolLM2 LLM judge, same prompts.

    python benchmarks/bench_serve.py [--requests 64] [--judge-prompts 16] [--rounds 1]

- Guard: all-MiniLM-L6-v2 (embedded) as a 2-label classifier with a guardray card, served by
  `guardray.serve` on a local Ray instance; each request is one prompt under one policy over
  real HTTP (`guardray.client`). Settings (`SETTINGS`, each deployed alone): float32 or
  dynamic int8 (`model.quantize`), TorchScript (`model.torchscript`, on unless "eager"),
  dynamic batching on (max 16 pairs, 5 or 0 ms wait) or off (max_batch_size 1), 1 or 2 torch
  threads in the 1-CPU replica; each at concurrency 1 and 8 (client threads, one kept-alive
  connection each).
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


def _setting(batch: int, wait: float, quantize: str = "none", torchscript: bool = True,
             threads: int = 1) -> dict:
    return {"max_batch_size": batch, "batch_wait_timeout_s": wait, "quantize": quantize,
            "torchscript": torchscript, "torch_threads": threads}


SETTINGS = {  # name -> serve settings (1 replica, 1 CPU)
    "fp32-eager-batch16-wait5ms": _setting(16, 0.005, torchscript=False),
    "fp32-batch16-wait5ms": _setting(16, 0.005),
    "fp32-nobatch": _setting(1, 0.0),
    "int8-eager-batch16-wait5ms": _setting(16, 0.005, "int8", torchscript=False),
    "int8-batch16-wait5ms": _setting(16, 0.005, "int8"),
    "int8-batch16-wait5ms-2threads": _setting(16, 0.005, "int8", threads=2),
    "int8-batch16-wait0": _setting(16, 0.0, "int8"),
    "int8-nobatch": _setting(1, 0.0, "int8"),
}


def bench_guard(model: Path, texts: list[str], lat: dict, settings: list[str]) -> None:
    """Each setting deployed alone (1 replica, 1 CPU), warmed up, then loaded at 1 and 8;
    latencies and wall times appended to ``lat[(name, concurrency)]``."""
    from ray import serve

    from guardray.cli.ray_init import init_ray
    from guardray.client import GuardClient
    from guardray.config import RayConfig
    from guardray.serve import config_from_args
    from guardray.serve.run import start_serving, stop_serving

    init_ray(RayConfig(num_cpus=2))
    for name in settings:
        st = SETTINGS[name]
        cfg = config_from_args({"model": {"path": str(model), "policies": [],
                                          "quantize": st["quantize"],
                                          "torchscript": st["torchscript"],
                                          "torch_threads": st["torch_threads"]},
                                "app_name": "bench", "route_prefix": "/bench",
                                "deployment": {"num_cpus": 1},
                                "batching": {k: st[k] for k in ("max_batch_size",
                                                                "batch_wait_timeout_s")}})
        client = GuardClient(start_serving(cfg))
        for t in texts[:8]:  # warm-up
            client.classify(t)
        for conc in (1, 8):
            ms, wall = run_load(lambda t: client.classify(t, policies=["injection"]), texts,
                                conc)
            entry = lat.setdefault((f"guard ({name})", conc), [[], 0.0, 0])
            entry[0].extend(ms)
            entry[1] += wall
            entry[2] = max(entry[2], client.stats()["max_batch_size_seen"])
        stop_serving(cfg)
    serve.shutdown()


def bench_judge(texts: list[str], lat: dict, rounds: int) -> None:
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
    for _ in range(rounds):
        for conc in (1, 8):
            ms, wall = run_load(judge, [texts[i:i + conc] for i in range(0, len(texts), conc)],
                                1)
            entry = lat.setdefault(("SmolLM2-135M judge", conc), [[], 0.0, conc])
            entry[0].extend(x for x in ms for _ in range(conc))  # each prompt waits its call
            entry[1] += wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=64, help="guard requests per setting")
    ap.add_argument("--judge-prompts", type=int, default=16, help="prompts for the judge")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every setting and the judge this many times, one round after "
                         "the other, and pool the latencies (evens out drifts of the machine)")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated guard settings among: {list(SETTINGS)}")
    args = ap.parse_args()
    texts = prompts(max(args.requests, args.judge_prompts))
    lat: dict = {}
    with tempfile.TemporaryDirectory(prefix="gr-bench-serve-") as tmp:
        model = make_guard(Path(tmp))
        for _ in range(args.rounds):
            bench_guard(model, texts[: args.requests], lat,
                        [n.strip() for n in args.settings.split(",") if n.strip()])
    bench_judge(texts[: args.judge_prompts], lat, args.rounds)
    rows = [(name, conc, len(ms), statistics.median(ms), pct(ms, 99), len(ms) / wall, batch)
            for (name, conc), (ms, wall, batch) in lat.items()]
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
