"""After the search: UniGuard as a Hugging Face checkpoint, its recipe, the comparison table.

- The best finished trial's point is merged again in the driver, from the same weights, and
  scored on the validation rows: the decision threshold is chosen there (validation only)
  and stored in ``guardray_model.json`` with the recipe, the instruction of each policy and
  the validation metrics.
- ``recipe.yaml`` is the MergeKit-schema config of that merge: ``guardray merge recipe.yaml
  OUT`` rebuilds the same weights. When the base folder does not hold the candidates' tensors
  under their names (a plain encoder whose head was created at fine-tuning), the base the
  search merged with is written to ``merge_base/`` and the recipe names it.
- The per-policy table compares UniGuard with its TaskGuards and the MultiTaskGuard on the
  validation rows (each candidate at its own threshold, on the policies it was trained for);
  test metrics are computed once, here, for UniGuard alone.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np

from guardray.errors import RunError
from guardray.io import uris
from guardray.search.recipe import BASE, merge_plan, recipe
from guardray.search.space import Point

log = logging.getLogger(__name__)

MODEL_DIR = "uniguard"
BASE_DIR = "merge_base"
RECIPE = "recipe.yaml"


def best_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The finished trial with the highest objective (the first one among equals)."""
    ok = [r for r in records if r.get("value") is not None and math.isfinite(r["value"])]
    if not ok:
        errors = sum(bool(r.get("error")) for r in records)
        raise RunError(f"every one of the {len(records)} merge trial(s) failed ({errors} "
                       "errored, the rest gave no finite objective); see the Tune logs")
    return max(ok, key=lambda r: r["value"])


def export_search(cfg, prep, records: list[dict[str, Any]], *, experiments: list[str],
                  tune_dir: str | None, seconds: float) -> dict[str, Any]:
    """Write UniGuard, its recipe, the report and the summary; return the summary."""
    from guardray.io import write_manifest
    from guardray.metrics.binary import nan_to_none
    from guardray.search.report import write_report
    from guardray.search.trainable import evaluate_point

    out = uris.parse_uri(cfg.output_dir).uri
    so = cfg.storage_options or None
    best = best_record(records)
    point = Point.from_dict(best["point"])
    result = evaluate_point(point, prep.weights, prep.validation,
                            merge_seed=cfg.space.merge_seed)
    option = prep.options[point.instruction]
    threshold = _card_threshold(cfg, result)
    thresholds = policy_thresholds(result)
    recipe_data = _recipe(cfg, prep, point, out)
    model_dir = uris.join_uri(out, MODEL_DIR)
    card = _card(cfg, prep, point, option, result, recipe_data, threshold, best)
    _save_model(cfg, prep, point, model_dir, card)
    recipe_path = _write_recipe(out, so, recipe_data, model_dir)
    candidates = candidate_table(cfg, prep)
    test = (test_metrics(cfg, prep, point, result["threshold"], thresholds)
            if cfg.data.test_metrics else None)
    rows = per_policy_rows(prep, result, candidates, test)
    summary = {
        "model_dir": model_dir, "recipe": recipe_path, "objective": best["value"],
        "aggregate": cfg.objective.aggregate, "objective_mean": result["mean"],
        "objective_worst": result["worst"], "threshold": result["threshold"],
        "threshold_scope": cfg.objective.threshold_scope, "policy_thresholds": thresholds,
        "point": point.to_dict(), "method": point.method, "instruction": option,
        "members": [prep.pool.candidates[m].name for m in point.members],
        "per_policy": rows, "test": test, "searcher": cfg.search.searcher,
        "budget": cfg.search.budget, "trials": len(records),
        "failed": sum(r.get("value") is None for r in records),
        "best_trial": best.get("trial_id"), "best_so_far": best_so_far(records),
        "candidates": [{"name": c.name, "kind": c.kind, "policy_ids": c.policy_ids,
                        "f1": c.f1, "path": c.path} for c in prep.pool.candidates],
        "base_model": prep.pool.base_ref, "experiments": experiments, "tune_dir": tune_dir,
        "seconds": seconds}
    summary["report"] = write_report(cfg, prep, summary, records)
    uris.write_json_atomic(uris.join_uri(out, "trials.json"), nan_to_none(records), so)
    uris.write_json_atomic(uris.join_uri(out, "summary.json"), nan_to_none(summary), so)
    write_manifest(out, "search", inputs=[*cfg.pool.finetune_dirs, *cfg.pool.models,
                                          cfg.data.path],
                   config=cfg, counts={"in": len(prep.pool.candidates), "out": 1},
                   extra={"model_dir": model_dir, "recipe": recipe_path,
                          "trials": len(records), "failed": summary["failed"]},
                   storage_options=so)
    log.info("UniGuard: %s objective %.4f (%s) after %d trial(s) -> %s", point.method,
             best["value"], cfg.objective.aggregate, len(records), model_dir)
    return summary


