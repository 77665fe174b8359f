"""The safeguard job body: checks, fine-tunes, guard, sweep, evaluation, choice, report.

Order (each step's output is in ``output_dir``):

1. Checks before any training: the base's chat template, the data (a harmful-instruction file
   without its text column fails here), given fine-tunes (architecture, an adapter made for
   another base), a given guard checkpoint.
2. ``finetune/seed{S}/{adapter,merged}``: LoRA fine-tunes, one Ray Tune trial per seed
   (given LoRA adapters are merged into the base with ``guardray.merge`` instead).
3. ``judge/``: the response guard's data and checkpoint (unless ``judges.guard.model``).
4. ``recipes/<candidate>.yaml``: every merge candidate's MergeKit-style recipe.
5. For each candidate (base, fine-tunes, merges): the merge written to ``candidates/`` (then
   removed unless ``keep_candidates``), greedy responses on Ray Data to the held-out
   downstream instructions and the harmful instructions, the judges' verdicts:
   ``responses/<candidate>.parquet``. A candidate whose responses exist with the same
   fingerprint is not redone (an interrupted job resumes).
6. ``chosen/``: the model the selection rule picks, with ``chosen_recipe.yaml``.
7. ``results.json``, ``report.md``, ``tradeoff.png``, ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guardray.config import ConfigError
from guardray.errors import ModelError
from guardray.safeguard import data as D
from guardray.safeguard.sweep import Candidate, candidates

log = logging.getLogger(__name__)


def run_safeguard(cfg, connect: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the whole job; returns the result written to ``results.json``.

    Args:
        cfg: the `SafeguardConfig`.
        connect: starts or joins Ray after the checks (the job passes ``init_ray``).

    Raises:
        ConfigError / DatasetError / ModelError / ChatTemplateError: before any training.
        FileExistsError: ``output_dir`` holds another run and ``overwrite`` is false.
    """
    from guardray.io.folders import check_output_location
    from guardray.io.uris import parse_uri
    from guardray.modeling.base import resolve_base

    started = time.time()
    if parse_uri(cfg.output_dir).is_s3:
        raise ConfigError("output_dir: the safeguard job merges and serves candidates from "
                          "local folders; give a local path (a shared filesystem on a cluster)")
    out = Path(cfg.output_dir).absolute()
    cfg = cfg.model_copy(update={"output_dir": str(out)})
    _check_output(out, cfg.overwrite)
    check_output_location(out)
    base = resolve_base(cfg.base)
    _check_base(base, cfg)
    so = cfg.storage_options or None
    pairs = D.assign_split(D.load_pairs(cfg.downstream.sources, storage_options=so),
                           cfg.downstream.eval_fraction, cfg.seed)
    harmful = D.assign_split(D.load_instructions(cfg.harmful.sources, storage_options=so),
                             cfg.harmful.eval_fraction, cfg.seed)
    splits = _splits(cfg, pairs, harmful)
    given = [_open_finetune(base, ref, i) for i, ref in enumerate(cfg.finetuned)]
    labels = [label for label, _ in given]
    given = [(label if labels.count(label) == 1 else f"{label}-{i}", ref)
             for i, (label, ref) in enumerate(given)]  # candidate names must be unique
    guard_given = None
    if cfg.judges.guard.enabled:
        from guardray.policies import load_policies

        load_policies([cfg.judges.guard.policy])  # a bad policy file fails now, not after training
    if cfg.judges.guard.enabled and cfg.judges.guard.model:
        from guardray.safeguard.judge import guard_info

        guard_given = guard_info(cfg.judges.guard.model, cfg.judges.guard.policy,
                                 cfg.judges.guard.threshold)
    if connect is not None:
        connect()
    out.mkdir(parents=True, exist_ok=True)
    fts, ft_records = _finetunes(cfg, base, splits["train_pairs"], given)
    guard, guard_record = _guard(cfg, base, splits, guard_given)
    cands = candidates(base, fts, methods=cfg.sweep.methods, weights=cfg.sweep.weights,
                       drop_rate=cfg.sweep.drop_rate, which=cfg.sweep.finetunes,
                       dtype=cfg.sweep.dtype, seed=cfg.seed)
    _write_recipes(out, cands)
    from guardray.safeguard.evaluate import evaluate_candidates

    rows = evaluate_candidates(cfg, cands, splits, guard)
    result = _finish(cfg, base, cands, rows, fts, ft_records, guard_record, splits, started)
    return result


