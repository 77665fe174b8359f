"""A point of Ω as a merge recipe: the same plan drives the in-memory merge of a trial
(`guardray.merge.merge_state_dicts`) and the MergeKit-style YAML that ``guardray merge``
reproduces. Pure: no torch, no files.

Plans per method (weights ``w`` on the simplex, members in ranked order):

- ``linear``: ``sum_i w_i theta_i`` (Model Soup, eq. 4); no base.
- ``task_arithmetic``: ``theta_0 + lambda sum_i w_i tau_i``.
- ``ties``: eq. 1-3 with per-model ``density`` and the weighted disjoint mean, scaled by lambda.
- ``dare_linear``: eq. 5-6 with per-model drop rate p, ``theta_0 + lambda sum_i w_i DARE(tau_i)``.
- ``dare_ties``: DARE then TIES' sign election and weighted disjoint mean.
- ``slerp``: eq. 7 between the two members, ``t`` = the second member's weight (the first
  member is SLERP's ``v0``, i.e. the recipe's ``base_model``).
"""

from __future__ import annotations

from typing import Any

from guardray.search.space import Point

BASE = "base"


def merge_plan(point: Point) -> dict[str, Any]:
    """What to merge and how.

    Returns:
        ``{"method", "base": "base" | member index | None, "models": [member index],
        "weights": [float] | None, "parameters": {...},
        "model_parameters": [{...}] | None}``.
    """
    p = point.param_dict
    members = list(point.members)
    weights = list(point.weights)
    method = point.method
    if method == "linear":
        return {"method": "linear", "base": None, "models": members, "weights": weights,
                "parameters": {"normalize": True}, "model_parameters": None}
    if method == "slerp":
        if len(members) != 2:
            raise ValueError(f"slerp merges exactly two models, got members {members}")
        return {"method": "slerp", "base": members[0], "models": [members[1]], "weights": None,
                "parameters": {"t": weights[1]}, "model_parameters": None}
    per_model = None
    if method == "ties":
        per_model = [{"density": p["density"]} for _ in members]
        normalize = True
    elif method in ("dare_linear", "dare_ties"):
        per_model = [{"drop_rate": p["drop_rate"]} for _ in members]
        normalize = method == "dare_ties"
    elif method == "task_arithmetic":
        normalize = False
    else:
        raise ValueError(f"no merge plan for method {method!r}")
    return {"method": method, "base": BASE, "models": members, "weights": weights,
            "parameters": {"lambda": p["lambda"], "normalize": normalize},
            "model_parameters": per_model}


def recipe(point: Point, model_paths: list[str], base_path: str, *, merge_seed: int = 0
           ) -> dict[str, Any]:
    """The MergeKit-schema recipe of ``point`` (what `guardray.merge.load_merge_config` reads).

    Args:
        point: the chosen point.
        model_paths: local folders of the ranked candidates (index = candidate number).
        base_path: local folder of the shared base (with the candidates' tensor names).
        merge_seed: DARE seed.
    """
    plan = merge_plan(point)
    models = []
    for i, m in enumerate(plan["models"]):
        params: dict[str, Any] = {}
        if plan["weights"] is not None:
            params["weight"] = float(plan["weights"][i])
        if plan["model_parameters"]:
            params.update(plan["model_parameters"][i])
        entry: dict[str, Any] = {"model": model_paths[m]}
        if params:
            entry["parameters"] = params
        models.append(entry)
    out: dict[str, Any] = {"merge_method": plan["method"]}
    if plan["base"] == BASE:
        out["base_model"] = base_path
    elif plan["base"] is not None:
        out["base_model"] = model_paths[plan["base"]]
    out["models"] = models
    out["parameters"] = dict(plan["parameters"])
    out["seed"] = int(merge_seed)
    return out