def policy_thresholds(result: dict[str, Any]) -> dict[str, float] | None:
    """``{policy id: threshold}`` of a per-policy (``scope == "policy"``) evaluation, else
    None (one threshold for every row)."""
    if result.get("scope") != "policy":
        return None
    return {pid: float(m["threshold"]) for pid, m in result["policies"].items()}


def best_so_far(records: list[dict[str, Any]]) -> list[float | None]:
    """Best objective after each trial, in completion order (None before the first success)."""
    out, best = [], None
    for r in records:
        v = r.get("value")
        if v is not None and math.isfinite(v) and (best is None or v > best):
            best = v
        out.append(best)
    return out


# --------------------------------------------------------------------------- model + recipe


def _recipe(cfg, prep, point: Point, out: str) -> dict[str, Any]:
    """The recipe; writes ``merge_base/`` first when the base folder cannot serve as is."""
    base_path = prep.pool.base_path
    if merge_plan(point)["base"] == BASE and _base_needs_export(prep):
        loc = uris.parse_uri(uris.join_uri(out, BASE_DIR))
        if loc.is_s3:
            raise RunError("the base must be exported for the recipe, which needs a local "
                           "output_dir")
        base, _ = prep.weights.torch_state_dicts()
        _save_hf(prep, base, loc.path, card=None)
        base_path = loc.path
    return recipe(point, [c.path for c in prep.pool.candidates], base_path,
                  merge_seed=cfg.space.merge_seed)


def _base_needs_export(prep) -> bool:
    """Whether the base folder lacks the candidates' tensors under their names."""
    from safetensors import safe_open

    if prep.weights.zero_base:
        return True
    file = os.path.join(prep.pool.base_path, "model.safetensors")
    if not os.path.isfile(file):
        return True
    with safe_open(file, framework="pt") as f:
        return set(f.keys()) != set(prep.weights.names)


def _save_hf(prep, state_dict: dict, target: str, card: dict | None, so=None) -> None:
    from guardray.modeling.checkpoint import save_checkpoint
    from guardray.search.weights import build_model

    model = build_model(prep.weights.config, {k: v.clone() for k, v in state_dict.items()})
    if card is None:
        from guardray.io.folders import atomic_folder

        with atomic_folder(target, overwrite=True) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            prep.tokenizer.save_pretrained(str(tmp))
        return
    save_checkpoint(model, prep.tokenizer, target, card, overwrite=True, storage_options=so)


def _save_model(cfg, prep, point: Point, model_dir: str, card: dict) -> None:
    from guardray.search.weights import merge_point

    base, models = prep.weights.torch_state_dicts()
    merged = merge_point(point, base, models, merge_seed=cfg.space.merge_seed)
    _save_hf(prep, merged, model_dir, card, cfg.storage_options or None)


def _write_recipe(out: str, so, data: dict[str, Any], model_dir: str) -> str:
    import yaml

    path = uris.join_uri(out, RECIPE)
    text = (f"# guardray merge {path} OUT_DIR   (rebuilds {model_dir}: the UniGuard chosen by "
            "guardray search)\n" + yaml.safe_dump(data, sort_keys=False))
    uris.write_text_atomic(path, text, so)
    return path