# --------------------------------------------------------------------------- checks


def _check_output(out: Path, overwrite: bool) -> None:
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        what = "a finished run" if (out / "manifest.json").exists() else "an earlier run"
        raise FileExistsError(
            f"output_dir {out} is not empty ({what}); set overwrite=true to resume or redo it "
            "(finished candidates with unchanged settings are reused)")


def _check_base(base: str, cfg) -> None:
    from transformers import AutoTokenizer

    from guardray.modeling.check import check_model
    from guardray.safeguard.sft import check_chat_template

    check_model(base, trust_remote_code=cfg.trust_remote_code, field="base")
    tok = AutoTokenizer.from_pretrained(base, trust_remote_code=cfg.trust_remote_code)
    check_chat_template(tok, f"base {cfg.base}")


def _splits(cfg, pairs, harmful) -> dict[str, Any]:
    from guardray.data import DatasetError

    train_pairs = pairs[pairs[D.SPLIT] == D.TRAIN]
    eval_pairs = pairs[pairs[D.SPLIT] == D.EVAL].head(cfg.downstream.max_eval)
    eval_harm = harmful[harmful[D.SPLIT] == D.EVAL].head(cfg.harmful.max_eval)
    train_harm = harmful[harmful[D.SPLIT] == D.TRAIN]
    if train_pairs.empty and not cfg.finetuned:
        raise DatasetError(f"downstream: no training pair ({len(pairs)} pairs, all in the "
                           f"eval split at eval_fraction={cfg.downstream.eval_fraction})")
    if eval_pairs.empty:
        raise DatasetError(f"downstream: no held-out pair ({len(pairs)} pairs); raise "
                           "downstream.eval_fraction")
    if eval_harm.empty:
        raise DatasetError(f"harmful: no instruction in the eval split ({len(harmful)} rows);"
                           " raise harmful.eval_fraction")
    needs_guard_data = cfg.judges.guard.enabled and not cfg.judges.guard.model
    if needs_guard_data and train_harm.empty:
        raise DatasetError("harmful: no instruction left to train the response guard "
                           f"(eval_fraction={cfg.harmful.eval_fraction}); lower it or give "
                           "judges.guard.model")
    return {"train_pairs": list(zip(train_pairs[D.INSTRUCTION], train_pairs[D.RESPONSE])),
            "eval_pairs": list(zip(eval_pairs[D.INSTRUCTION], eval_pairs[D.RESPONSE])),
            "train_harmful": train_harm[D.INSTRUCTION].tolist(),
            "eval_harmful": eval_harm[D.INSTRUCTION].tolist(),
            "n_pairs": len(pairs), "n_harmful": len(harmful)}


def _open_finetune(base: str, ref: str, index: int) -> tuple[str, str]:
    """``(label, merge ref)`` of a given fine-tune, checked against the base now.

    A LoRA adapter folder becomes ``BASE+ADAPTER`` (refused when its config names another
    base); a full model must have the base's architecture and tensors.
    """
    from guardray.merge import MergeConfig, MergeError, build_job, check_compatible
    from guardray.modeling.base import resolve_base
    from guardray.safeguard.sft import ADAPTER

    where = f"finetuned[{index}] ({ref})"
    path = Path(ref)
    label = path.name if path.name not in ("merged", ADAPTER, "final") else path.parent.name
    merge_ref = str(path.absolute())
    if (path / "adapter_config.json").is_file():
        recorded = json.loads((path / "adapter_config.json").read_text()).get(
            "base_model_name_or_path")
        if recorded and _same_model(resolve_base(recorded) if Path(recorded).exists()
                                    else recorded, base) is False:
            raise ModelError(f"{where}: a LoRA adapter made for {recorded!r}, not for the base "
                             f"{base!r}; write it as BASE+ADAPTER to merge it anyway")
        merge_ref = f"{base}+{path.absolute()}"
    elif "+" in ref and not path.exists():
        merge_ref = ref
    elif not path.is_dir():
        raise ModelError(f"{where}: not a model folder")
    recipe = MergeConfig(merge_method="linear", models=[{"model": base}, {"model": merge_ref}])
    try:
        job, opened = build_job(recipe)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}: {exc}") from None
    try:
        check_compatible(job)
    except MergeError as exc:
        raise ModelError(f"{where} does not fit the base {base}: {exc}") from None
    finally:
        for src in opened.values():
            src.close()
    return label, merge_ref


