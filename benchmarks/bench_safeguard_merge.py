"""Time guardray's merge library on the safeguard merge sweep against MergeKit, same candidates.

The sweep (safeguard-merging appendix D.2): for each weight w of the grid, linear merging of the
base with a fine-tune (eq. 3: base weight 1 - w, fine-tune weight w), SLERP (t = w, t = 0 is the
base) and DARE then eq. 3 (``dare_linear``: weight w, drop rate p = 0.3, i.e. MergeKit's
``density: 0.7``); plus Model Stock over all fine-tunes (no hyperparameter; needs 2 or more).
Each candidate is one MergeKit-schema YAML file, run by guardray in this process
(`guardray.merge.executor.run_merge`) and by MergeKit as ``mergekit-yaml CONFIG OUT
--copy-tokenizer`` (a subprocess, so its time includes its start-up, reported on its own too).
Then every tensor of the two outputs is compared (max |guardray - MergeKit|; for DARE, whose
random masks differ, the L2 norm of the task vector merged - base, guardray / MergeKit).
Table: seconds per merge (median of ``--repeats``), ratio = MergeKit s / guardray s.

Inputs: ``--base`` and ``--finetuned`` folders (safetensors, same architecture), or by default
the embedded SmolLM2-135M-Instruct and 2 synthetic fine-tunes: base + scale * (B0 A0 + Bk Ak)
on every attention/MLP linear weight, rank-8 products like merged LoRA adapters, B0 A0 shared
by the fine-tunes (the task) and Bk Ak seeded per fine-tune (as runs with different seeds).

MergeKit is not a guardray dependency; install it in a throwaway venv:
    python3 -m venv /tmp/mk-venv && /tmp/mk-venv/bin/pip install torch==2.13.0 mergekit
    python benchmarks/bench_safeguard_merge.py --mergekit-bin /tmp/mk-venv/bin/mergekit-yaml
        [--base DIR --finetuned DIR ...] [--weights 0.25 0.5 0.75]
        [--methods linear slerp dare_linear model_stock] [--repeats 2] [--workdir DIR]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench
import yaml

_bench.setup()

BASE = "embedded:smollm2-135m-instruct"
METHODS = ("linear", "slerp", "dare_linear", "model_stock")
DARE_DENSITY = 0.7  # drop rate p = 0.3
EXACT = ("linear", "slerp", "model_stock")  # same arithmetic in both tools; DARE is random


def make_finetunes(base: Path, root: Path, n: int, rank: int = 8, rel: float = 0.05) -> list[Path]:
    """``n`` synthetic fine-tunes of ``base`` (see the module docstring), written once."""
    import torch
    from transformers import AutoModelForCausalLM

    outs = [root / f"ft{k}" for k in range(n)]
    if all((o / "config.json").is_file() for o in outs):
        return outs
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    linears = [(name, m) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layers." in f".{name}"]
    original = {name: m.weight.detach().clone() for name, m in linears}

    def low_rank(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b = torch.randn(w.shape[0], rank, generator=g)
        a = torch.randn(rank, w.shape[1], generator=g)
        return (b @ a) * (rel * float(w.std()) / rank**0.5)  # entries ~ rel * std(W)

    shared = torch.Generator().manual_seed(1234)
    task = {name: low_rank(w, shared) for name, w in original.items()}
    for k, out in enumerate(outs):
        g = torch.Generator().manual_seed(1000 + k)
        with torch.no_grad():
            for name, m in linears:
                m.weight.copy_(original[name] + task[name] + low_rank(original[name], g))
        model.save_pretrained(out)  # safetensors (the only format of transformers 5)
        for f in base.iterdir():  # tokenizer files and the like
            if f.is_file() and not (out / f.name).exists():
                shutil.copy2(f, out / f.name)
    return outs


def candidates(base: Path, fts: list[Path], weights: list[float], methods: list[str]):
    """``(method, weight label, MergeKit-schema config dict)`` for every candidate."""
    b, ft = str(base), str(fts[0])
    for w in weights:
        if "linear" in methods:
            yield "linear", w, {"merge_method": "linear", "models": [
                {"model": b, "parameters": {"weight": 1 - w}},
                {"model": ft, "parameters": {"weight": w}}]}
        if "slerp" in methods:
            yield "slerp", w, {"merge_method": "slerp", "base_model": b,
                               "models": [{"model": b}, {"model": ft}], "parameters": {"t": w}}
        if "dare_linear" in methods:
            yield "dare_linear", w, {"merge_method": "dare_linear", "base_model": b, "models": [
                {"model": ft, "parameters": {"weight": w, "density": DARE_DENSITY}}]}
    if "model_stock" in methods and len(fts) >= 2:
        yield "model_stock", "-", {"merge_method": "model_stock", "base_model": b,
                                   "models": [{"model": str(f)} for f in fts]}


def tensors(folder: Path) -> dict[str, tuple[Path, str]]:
    """Tensor name -> (safetensors file, name) over every shard of ``folder``."""
    from safetensors import safe_open

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            out.update({k: (f, k) for k in h.keys()})
    return out


def read(where: tuple[Path, str]):
    from safetensors import safe_open

    with safe_open(str(where[0]), "pt") as h:
        return h.get_tensor(where[1]).double()


def compare(a: Path, b: Path, base: Path) -> dict:
    """Max |a - b| over common tensors, task-vector L2 norms of a and b, names in one only."""
    ta, tb, t0 = tensors(a), tensors(b), tensors(base)
    worst, sq_a, sq_b = 0.0, 0.0, 0.0
    for name in sorted(set(ta) & set(tb)):
        x, y = read(ta[name]), read(tb[name])
        if x.numel():
            worst = max(worst, float((x - y).abs().max()))
        if name in t0:
            z = read(t0[name])
            sq_a += float(((x - z) ** 2).sum())
            sq_b += float(((y - z) ** 2).sum())
    return {"max_abs_diff": worst, "norm_guardray": sq_a**0.5, "norm_mergekit": sq_b**0.5,
            "only_one": sorted(set(ta) ^ set(tb))}


def mergekit_probe(binary: str | None) -> tuple[list[str] | None, float, str]:
    """(extra CLI flags, start-up seconds of ``--help``, why not usable); flags None if not."""
    if not binary or not Path(binary).is_file():
        return None, 0.0, "not installed"
    start = time.perf_counter()
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return None, 0.0, f"--help failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    flags = ["--copy-tokenizer"] + [f for f in ("--lazy-unpickle", "--quiet") if f in proc.stdout]
    flags += ["--random-seed", "0"] if "--random-seed" in proc.stdout else []
    return flags, seconds, ""


def run_guardray(config: Path, out: Path) -> float:
    from guardray.merge.config import load_merge_config
    from guardray.merge.executor import run_merge

    start = time.perf_counter()
    run_merge(load_merge_config(config), out, overwrite=True, progress=False)
    return time.perf_counter() - start


def run_mergekit(binary: str, flags: list[str], config: Path, out: Path, log: Path):
    """Seconds, or the last line of MergeKit's output as the reason it failed."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call([binary, str(config), str(out), *flags], stdout=f,
                               stderr=subprocess.STDOUT, env=dict(os.environ, **_bench.OFFLINE_ENV))
    seconds = time.perf_counter() - start
    if code != 0:
        return None, f"exit {code}: {(log.read_text().strip().splitlines() or ['?'])[-1][:100]}"
    return seconds, ""


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=BASE, help="base model folder (default: embedded SmolLM2)")
    p.add_argument("--finetuned", nargs="+", default=None, help="fine-tuned folders")
    p.add_argument("--n-synthetic", type=int, default=2, help="synthetic fine-tunes if none")
    p.add_argument("--weights", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--mergekit-bin", default="/tmp/mk-venv/bin/mergekit-yaml")
    p.add_argument("--repeats", type=int, default=1, help="runs per tool and candidate (median)")
    p.add_argument("--workdir", default=None, help="inputs, configs, outputs (default: temp)")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)

    from guardray.merge import executor  # noqa: F401  (torch import outside the timings)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gr-bench-sg-merge-"))
    try:
        return sweep(args, work)
    finally:
        if not args.workdir:  # ~1 GB per candidate: a temporary folder does not stay
            shutil.rmtree(work, ignore_errors=True)


