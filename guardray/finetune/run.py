"""Many fine-tuning runs at once: every (model, seed) pair is a Ray Tune trial.

The driver reads the data once, groups it into models (one per policy, or one for all
policies), resolves the base model to a local folder, and checks up front that no checkpoint
would be overwritten by accident. Ray Tune then runs a grid over ``group x seed``: each trial
is a function trainable with fractional resources (``tune.with_resources``), receives the
data through the object store (``tune.with_parameters``), reports every validation with
``tune.report`` (so Tune's dashboard/TensorBoard show the learning curves), and writes its
Hugging Face checkpoint to ``{output_dir}/{group}/seed{seed}``. The driver finally writes
``summary.json``, ``summary.md`` (one row per trial, best seed per model marked) and
``manifest.json`` next to the checkpoints.

Ray is imported inside functions; nothing here calls ``ray.init`` (jobs do).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from guardray import schema as S
from guardray.errors import RunError
from guardray.finetune.data import Group, build_groups, build_inputs, load_frames
from guardray.metrics.binary import nan_to_none
from guardray.modeling.base import portable_ref, resolve_base
from guardray.modeling.limits import check_max_length

log = logging.getLogger(__name__)

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


class FinetuneError(RunError):
    """One or more trials failed (the summary lists them)."""


def checkpoint_dir(cfg, group: str, seed: int) -> str:
    """Where the checkpoint of ``group`` and ``seed`` goes."""
    from guardray.io import uris

    return uris.join_uri(cfg.output_dir, group, f"seed{seed}")


def finetune_one(cfg, base: str, group: Group, seed: int, policies: dict, *,
                 on_eval=None) -> dict[str, Any]:
    """Train and save one model (one trial's work; also callable without Ray).

    Args:
        cfg: the `FinetuneConfig`.
        base: resolved base model folder or hub id (`resolve_base`).
        group: the model's data.
        seed: the run's seed.
        policies: loaded policies by id.
        on_eval: called with every validation record.

    Returns:
        The trial's summary record (see `run_finetune`).
    """
    import numpy as np
    import torch

    from guardray.finetune.loop import LoopParams, train_classifier
    from guardray.modeling.checkpoint import load_classifier, save_checkpoint

    torch.manual_seed(seed)
    model, tokenizer = load_classifier(base, trust_remote_code=cfg.model.trust_remote_code)
    fmt = cfg.resolved_input_format
    sep = tokenizer.sep_token or "[SEP]"
    dropout = cfg.train.rationale_dropout
    train = group.train
    if cfg.data.max_train_rows and len(train) > cfg.data.max_train_rows:
        keep = np.random.default_rng(seed).permutation(len(train))[: cfg.data.max_train_rows]
        train = type(train)(*[[getattr(train, f)[i] for i in keep]
                              for f in ("texts", "labels", "policy_ids", "rationales")])

    def inputs(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        return build_inputs(train, input_format=fmt, policies=policies, sep_token=sep,
                            rationale_dropout=dropout, rng=rng)

    uses_dropout = fmt == "instruction" and dropout < 1.0
    val_inputs = build_inputs(group.validation, input_format=fmt, policies=policies,
                              sep_token=sep, rationale_dropout=1.0)
    result = train_classifier(
        model, tokenizer, inputs if uses_dropout else inputs(0), train.labels, val_inputs,
        group.validation.labels, LoopParams.from_config(cfg), seed=seed, on_eval=on_eval,
        what=f"finetune {group.name}/seed{seed}")
    target = checkpoint_dir(cfg, group.name, seed)
    card = {
        "kind": "guardray-classifier",
        "method": cfg.method,
        "tuning": cfg.resolved_tuning,
        "input_format": fmt,
        "scope": cfg.scope,
        "group": group.name,
        "policy_ids": group.policy_ids,
        "policies": {p: {"name": policies[p].name, "description": policies[p].description}
                     for p in group.policy_ids if p in policies},
        "base_model": cfg.model.base,
        "max_length": cfg.model.max_length,
        "seed": seed,
        "threshold": result.threshold,
        "validation": result.val_metrics,
        "initial_val_f1": result.initial_val_f1,
        "best_val_f1": result.best_val_f1,
        "best_step": result.best_step,
        "history": result.history,
        "train_rows": train.counts(),
        "validation_rows": group.validation.counts(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_checkpoint(model, tokenizer, target, card, overwrite=cfg.overwrite,
                    storage_options=cfg.storage_options or None)
    return {
        "group": group.name, "policy_ids": group.policy_ids, "seed": seed, "status": "ok",
        "initial_val_f1": result.initial_val_f1, "best_val_f1": result.best_val_f1,
        "best_step": result.best_step, "steps": result.steps,
        "stopped_early": result.stopped_early, "threshold": result.threshold["threshold"],
        "val_precision": result.val_metrics["precision"],
        "val_recall": result.val_metrics["recall"], "val_f1_at_threshold":
        result.val_metrics["f1"], "val_auroc": result.val_metrics["auroc"],
        "trainable_params": result.trainable_params, "total_params": result.total_params,
        "seconds": result.seconds, "checkpoint": target,
    }


def _trial(config: dict, *, groups: dict, policies: dict, cfg_data: dict, base: str) -> None:
    """Ray Tune function trainable: one (group, seed) run; ``base`` is a `portable_ref`,
    resolved on the trial's node."""
    import torch
    from ray import tune

    from guardray.finetune.config import FinetuneConfig
    from guardray.logging_setup import setup_logging

    setup_logging()  # progress lines reach the driver's console through Ray's log forwarding
    cfg = FinetuneConfig.model_validate(cfg_data)
    threads = cfg.trials.torch_threads or max(1, math.ceil(cfg.trials.cpus_per_trial))
    torch.set_num_threads(threads)
    group, seed = groups[config["group"]], int(config["seed"])

    def report(record: dict) -> None:
        tune.report({k: v for k, v in record.items() if isinstance(v, (int, float))})

    final = finetune_one(cfg, resolve_base(base), group, seed, policies, on_eval=report)
    tune.report({**{k: v for k, v in final.items() if isinstance(v, (int, float, str))},
                 "done": True})


def _check_targets(cfg, groups: list[Group]) -> None:
    from guardray.io import uris

    if cfg.overwrite:
        return
    so = cfg.storage_options or None
    existing = [checkpoint_dir(cfg, g.name, s) for g in groups for s in cfg.trials.seeds
                if uris.exists(checkpoint_dir(cfg, g.name, s), so)]
    if existing:
        raise FileExistsError(f"checkpoint(s) already exist: {existing}; set overwrite=true or "
                              "choose another output_dir")


def run_finetune(cfg, connect: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run every (model, seed) trial of ``cfg`` on Ray Tune and write the summary.

    Args:
        cfg: the `FinetuneConfig`.
        connect: starts or joins Ray once the data has loaded and the checks passed (the job
            passes ``init_ray``), so bad data or a bad model fails before Ray starts; None:
            Ray is already running.

    Returns:
        The summary: ``{"trials": [record...], "best": {group: record}, "failed": n}``.

    Raises:
        FinetuneDataError / DatasetError / ConfigError: before any trial starts.
        FileExistsError: checkpoints would be overwritten (before any trial starts).
        FinetuneError: a trial failed (after the summary is written).
    """
    from ray import tune

    from guardray.io import uris
    from guardray.policies import load_policies

    started = time.time()
    cfg = cfg.model_copy(update={"output_dir": uris.parse_uri(cfg.output_dir).uri})
    policies = {p.id: p for p in load_policies(cfg.policies)}
    train, val = load_frames(cfg)
    groups = _longest_first(cfg, build_groups(cfg, train, val, policies), policies)
    _check_targets(cfg, groups)
    base = resolve_base(cfg.model.base)
    check_max_length(base, cfg.model.max_length, trust_remote_code=cfg.model.trust_remote_code)
    if connect is not None:
        connect()
    log.info("fine-tuning %d model(s) x %d seed(s) from %s (%s, %s input): %s",
             len(groups), len(cfg.trials.seeds), base, cfg.resolved_tuning,
             cfg.resolved_input_format, ", ".join(g.name for g in groups))
    trainable = tune.with_parameters(
        _trial, groups={g.name: g for g in groups}, policies=policies,
        cfg_data=cfg.model_dump(mode="json"), base=portable_ref(cfg.model.base))
    resources = {"cpu": cfg.trials.cpus_per_trial, "gpu": cfg.trials.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"group": tune.grid_search([g.name for g in groups]),
                     "seed": tune.grid_search(list(cfg.trials.seeds))},
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.trials.max_concurrent,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=f"finetune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=_tune_storage(cfg), verbose=0,
            failure_config=tune.FailureConfig(max_failures=0)),
    )
    results = tuner.fit()
    records = [_record(r) for r in results]
    records.sort(key=lambda r: (r["group"], r["seed"]))
    summary = _summarize(cfg, groups, records, time.time() - started)
    _write_summary(cfg, summary, train, val)
    if summary["failed"]:
        bad = [f"{r['group']}/seed{r['seed']}: {r['error']}" for r in records
               if r["status"] != "ok"]
        raise FinetuneError(f"{summary['failed']} trial(s) failed:\n" + "\n".join(bad))
    return summary


def _longest_first(cfg, groups: list[Group], policies: dict) -> list[Group]:
    """``groups`` in the order their trials should start (`guardray.finetune.schedule`): Tune
    starts grid trials seed by seed, each seed's groups in this order."""
    from guardray.finetune.schedule import longest_first, token_estimate

    costs = {g.name: token_estimate(build_inputs(g.train, input_format=cfg.resolved_input_format,
                                                 policies=policies, sep_token=" "),
                                    cfg.model.max_length) for g in groups}
    order = longest_first(costs)
    if len(order) > 1:
        log.info("trials start longest first (estimated tokens per epoch): %s",
                 ", ".join(f"{name} {costs[name]:,}" for name in order))
    by_name = {g.name: g for g in groups}
    return [by_name[name] for name in order]


def _trial_dirname(trial) -> str:
    return f"{trial.config['group']}-seed{trial.config['seed']}-{trial.trial_id}"


def _tune_storage(cfg) -> str | None:
    from guardray.io import uris

    loc = uris.parse_uri(cfg.output_dir)
    return None if loc.is_s3 else os.path.join(loc.path, "_tune")


def _record(result) -> dict[str, Any]:
    config = result.config or {}
    base = {"group": config.get("group"), "seed": config.get("seed")}
    if result.error is not None or not (result.metrics or {}).get("done"):
        return {**base, "status": "error", "error": str(result.error or "trial did not finish")}
    kept = {k: v for k, v in result.metrics.items() if k in _RECORD_KEYS}
    return {**base, **kept, "status": "ok"}


_RECORD_KEYS = ("initial_val_f1", "best_val_f1", "best_step", "steps", "stopped_early",
                "threshold", "val_precision", "val_recall", "val_f1_at_threshold", "val_auroc",
                "trainable_params", "total_params", "seconds", "checkpoint")


def _summarize(cfg, groups: list[Group], records: list[dict], seconds: float) -> dict[str, Any]:
    best: dict[str, dict] = {}
    for r in records:
        if r["status"] == "ok" and (r["group"] not in best or
                                    r["best_val_f1"] > best[r["group"]]["best_val_f1"]):
            best[r["group"]] = r
    return {
        "method": cfg.method, "tuning": cfg.resolved_tuning,
        "input_format": cfg.resolved_input_format, "scope": cfg.scope,
        "base_model": cfg.model.base, "output_dir": cfg.output_dir,
        "groups": {g.name: {"policy_ids": g.policy_ids, "train": g.train.counts(),
                            "validation": g.validation.counts()} for g in groups},
        "trials": records, "best": best,
        "failed": sum(r["status"] != "ok" for r in records), "seconds": seconds,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (one row per trial; * marks the best seed)."""
    lines = [f"# guardray finetune: {summary['method']} ({summary['tuning']} tuning, "
             f"{summary['input_format']} input, {summary['scope']})", "",
             f"base model: `{summary['base_model']}`", "",
             "| model | seed | status | initial val F1 | best val F1 | best step | steps | "
             "threshold | val AUROC | seconds | checkpoint |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def num(v, fmt="{:.4f}"):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    for r in summary["trials"]:
        star = " *" if summary["best"].get(r["group"], {}).get("seed") == r["seed"] else ""
        if r["status"] != "ok":
            lines.append(f"| {r['group']} | {r['seed']} | error: {r.get('error', '')[:80]} | "
                         "- | - | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {r['group']} | {r['seed']}{star} | ok | {num(r['initial_val_f1'])} | "
            f"{num(r['best_val_f1'])} | {r['best_step']} | {r['steps']} | "
            f"{num(r['threshold'], '{:.3f}')} | {num(r['val_auroc'])} | "
            f"{num(r['seconds'], '{:.1f}')} | `{r['checkpoint']}` |")
    lines += ["", f"{len(summary['trials'])} trial(s), {summary['failed']} failed, "
              f"{summary['seconds']:.1f} s"]
    return "\n".join(lines) + "\n"


def _by_source(frame) -> dict[str, dict[str, int]]:
    """Training rows per policy and provenance (after the mix; repeats counted)."""
    if S.SOURCE not in frame:
        return {}
    out: dict[str, dict[str, int]] = {}
    for (policy, source), n in frame.groupby([S.POLICY_ID, S.SOURCE]).size().items():
        out.setdefault(str(policy), {})[str(source)] = int(n)
    return out


def _write_summary(cfg, summary: dict[str, Any], train, val) -> None:
    from guardray.io import uris, write_manifest

    so = cfg.storage_options or None
    uris.write_json_atomic(uris.join_uri(cfg.output_dir, SUMMARY_JSON), nan_to_none(summary), so)
    uris.write_text_atomic(uris.join_uri(cfg.output_dir, SUMMARY_MD), summary_markdown(summary), so)
    inputs = [cfg.data.path] + ([cfg.data.validation_path] if cfg.data.validation_path else [])
    write_manifest(
        cfg.output_dir, "finetune", inputs=inputs, config=cfg,
        counts={"in": len(train) + len(val), "out": sum(r["status"] == "ok"
                                                         for r in summary["trials"])},
        extra={"checkpoints": {f"{r['group']}/seed{r['seed']}": r.get("checkpoint")
                               for r in summary["trials"]},
               "best": {g: r["checkpoint"] for g, r in summary["best"].items()},
               "failed": summary["failed"], "train_rows_by_source": _by_source(train)},
        storage_options=so)
