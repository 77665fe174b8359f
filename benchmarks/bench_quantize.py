"""What dynamic int8 quantization (``model.quantize: int8``) costs a trained guard, and buys.

    python benchmarks/bench_quantize.py [--main-job outputs/pipeline] [--latency-prompts 64]

For each TaskGuard the main job trained (``<main-job>/finetune/<policy>/seed0``), the rows of
its policy in the test split and in the cross-source test (``<main-job>/data``) are scored
twice in this process, float32 and int8 (`guardray.serve.guard.GuardScorer`, the scorer that
``guardray serve`` and ``guardray classify`` run; 1 torch thread, batch 32), at the
checkpoint's stored threshold. Printed per policy: rows, labels that flip, max and mean
|delta P(unsafe)|, macro-F1 under each, and the median time of one forward pass of a single
prompt (batch 1) under each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _bench import machine, setup

REPO = setup()


def rows_of(main_job: Path, policy: str):
    import pandas as pd

    data = pd.read_parquet(main_job / "data" / "part-00000.parquet")
    test = data[(data.policy_id == policy) & (data.split == "test")]
    cross = main_job / "data" / "cross_source"
    if cross.exists():
        other = pd.read_parquet(cross)
        test = pd.concat([test, other[other.policy_id == policy]], ignore_index=True)
    return test.reset_index(drop=True)


def scorer(model: Path, quantize: str, torchscript: bool = False):
    """The guard as `guardray serve` resolves it (card, threshold), at the card's max_length;
    eager by default (the figures in docs/BENCHMARKS.md "Int8 guards"; TorchScript gives the
    same scores, and bench_serve.py measures its speed)."""
    from guardray.modeling.checkpoint import read_model_card
    from guardray.serve import GuardModelConfig
    from guardray.serve.guard import GuardScorer, resolve_guard

    max_length = int(read_model_card(str(model)).get("max_length", 512))
    info = resolve_guard(GuardModelConfig(path=str(model), policies=[], quantize=quantize,
                                          device="cpu", torch_threads=1,
                                          max_length=max_length, torchscript=torchscript))
    return info, GuardScorer(info)


def score_all(s, texts: list[str], policy: str, batch: int = 32):
    import numpy as np

    out = [s.score(texts[i:i + batch], [policy] * len(texts[i:i + batch]))[0]
           for i in range(0, len(texts), batch)]
    return np.concatenate(out)


def single_ms(s, texts: list[str], policy: str) -> float:
    for t in texts[:4]:
        s.score([t], [policy])
    lat = []
    for t in texts:
        t0 = time.perf_counter()
        s.score([t], [policy])
        lat.append((time.perf_counter() - t0) * 1000)
    return statistics.median(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--main-job", default="outputs/pipeline", help="the main job's output_dir")
    ap.add_argument("--latency-prompts", type=int, default=64)
    args = ap.parse_args()
    import numpy as np
    import torch

    from guardray.metrics.binary import macro_f1

    torch.set_num_threads(1)
    main_job = Path(args.main_job)
    table = []
    for model in sorted(main_job.glob("finetune/*/seed0")):
        policy = model.parent.name
        rows = rows_of(main_job, policy)
        texts, y = rows.text.astype(str).tolist(), rows.label.to_numpy()
        result = {}
        for mode in ("none", "int8"):
            info, s = scorer(model, mode)
            p = score_all(s, texts, policy)
            result[mode] = (p, single_ms(s, texts[: args.latency_prompts], policy))
        (p32, ms32), (p8, ms8) = result["none"], result["int8"]
        thr = info.threshold
        flips = int(np.sum((p32 >= thr) != (p8 >= thr)))
        delta = np.abs(p32 - p8)
        table.append((policy, len(texts), flips, float(delta.max()), float(delta.mean()),
                      macro_f1(y, p32 >= thr), macro_f1(y, p8 >= thr), ms32, ms8))
    print(machine())
    print("| policy | rows | labels flipped | max abs dP | mean abs dP | macro-F1 fp32 | "
          "macro-F1 int8 | ms/prompt fp32 | ms/prompt int8 | speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for pol, n, flips, dmax, dmean, f32, f8, ms32, ms8 in table:
        print(f"| {pol} | {n} | {flips} | {dmax:.4f} | {dmean:.4f} | {f32:.3f} | {f8:.3f} | "
              f"{ms32:.1f} | {ms8:.1f} | {ms32 / ms8:.1f}x |")


if __name__ == "__main__":
    main()