def _card(cfg, prep, point: Point, option, result, recipe_data, threshold, best) -> dict:
    pool = prep.pool
    ids = pool.policy_ids
    texts = option["texts"]
    policies = {}
    for pid in ids:
        p = prep.policies.get(pid)
        desc = texts.get(pid) or (p.description if p else "")
        policies[pid] = {"name": p.name if p else pid, "description": desc}
    return {
        "kind": "guardray-classifier", "method": "uniguard", "tuning": "merge",
        "input_format": pool.input_format, "scope": "multi_policy", "group": "uniguard",
        "policy_ids": ids, "policies": policies,
        "instruction": {"option": option["name"], "texts": texts} if texts else None,
        "base_model": pool.base_ref, "max_length": cfg.objective.max_length,
        "threshold": threshold,
        "validation": {"objective": result["objective"], "aggregate": cfg.objective.aggregate,
                       "mean_macro_f1": result["mean"], "worst_macro_f1": result["worst"],
                       "policies": result["policies"]},
        "merge": {"recipe": recipe_data, "point": point.to_dict(),
                  "members": [pool.candidates[m].name for m in point.members],
                  "searcher": cfg.search.searcher, "trial": best.get("trial_id")},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _card_threshold(cfg, result) -> dict[str, Any]:
    """The card's ``threshold``: the one chosen on all validation rows (``threshold``, for
    readers that take one cut), and with scope ``policy`` each policy's own under
    ``per_policy`` (what the search scored; `guardray evaluate` and `guardray serve` apply
    it to the rows of that policy)."""
    out = {**(result["threshold_choice"] or {"threshold": result["threshold"]}),
           "rule": cfg.objective.threshold_rule, "scope": cfg.objective.threshold_scope}
    per = policy_thresholds(result)
    if per is not None:
        out["per_policy"] = {pid: {**(result["policies"][pid].get("threshold_choice") or {}),
                                   "threshold": t} for pid, t in per.items()}
    return out


# --------------------------------------------------------------------------- comparison


def candidate_table(cfg, prep) -> list[dict[str, Any]]:
    """Each candidate on the validation rows of its own policies, at its own threshold."""
    from guardray.search.objective import evaluate_scores, score_rows
    from guardray.search.weights import build_model

    _, models = prep.weights.torch_state_dicts()
    rows = prep.rows
    out = []
    for c, sd in zip(prep.pool.candidates, models):
        texts = None
        if prep.pool.input_format == "instruction":
            infos = c.card.get("policies") or {}
            texts = {p: (infos.get(p) or {}).get("description")
                     or prep.options[0]["texts"][p] for p in prep.pool.policy_ids}
        ids = prep.ids_for(texts, max_length=cfg.objective.max_length)
        keep = np.isin(np.asarray(rows.policy_ids), c.policy_ids)
        scores = score_rows(build_model(prep.weights.config, sd),
                            [ids[i] for i in np.flatnonzero(keep)], prep.validation.pad_id,
                            cfg.objective.batch_size)
        card_t = (c.card.get("threshold") or {}).get("threshold")
        res = evaluate_scores(scores, rows.labels[keep],
                              [p for p, k in zip(rows.policy_ids, keep) if k],
                              threshold=card_t if card_t is not None else 0.5)
        out.append({"name": c.name, "kind": c.kind, "policies": res["policies"]})
    return out


def test_metrics(cfg, prep, point: Point, threshold: float,
                 thresholds: dict[str, float] | None = None) -> dict[str, Any] | None:
    """UniGuard's test metrics per policy, computed once, at its validation threshold (each
    policy's own, ``thresholds``, when the search chose one per policy)."""
    from guardray.errors import DataError
    from guardray.search.objective import evaluate_scores, load_rows, score_rows
    from guardray.search.weights import build_model, merge_point

    try:
        rows = load_rows(cfg, cfg.data.test_split, prep.pool.policy_ids)
    except DataError as exc:
        log.warning("no test metrics for UniGuard: %s", exc)
        return None
    base, models = prep.weights.torch_state_dicts()
    model = build_model(prep.weights.config,
                        merge_point(point, base, models, merge_seed=cfg.space.merge_seed))
    ids = prep.ids_for(prep.options[point.instruction]["texts"] or None, rows,
                       cfg.objective.max_length)
    scores = score_rows(model, ids, prep.validation.pad_id, cfg.objective.batch_size)
    res = evaluate_scores(scores, rows.labels, rows.policy_ids, threshold=threshold,
                          scope="policy" if thresholds else "all",
                          policy_thresholds=thresholds)
    log.info("UniGuard test macro-F1: mean %.4f, worst %.4f (%s), %d rows", res["mean"],
             res["worst"], res["worst_policy"], len(rows))
    return {"mean": res["mean"], "worst": res["worst"], "policies": res["policies"],
            "threshold": threshold, "policy_thresholds": thresholds, "rows": len(rows)}


def per_policy_rows(prep, result, candidates, test) -> list[dict[str, Any]]:
    """One row per policy: UniGuard, its best TaskGuard, the MultiTaskGuard (validation
    macro-F1), and UniGuard's test macro-F1."""
    rows = []
    for pid in prep.pool.policy_ids:
        task = [c for c in candidates if c["kind"] == "TaskGuard" and pid in c["policies"]]
        multi = [c for c in candidates if c["kind"] == "MultiTaskGuard" and pid in c["policies"]]

        t_name, t_val = _best_on(task, pid)
        m_name, m_val = _best_on(multi, pid)
        rows.append({"policy": pid, "uniguard_val": result["policies"][pid]["macro_f1"],
                     "taskguard": t_name, "taskguard_val": t_val,
                     "multitaskguard": m_name, "multitaskguard_val": m_val,
                     "uniguard_test": (test or {}).get("policies", {}).get(pid, {})
                     .get("macro_f1")})
    return rows


def _best_on(candidates: list[dict[str, Any]], pid: str) -> tuple[str | None, float | None]:
    """The candidate with the best validation macro-F1 on policy ``pid``, and that value."""
    if not candidates:
        return None, None
    c = max(candidates, key=lambda c: c["policies"][pid]["macro_f1"])
    return c["name"], c["policies"][pid]["macro_f1"]