def _same_model(a: str, b: str) -> bool | None:
    """False when two references certainly name different models (None: cannot tell)."""
    from guardray.safeguard.resume import weights_key

    pa, pb = Path(a), Path(b)
    if pa.is_dir() and pb.is_dir():
        return pa.resolve() == pb.resolve() or weights_key(str(pa)) == weights_key(str(pb))
    if not pa.exists() and not pb.exists():
        return a == b
    return None


# --------------------------------------------------------------------------- steps


def _finetunes(cfg, base: str, train_pairs, given) -> tuple[list[tuple[str, str]], list]:
    """``[(label, model folder)]`` of the fine-tunes, trained or given."""
    from guardray.safeguard.finetune import run_lora_finetunes

    out = Path(cfg.output_dir)
    if given:
        fts = []
        for label, ref in given:
            if "+" in ref and not Path(ref).exists():
                fts.append((label, str(_materialize_adapter(ref, out / "finetune" / label))))
            else:
                fts.append((label, ref))
        return fts, []
    from guardray.safeguard.finetune import finetune_dir
    from guardray.safeguard.resume import load_done, mark_done, step_key, weights_key

    settings = cfg.finetune.model_dump(exclude={"seeds", "cpus_per_trial", "gpus_per_trial",
                                                "max_concurrent", "torch_threads"})
    keys = {s: step_key("lora", weights_key(base), train_pairs, s, cfg.downstream.system_prompt,
                        settings) for s in cfg.finetune.seeds}
    done = {s: load_done(finetune_dir(out, s), k) for s, k in keys.items()}
    todo = [s for s, record in done.items() if record is None]
    if len(todo) < len(keys):
        log.info("reusing the fine-tunes of seed(s) %s from an earlier run",
                 [s for s in keys if s not in todo])
    fresh = run_lora_finetunes(cfg, base, train_pairs, seeds=todo) if todo else []
    for r in fresh:
        mark_done(finetune_dir(out, r["seed"]), keys[r["seed"]], r)
    records = sorted([r for r in done.values() if r is not None] + fresh,
                     key=lambda r: cfg.finetune.seeds.index(r["seed"]))
    return [(f"seed{r['seed']}", r["merged"]) for r in records], records


def _materialize_adapter(ref: str, folder: Path) -> Path:
    """Merge ``BASE+ADAPTER`` into ``folder/merged`` with guardray's LoRA merge."""
    from guardray.merge import MergeConfig, run_merge

    target = folder / "merged"
    if not (target / "config.json").is_file():
        run_merge(MergeConfig(merge_method="linear", models=[{"model": ref}]), target,
                  overwrite=True, progress=False)
    return target


def _guard(cfg, base: str, splits, given) -> tuple[Any, dict | None]:
    """The guard's `GuardInfo` (trained here unless given) and its training record."""
    if not cfg.judges.guard.enabled:
        return None, None
    if given is not None:
        return given, {"model": given.path, "threshold": given.threshold}
    from guardray.safeguard import guard_data as G
    from guardray.safeguard.judge import guard_info
    from guardray.safeguard.respond import generate_responses
    from guardray.safeguard.resume import load_done, mark_done, step_key, weights_key

    t = cfg.judges.guard.train
    folder = Path(cfg.output_dir) / "judge"
    key = step_key("guard", weights_key(base), splits["train_harmful"], splits["train_pairs"],
                   t.model_dump(), Path(cfg.judges.guard.policy).read_text(),
                   cfg.generation.model_dump(mode="json"), cfg.downstream.system_prompt, cfg.seed)
    record = load_done(folder, key)
    if record is not None:
        log.info("reusing the response guard of an earlier run: %s", record["model"])
        return guard_info(record["model"], cfg.judges.guard.policy,
                          cfg.judges.guard.threshold), record

    def generate(conversations):
        return generate_responses(cfg.generation, base, conversations,
                                  max_new_tokens=t.max_new_tokens)

    log.info("building the response guard's data with %s", base)
    rows = G.build_rows(splits["train_harmful"], splits["train_pairs"], generate, settings=t,
                        system_prompt=cfg.downstream.system_prompt, seed=cfg.seed)
    G.write_rows(rows, folder / "guard_data")
    record = G.train_guard(cfg, folder / "guard_data", folder / "guard")
    info = guard_info(record["checkpoint"], cfg.judges.guard.policy,
                      cfg.judges.guard.threshold)
    counts = rows.groupby(["split", "label"]).size()
    record = {"model": record["checkpoint"], "threshold": info.threshold,
              "val_f1": record.get("best_val_f1"),
              "rows": {f"{s}/{'unsafe' if y else 'safe'}": int(n)
                       for (s, y), n in counts.items()}}
    mark_done(folder, key, record)
    return info, record