def sweep(args: argparse.Namespace, work: Path) -> list[dict]:
    from guardray.modeling.offline import resolve_model

    base = Path(resolve_model(args.base))
    fts = [Path(f) for f in args.finetuned] if args.finetuned else make_finetunes(
        base, work / "inputs", args.n_synthetic)
    flags, startup, why = mergekit_probe(args.mergekit_bin)
    for f in [base, *fts]:  # page cache warm for both tools
        for shard in f.glob("*.safetensors"):
            with open(shard, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    rows = []
    for i, (method, w, cfg) in enumerate(candidates(base, fts, args.weights, args.methods)):
        name = f"{method}-w{w}" if w != "-" else method
        config = work / "configs" / f"{name}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump({**cfg, "dtype": "float32"}, sort_keys=False))
        g_out, m_out = work / "out" / "guardray" / name, work / "out" / "mergekit" / name
        m_out.parent.mkdir(parents=True, exist_ok=True)
        g_times, m_times, failed = [], [], why
        for r in range(args.repeats):  # the tools alternate which one goes first
            for tool in ("guardray", "mergekit")[:: 1 if (i + r) % 2 == 0 else -1]:
                if tool == "guardray":
                    g_times.append(run_guardray(config, g_out))
                elif flags is not None and not failed:
                    s, failed = run_mergekit(args.mergekit_bin, flags, config, m_out,
                                             m_out.parent / f"{name}.log")
                    m_times += [s] if s is not None else []
        row = {"method": method, "weight": w, "config": str(config),
               "guardray_s": statistics.median(g_times), "guardray_out": str(g_out),
               "mergekit_s": statistics.median(m_times) if m_times else None,
               "mergekit": failed or "ok"}
        if m_times:
            row.update(compare(g_out, m_out, base))
        rows.append(row)
        mk = f"{row['mergekit_s']:.1f} s" if m_times else failed
        print(f"  {name}: guardray {row['guardray_s']:.1f} s, MergeKit {mk}", file=sys.stderr,
              flush=True)

    print(f"\n{_bench.machine()}; base {base}; fine-tunes {len(fts)}; repeats {args.repeats}; "
          f"MergeKit {args.mergekit_bin} {' '.join(flags or [])}\n")
    print("| method | weight | guardray s | MergeKit s | ratio | max \\|diff\\| |")
    print("|---|---|---:|---:|---:|---|")
    for row in rows:
        mk = row["mergekit_s"]
        if mk is None:
            cells = [row["mergekit"], "-", "-"]
        else:
            if row["method"] in EXACT:
                diff = f"{row['max_abs_diff']:.3g}"
            else:
                rel = row["norm_guardray"] / row["norm_mergekit"] if row["norm_mergekit"] else 0
                diff = f"random masks differ; task-vector L2 norm ratio {rel:.4f}"
            if row["only_one"]:
                diff += f"; in one output only: {', '.join(row['only_one'])}"
            cells = [f"{mk:.1f}", f"{mk / row['guardray_s']:.2f}x", diff]
        print(f"| {row['method']} | {row['weight']} | {row['guardray_s']:.1f} | "
              + " | ".join(cells) + " |")
    g_total = sum(r["guardray_s"] for r in rows)
    mk_rows = [r for r in rows if r["mergekit_s"] is not None]
    if mk_rows and len(mk_rows) == len(rows):
        m_total = sum(r["mergekit_s"] for r in rows)
        print(f"| **total** | | **{g_total:.1f}** | **{m_total:.1f}** | "
              f"**{m_total / g_total:.2f}x** | |")
        print(f"\nMergeKit start-up (`--help`): {startup:.1f} s per run, included above; "
              f"without it MergeKit's total is {m_total - startup * len(rows):.1f} s "
              f"({(m_total - startup * len(rows)) / g_total:.2f}x guardray's).")
    else:
        print(f"| **total** | | **{g_total:.1f}** | {why or 'some failed'} | | |")
    print("\nDocumented deviations (guardray/merge/methods.py): DARE masks come from a seeded "
          "generator per (seed, tensor, model) in guardray, from torch's global RNG in MergeKit, "
          "and guardray rescales kept entries by 1/(1-p) (eq. 5) where MergeKit 0.1.5 matches "
          "the L1 norm; Model Stock clamps the mean cosine to [0, 1] in guardray (MergeKit "
          "extrapolates when task vectors oppose, cos < 0). SLERP: MergeKit computes the angle "
          "in float32, guardray in float64 (~1e-5 apart on near-collinear tensors).")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": rows, "mergekit_startup_s": startup, "workdir": str(work)}, indent=2))
    return rows


if __name__ == "__main__":
    main()
