"""`run_search`: the merge search on Ray Tune, from the finetune outputs to UniGuard.

1. `guardray.search.inputs.prepare` builds the pool, the space Ω, the weights and the
   tokenised validation rows in the driver (every input error surfaces here, before Ray work).
2. The weights and the validation rows go into the object store once (``ray.put``); each trial
   (`guardray.search.trainable.merge_trial`) gets the references, fractional CPUs/GPUs, and
   at most ``trials.max_concurrent`` run at once.
3. The searcher is guardray's `MergeSearcher` (thompson / egreedy / random) or Ray's
   ``OptunaSearch`` / ``BasicVariantGenerator`` over the same flat config.
4. `guardray.search.export` writes UniGuard, its recipe and the report.

Output folder::

    {output_dir}/search_plan.json    what was searched (pool, space, settings) + experiments
    {output_dir}/search_state.json   the searcher's JSON state after every trial (the ledger)
    {output_dir}/tune/<experiment>   Ray Tune's runs (progress, TensorBoard event files)
    {output_dir}/uniguard/           the chosen model (HF checkpoint + guardray_model.json)
    {output_dir}/recipe.yaml         ``guardray merge recipe.yaml OUT`` rebuilds it
    {output_dir}/report.md, convergence.png, trials.json, summary.json, manifest.json

Resuming (``resume``): ``json`` (default) continues from ``search_state.json``: finished trials
are never repeated, trials that were running start again, and a new Tune experiment runs the
rest; nothing is unpickled. ``tune`` calls ``Tuner.restore`` on the last experiment, which
unpickles Tune's own state files (``tuner.pkl``, the search-generator state, the experiment
state): only for a trusted ``storage_path``. The searcher's own state is JSON either way.

Ray is imported inside functions; nothing here calls ``ray.init`` (the job does).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from guardray.errors import ConfigError, RunError
from guardray.io import uris
from guardray.search.config import OWN_SEARCHERS

log = logging.getLogger(__name__)

PLAN_JSON = "search_plan.json"
STATE_JSON = "search_state.json"
TUNE_DIR = "tune"
METRIC = "objective"


class SearchInterrupted(RunError):
    """The search ended before its budget (Ctrl+C, a stop signal); rerunning continues it."""


def run_search(cfg, *, callbacks: list | None = None, prepared=None) -> dict[str, Any]:
    """Run the merge search of ``cfg`` (a `SearchConfig`) and export UniGuard.

    Ray must already be initialised (``jobs/search.py`` does it).

    Args:
        cfg: the search config.
        callbacks: extra Ray Tune callbacks (e.g. a progress hook).
        prepared: `guardray.search.inputs.prepare(cfg)`'s result, when the caller built it
            already (the job does, before starting Ray, so bad inputs fail fast).

    Returns:
        The summary (`guardray.search.export.export_search`): ``model_dir``, ``recipe``,
        ``objective``, ``per_policy`` rows, ``trials``, ``report``...

    Raises:
        ConfigError / PoolError / DataError: bad inputs, before any trial.
        FileExistsError: a finished search would be overwritten (``overwrite`` false).
        SearchInterrupted: the run stopped before the budget was spent (its state is saved;
            the same call continues it).
        RunError: every trial failed.
    """
    from guardray.search.export import export_search
    from guardray.search.inputs import prepare

    started = time.time()
    out = uris.parse_uri(cfg.output_dir).uri
    so = cfg.storage_options or None
    prep = prepared if prepared is not None else prepare(cfg)
    fingerprint = prep.fingerprint(cfg)
    plan = _read_json(uris.join_uri(out, PLAN_JSON), so)
    mode = _decide(cfg, plan, fingerprint, out)
    own = cfg.search.searcher in OWN_SEARCHERS
    experiments = list(plan["experiments"]) if plan and mode != "fresh" else []
    state_path = uris.join_uri(out, STATE_JSON)

    import ray

    refs = _put(ray, cfg, prep)
    results = None
    if mode == "tune":
        name = experiments[-1]
        results = _restore(cfg, prep, refs, out, name, callbacks)
    else:
        searcher = None
        if own:
            searcher = _own_searcher(cfg, prep, state_path if mode == "fresh" else None)
            if mode == "json":
                searcher.set_state(_read_json(state_path, so))
                searcher.budget = cfg.search.budget
                searcher.state_path, searcher.storage_options = state_path, so
                again = searcher.requeue_live()
                log.info("resuming the merge search from %s: %d trial(s) done, %d to redo, "
                         "budget %d", state_path, len(searcher.history), again, searcher.budget)
            searcher.storage_options = so
            remaining = searcher.budget - searcher.used
        else:
            remaining = cfg.search.budget
        if remaining > 0:
            name = f"search-{time.strftime('%Y%m%d-%H%M%S')}-{len(experiments)}"
            experiments.append(name)
            _write_plan(out, so, fingerprint, experiments)
            results = _fit(cfg, prep, refs, searcher, out, name, remaining, callbacks)
        else:
            log.info("merge search: the budget of %d trial(s) is already spent; exporting",
                     cfg.search.budget)
    records = _records(cfg, prep, results, state_path, so, own)
    if len(records) < cfg.search.budget:
        raise SearchInterrupted(
            f"the merge search stopped after {len(records)} of {cfg.search.budget} trial(s) "
            f"(interrupted?); its state is in {out}: run the same command again to continue "
            f"(resume={'tune' if mode == 'tune' else 'json'})")
    return export_search(cfg, prep, records, experiments=experiments,
                         tune_dir=_storage(cfg), seconds=time.time() - started)


# --------------------------------------------------------------------------- resume


def _read_json(uri: str, so) -> dict | None:
    return uris.read_json(uri, so) if uris.exists(uri, so) else None


def _write_plan(out: str, so, fingerprint: dict, experiments: list[str]) -> None:
    uris.write_json_atomic(uris.join_uri(out, PLAN_JSON),
                           {"fingerprint": fingerprint, "experiments": experiments}, so)


def _decide(cfg, plan: dict | None, fingerprint: dict, out: str) -> str:
    """``fresh``, ``json`` or ``tune``; refuses resuming a different search."""
    if plan is None:
        return "fresh"
    if cfg.resume == "never":
        if not cfg.overwrite:
            raise FileExistsError(
                f"{out} already holds a merge search; set resume=json to continue it, or "
                "overwrite=true to start over")
        return "fresh"
    old = plan.get("fingerprint") or {}
    changed = sorted(k for k in set(old) | set(fingerprint)
                     if _without_budget(k, old.get(k)) != _without_budget(k, fingerprint.get(k)))
    if changed:
        raise ConfigError(
            f"{out} holds a merge search over a different setup (changed: {', '.join(changed)}); "
            "resume it with the same pool, data and settings, or set resume=never "
            "overwrite=true, or choose another output_dir")
    if cfg.resume == "tune":
        if _storage(cfg) is None:
            raise ConfigError("resume=tune needs a local output_dir (Tune's experiment folder); "
                              "use resume=json")
        return "tune"
    if cfg.search.searcher not in OWN_SEARCHERS:
        log.warning("resume=json keeps the state of guardray's searchers only; %s starts over",
                    cfg.search.searcher)
        return "fresh"
    if not uris.exists(uris.join_uri(out, STATE_JSON), cfg.storage_options or None):
        return "fresh"
    return "json"


def _without_budget(key: str, value: Any) -> Any:
    if key == "searcher" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "budget"}
    return value


# --------------------------------------------------------------------------- Tune


def _storage(cfg) -> str | None:
    loc = uris.parse_uri(cfg.output_dir)
    return None if loc.is_s3 else os.path.abspath(os.path.join(loc.path, TUNE_DIR))


def _put(ray, cfg, prep):
    """The weights and the validation rows into the object store, once."""
    import math

    from guardray.search.trainable import TrialRefs

    threads = cfg.trials.torch_threads or max(1, math.ceil(cfg.trials.cpus_per_trial))
    weights = ray.put(prep.weights)
    # The driver keeps a read-only view of the stored copy (for the export) and lets its own
    # arrays go: one copy of the pool in memory, not two.
    prep.weights = ray.get(weights)
    return TrialRefs(weights, ray.put(prep.validation), prep.space.describe(),
                     prep.pool.names(), cfg.space.merge_seed, threads)


def _trainable(cfg, refs):
    from ray import tune

    from guardray.search.trainable import merge_trial

    resources = {"cpu": cfg.trials.cpus_per_trial, "gpu": cfg.trials.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(merge_trial, refs=refs), resources)


def _own_searcher(cfg, prep, state_path: str | None):
    from guardray.search.searcher import MergeSearcher

    s = cfg.search
    options: dict[str, Any] = {}
    if s.searcher == "egreedy":
        options["epsilon"] = s.epsilon
    if s.searcher == "thompson":
        options["n_initial"] = s.n_initial
        options["screen"] = s.screen
        options["screen_scale"] = s.screen_scale
    return MergeSearcher(prep.space, s.searcher, s.budget, METRIC, "max", s.seed, options,
                         state_path=state_path, storage_options=cfg.storage_options or None)


def _ray_searcher(cfg):
    s = cfg.search
    if s.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=METRIC, mode="max", seed=s.seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=s.seed)


def _fit(cfg, prep, refs, searcher, out: str, name: str, samples: int, callbacks):
    from ray import tune

    from guardray.search.searcher import tune_param_space

    param_space = None if searcher is not None else tune_param_space(prep.space)
    alg = searcher if searcher is not None else _ray_searcher(cfg)
    log.info("merge search: %s, %d trial(s), %d at a time, %.2f CPU each -> %s",
             cfg.search.searcher, samples, cfg.trials.max_concurrent, cfg.trials.cpus_per_trial,
             out)
    tuner = tune.Tuner(
        _trainable(cfg, refs), param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=alg, num_samples=samples,
                                    max_concurrent_trials=cfg.trials.max_concurrent,
                                    trial_dirname_creator=_dirname, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=_storage(cfg), verbose=1,
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  callbacks=callbacks))
    return tuner.fit()


def _restore(cfg, prep, refs, out: str, name: str, callbacks):
    """``Tuner.restore`` of the last experiment (unpickles Tune's state: trusted storage only)."""
    from ray import tune

    path = os.path.join(_storage(cfg), name)
    if not tune.Tuner.can_restore(path):
        raise ConfigError(f"resume=tune: {path} holds no Tune experiment to restore; use "
                          "resume=json")
    log.warning("resume=tune: Tuner.restore(%s) unpickles Tune's state files; trust that "
                "folder", path)
    # The restored run keeps the first run's config, callbacks included (Tune's design).
    tuner = tune.Tuner.restore(path, trainable=_trainable(cfg, refs), resume_unfinished=True,
                               resume_errored=False, restart_errored=False)
    return tuner.fit()


def _dirname(trial) -> str:
    return f"merge-{trial.trial_id}"


# --------------------------------------------------------------------------- results


def _records(cfg, prep, results, state_path: str, so, own: bool) -> list[dict[str, Any]]:
    """Every finished trial in completion order: ``{"trial_id", "point", "value", "error",
    "metrics"}`` (from the searcher's ledger, or from Tune's results for Ray's searchers)."""
    from guardray.search.space import is_number

    if own:
        state = _read_json(state_path, so) or {}
        return list(state.get("history", []))
    records = []
    for r in results or []:
        config = {k: v for k, v in (r.config or {}).items()}
        point = prep.space.from_config(config)
        metrics = r.metrics or {}
        value = metrics.get(METRIC)
        records.append({"trial_id": metrics.get("trial_id"), "point": point.to_dict(),
                        "value": float(value) if is_number(value) else None,
                        "error": r.error is not None,
                        "metrics": {k: v for k, v in metrics.items() if isinstance(k, str)
                                    and k.startswith(("objective", "val/"))
                                    and is_number(v)},
                        "time": metrics.get("timestamp", 0)})
    records.sort(key=lambda rec: rec["time"] or 0)
    return records