def _write_recipes(out: Path, cands: list[Candidate]) -> None:
    import yaml

    from guardray.io.uris import write_text_atomic

    for c in cands:
        if c.recipe is not None:
            header = (f"# guardray merge {out / 'recipes' / (c.name + '.yaml')} "
                      f"{out / 'candidates' / c.name}\n")
            write_text_atomic(out / "recipes" / f"{c.name}.yaml",
                              header + yaml.safe_dump(c.recipe, sort_keys=False))


# --------------------------------------------------------------------------- finish


def _finish(cfg, base, cands, rows, fts, ft_records, guard_record, splits, started):
    import yaml

    from guardray.io.uris import write_json_atomic
    from guardray.safeguard.metrics import select
    from guardray.safeguard.report import write_report

    out = Path(cfg.output_dir)
    judges = [j for j in ("guard", "llm") if getattr(cfg.judges, j).enabled]
    chosen, reason = select(rows, judge=cfg.select.judge,
                            max_asr_increase=cfg.select.max_asr_increase)
    export, recipe_yaml = None, None
    if chosen is not None:
        cand = next(c for c in cands if c.name == chosen)
        export, recipe_yaml = _export(cand, out / "chosen")
    result = {
        "base": cfg.base, "base_path": base, "finetunes": [label for label, _ in fts],
        "finetune_records": ft_records, "guard": guard_record, "judges": judges,
        "select_judge": cfg.select.judge, "metric": cfg.downstream.metric,
        "n_downstream": len(splits["eval_pairs"]), "n_harmful": len(splits["eval_harmful"]),
        "rule": (f"best downstream score with {cfg.select.judge} ASR <= the base's + "
                 f"{cfg.select.max_asr_increase}"),
        "chosen": chosen, "reason": reason, "export": export, "recipe_yaml": recipe_yaml,
        "rows": rows, "seconds": round(time.time() - started, 1),
    }
    write_report(result, out)
    write_json_atomic(out / "manifest.json", {
        "job": "safeguard", "config": cfg.summary(),
        "inputs": {"downstream_pairs": splits["n_pairs"], "harmful": splits["n_harmful"],
                   "train_pairs": len(splits["train_pairs"]),
                   "eval_pairs": len(splits["eval_pairs"]),
                   "train_harmful": len(splits["train_harmful"]),
                   "eval_harmful": len(splits["eval_harmful"])},
        "candidates": [c.name for c in cands], "chosen": chosen,
        "recipe": yaml.safe_load(recipe_yaml) if recipe_yaml else None,
        "seconds": result["seconds"]})
    return result


def _export(cand: Candidate, target: Path) -> tuple[str, str | None]:
    """Write the chosen model to ``target`` (a merge is re-run from its recipe)."""
    import yaml

    from guardray.io.folders import atomic_folder
    from guardray.io.uris import write_text_atomic
    from guardray.merge import MergeConfig, run_merge

    if cand.recipe is not None:
        run_merge(MergeConfig.model_validate(cand.recipe), target, overwrite=True,
                  progress=False)
        text = yaml.safe_dump(cand.recipe, sort_keys=False)
        write_text_atomic(target.parent / "chosen_recipe.yaml",
                          f"# guardray merge {target.parent / 'chosen_recipe.yaml'} OUT\n" + text)
        return str(target), text
    with atomic_folder(target, overwrite=True) as tmp:
        shutil.copytree(cand.path, tmp, dirs_exist_ok=True)
    return str(target), None


__all__ = ["run_safeguard"]
