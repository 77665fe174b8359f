"""The candidates of the safeguard sweep and their MergeKit-style recipes (pure, no I/O).

Safeguard-merging eq. 3: ``theta_merged = (1 - lambda) theta_base + lambda theta_ft``, with
lambda the fine-tune's weight. Per method (appendix D):

- ``linear``: eq. 3 as a weighted average (base weight 1 - lambda, fine-tune lambda).
- ``slerp``: spherical interpolation from the base (t = 0) to the fine-tune (t = 1), t = lambda;
  nearly collinear tensors fall back to eq. 3.
- ``dare_linear``: DARE on the fine-tune only (drop its task-vector entries with probability
  p, rescale the rest by 1 / (1 - p)), then eq. 3: ``theta_base + lambda DARE(theta_ft -
  theta_base)``.
- ``model_stock``: the fine-tunes of all seeds averaged, then moved towards the base by Model
  Stock's ``t = N cos / (1 + (N - 1) cos)`` (no lambda).

The base and each fine-tune are candidates too (the paper's "Base" and "FT" rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

BASE, FINETUNE, MERGE = "base", "finetune", "merge"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One model of the comparison.

    Attributes:
        name: unique, file-name safe (``base``, ``ft-seed42``, ``linear-w0.50-seed42``).
        kind: ``base``, ``finetune`` or ``merge``.
        method: ``base``, ``finetune`` or the merge method.
        weight: the fine-tune's weight lambda (1.0 for a fine-tune, 0.0 for the base, None
            for Model Stock, whose t comes from the weights).
        finetunes: the fine-tune labels it uses (``seed42``...).
        path: the model folder of a base or fine-tune (None for merges).
        recipe: the merge config (MergeKit schema) of a merge (None otherwise).
    """

    name: str
    kind: str
    method: str
    weight: float | None
    finetunes: tuple[str, ...]
    path: str | None = None
    recipe: dict[str, Any] | None = None


def _w(x: float) -> str:
    return f"{x:.2f}"


def merge_recipe(method: str, base: str, finetunes: Sequence[str], weight: float | None, *,
                 drop_rate: float = 0.3, dtype: str | None = None,
                 seed: int = 0) -> dict[str, Any]:
    """The MergeKit-style config of one merge candidate (``guardray merge`` runs it).

    Args:
        method: ``linear``, ``slerp``, ``dare_linear`` or ``model_stock``.
        base: the base model folder.
        finetunes: the fine-tune folders (one, or all seeds for Model Stock).
        weight: lambda (ignored by Model Stock).
        drop_rate: DARE's p.
        dtype: output dtype (None: as the inputs).
        seed: DARE's mask seed.
    """
    if method == "model_stock":
        if len(finetunes) < 2:
            raise ValueError("model_stock needs two or more fine-tunes")
        recipe: dict[str, Any] = {"merge_method": "model_stock", "base_model": base,
                                  "models": [{"model": f} for f in finetunes]}
    else:
        if len(finetunes) != 1 or weight is None:
            raise ValueError(f"{method} merges one fine-tune with a weight")
        (ft,) = finetunes
        if method == "linear":
            recipe = {"merge_method": "linear", "base_model": base,
                      "models": [{"model": base, "parameters": {"weight": 1.0 - weight}},
                                 {"model": ft, "parameters": {"weight": weight}}]}
        elif method == "slerp":
            recipe = {"merge_method": "slerp", "base_model": base, "models": [{"model": ft}],
                      "parameters": {"t": weight}}
        elif method == "dare_linear":
            recipe = {"merge_method": "dare_linear", "base_model": base,
                      "models": [{"model": ft, "parameters": {"weight": weight,
                                                              "drop_rate": drop_rate}}],
                      "parameters": {"lambda": 1.0, "normalize": False, "rescale": True},
                      "seed": seed}
        else:
            raise ValueError(f"unknown sweep method {method!r}; valid: linear, slerp, "
                             "dare_linear, model_stock")
    if dtype:
        recipe["dtype"] = dtype
    return recipe


def candidates(base: str, finetunes: Sequence[tuple[str, str]], *, methods: Sequence[str],
               weights: Sequence[float], drop_rate: float, which: str = "first",
               dtype: str | None = None, seed: int = 0) -> list[Candidate]:
    """Every model of the sweep, in report order: base, fine-tunes, merges by method.

    Args:
        base: the base folder.
        finetunes: ``(label, folder)`` of each fine-tune (``("seed42", ".../merged")``).
        methods, weights, drop_rate: the sweep (`SweepSection`).
        which: ``first``: the grid methods merge the first fine-tune; ``all``: every one.
        dtype, seed: recipe settings.
    """
    out = [Candidate("base", BASE, BASE, 0.0, (), path=base)]
    out += [Candidate(f"ft-{label}", FINETUNE, FINETUNE, 1.0, (label,), path=path)
            for label, path in finetunes]
    grid_fts = list(finetunes) if which == "all" else list(finetunes[:1])
    for method in methods:
        if method == "model_stock":
            out.append(Candidate(
                "model_stock", MERGE, method, None, tuple(label for label, _ in finetunes),
                recipe=merge_recipe(method, base, [p for _, p in finetunes], None,
                                    dtype=dtype)))
            continue
        for label, path in grid_fts:
            for w in weights:
                out.append(Candidate(
                    f"{method}-w{_w(w)}-{label}", MERGE, method, float(w), (label,),
                    recipe=merge_recipe(method, base, [path], w, drop_rate=drop_rate,
                                        dtype=dtype, seed=seed)))
    return out
