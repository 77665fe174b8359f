"""The Tune trainable of the merge search: one trial = one merge in memory + one validation pass.

The driver puts the pool's weights (`WeightsPayload`) and the tokenised validation rows
(`ValidationPayload`) into the object store once (``ray.put``) and hands every trial the two
object references (`TrialRefs`, through ``tune.with_parameters``). A trial:

1. reads its point from the flat config (`SearchSpace.from_config`: any searcher's config);
2. maps the weights from the object store (numpy, zero-copy, read-only) and merges them with
   `guardray.merge.merge_state_dicts`; nothing is read from disk;
3. builds the classifier from the reference ``config.json`` with the merged weights, scores the
   validation rows of the chosen instruction option, picks the decision threshold on them (one
   for all rows, or one per policy: ``objective.threshold_scope``) and computes each policy's
   macro-F1 (`guardray.search.objective.evaluate_scores`);
4. reports ``objective`` (the configured aggregate), ``objective_mean``, ``objective_worst``,
   ``val/{policy}/macro_f1`` and ``val/{policy}/f1``, the weights ``w/{candidate}``, the
   method and the instruction, so Tune's table and TensorBoard show them.

A merge that produces NaN/Inf reports ``objective = NaN`` with the reason (the searcher counts
it as a failed evaluation); any other exception errors the trial.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from guardray.search.space import SearchSpace


@dataclasses.dataclass
class ValidationPayload:
    """The tokenised validation rows (what goes into ``ray.put``).

    Attributes:
        ids: per instruction option, the token ids of every row.
        labels: (n,) 0/1.
        policy_ids: (n,) the policy of each row.
        pad_id: the tokenizer's padding id.
        batch_size: inference batch size.
        aggregate: ``mean`` or ``worst``: which one is ``objective``.
        threshold_rule: ``max_f1``, ``max_f1_1se`` or ``fixed``.
        threshold_scope: ``all`` (one threshold) or ``policy`` (one per policy).
    """

    ids: list[list[list[int]]]
    labels: np.ndarray
    policy_ids: list[str]
    pad_id: int
    batch_size: int = 64
    aggregate: str = "mean"
    threshold_rule: str = "max_f1"
    threshold_scope: str = "all"


@dataclasses.dataclass
class TrialRefs:
    """What every trial receives: object references and small settings.

    Attributes:
        weights: reference to the `WeightsPayload`.
        validation: reference to the `ValidationPayload`.
        space: `SearchSpace.describe()` of the search space.
        candidate_names: names of the ranked candidates (for the ``w/...`` metrics).
        merge_seed: DARE seed.
        torch_threads: intra-op threads of the trial.
    """

    weights: Any
    validation: Any
    space: dict[str, Any]
    candidate_names: list[str]
    merge_seed: int = 0
    torch_threads: int = 1


# Per worker process: payloads already fetched and model skeletons already built. With
# ``reuse_actors`` a Tune actor runs many trials and pays for them once.
_CACHE: dict[str, Any] = {}


def _cached(key: str, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def evaluate_point(point, weights, validation: ValidationPayload, *, merge_seed: int = 0,
                   num_threads: int | None = 1, skeleton=None,
                   device: str = "cpu") -> dict[str, Any]:
    """Merge ``point`` and score it on the validation rows (the work of one trial).

    The merge runs on the CPU (the weights come from the object store); scoring runs on
    ``device`` (``cuda`` when the trial holds a GPU).

    Returns:
        `guardray.search.objective.evaluate_scores`' dict plus ``"objective"`` (the configured
        aggregate), ``"scores"`` (n,) and ``"error"`` (None, or why the merge failed).
    """
    from guardray.merge import MergeError
    from guardray.search.objective import evaluate_scores, score_rows
    from guardray.search.weights import build_model, merge_point

    base, models = weights.torch_state_dicts()
    try:
        merged = merge_point(point, base, models, merge_seed=merge_seed, num_threads=num_threads)
    except MergeError as exc:
        return {"objective": math.nan, "mean": math.nan, "worst": math.nan, "policies": {},
                "threshold": math.nan, "scores": None, "error": str(exc)}
    if skeleton is not None:
        skeleton.load_state_dict(merged, strict=True)
        model = skeleton
    else:
        model = build_model(weights.config, merged)
    scores = score_rows(model, validation.ids[point.instruction], validation.pad_id,
                        validation.batch_size, device=device)
    out = evaluate_scores(scores, validation.labels, validation.policy_ids,
                          rule=validation.threshold_rule, scope=validation.threshold_scope)
    out["objective"] = out["worst"] if validation.aggregate == "worst" else out["mean"]
    out["scores"] = scores
    out["error"] = None if math.isfinite(out["objective"]) else "non-finite scores"
    return out


def metrics_of(point, result: dict[str, Any], space: SearchSpace,
               candidate_names: list[str]) -> dict[str, Any]:
    """The flat metrics a trial reports (numbers, plus the method name)."""
    metrics: dict[str, Any] = {
        "objective": result["objective"], "objective_mean": result["mean"],
        "objective_worst": result["worst"], "threshold": result["threshold"],
        "method": point.method, "method_index": space.methods.index(point.method),
        "instruction": point.instruction, "n_members": len(point.members)}
    for pid, m in result["policies"].items():
        metrics[f"val/{pid}/macro_f1"] = m["macro_f1"]
        metrics[f"val/{pid}/f1"] = m["f1"]
        metrics[f"val/{pid}/threshold"] = m["threshold"]
    full = space.full_weights(point)
    for j, name in enumerate(candidate_names):
        metrics[f"w/{name}"] = float(full[j])
    for name, value in point.params:
        metrics[f"param/{name}"] = value
    if result.get("error"):
        metrics["merge_error"] = result["error"][:200]
    return metrics


def _skeleton(weights):
    from guardray.search.weights import build_model

    base, _ = weights.torch_state_dicts()
    return build_model(weights.config, {k: v.clone() for k, v in base.items()})


def merge_trial(config: dict[str, Any], refs: TrialRefs) -> None:
    """Ray Tune function trainable: merge the config's point and report its objective."""
    import ray
    import torch
    from ray import tune

    started = time.perf_counter()
    torch.set_num_threads(refs.torch_threads)
    space = SearchSpace.from_description(refs.space)
    point = space.from_config(config)
    weights = _cached(f"w-{refs.weights.hex()}", lambda: ray.get(refs.weights))
    validation = _cached(f"v-{refs.validation.hex()}", lambda: ray.get(refs.validation))
    skeleton = _cached(f"m-{refs.weights.hex()}", lambda: _skeleton(weights))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # a trial holding a GPU sees it
    result = evaluate_point(point, weights, validation, merge_seed=refs.merge_seed,
                            num_threads=refs.torch_threads, skeleton=skeleton, device=device)
    metrics = metrics_of(point, result, space, refs.candidate_names)
    metrics["trial_seconds"] = time.perf_counter() - started
    tune.report(metrics)
