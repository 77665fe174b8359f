"""Merging state dicts already in memory (the merge search calls this in-process).

The same validation, parameter resolution and per-tensor methods as the streaming executor are
used, so an in-memory merge equals the on-disk merge of the same models and config (DARE masks
included: they are seeded per tensor name and model position, not by processing order).
Input tensors are never modified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from guardray.merge.checkpoint import StateDictSource
from guardray.merge.config import DTYPES, MergeConfig, ModelEntry, validate_merge_config
from guardray.merge.engine import (
    MergeJob,
    check_compatible,
    iter_merged,
    torch_threads,
)
from guardray.merge.registry import layer_index
from guardray.modeling.training import resolve_device

StateDict = Mapping[str, torch.Tensor]


def merge_with_config(
    cfg: MergeConfig,
    state_dicts: Mapping[str, StateDict],
    *,
    num_layers: int | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``cfg`` on state dicts in memory, keyed by the model names used in ``cfg``.

    Args:
        cfg: merge config; its ``models[*].model`` and ``base_model`` are keys of
            ``state_dicts``.
        state_dicts: ``{model name: state dict}``.
        num_layers: layer count for gradient parameters (default: from the tensor names).
        progress: show a progress bar.

    Returns:
        The merged state dict (new tensors, on ``cfg.device``).

    Raises:
        ConfigError: invalid config or a model name without a state dict.
        MergeError: tensors that do not fit together, NaN/Inf.
    """
    from guardray.config import ConfigError

    validate_merge_config(cfg)
    base_ref, entries = cfg.inputs()
    refs = ([base_ref] if base_ref else []) + [e.model for e in entries]
    missing = [r for r in refs if r not in state_dicts]
    if missing:
        raise ConfigError(f"no state dict given for model(s) {missing}; have {sorted(state_dicts)}")
    sources = {r: StateDictSource(dict(state_dicts[r]), r) for r in refs}
    out_name = cfg.out_torch_dtype_name()
    job = MergeJob(
        spec=cfg.method,
        inputs=[sources[e.model] for e in entries],
        input_settings=[e.parameters or {} for e in entries],
        global_settings=cfg.parameters or {},
        base=sources[base_ref] if base_ref else None,
        seed=cfg.seed,
        device=resolve_device(cfg.device),
        out_dtype=getattr(torch, out_name) if out_name else None,
    )
    names = check_compatible(job)
    if num_layers is None:
        indices = [i for i in (layer_index(n) for n in names) if i is not None]
        num_layers = max(indices) + 1 if indices else 1
    job.num_layers = num_layers
    with torch_threads(cfg.num_threads):
        merged = iter_merged(job, names, progress=progress, prefetch=False, desc="merging (memory)")
        return dict(merged)


def merge_state_dicts(
    method: str,
    models: Sequence[StateDict],
    *,
    base: StateDict | None = None,
    weights: Sequence[float] | None = None,
    parameters: Mapping[str, Any] | None = None,
    model_parameters: Sequence[Mapping[str, Any]] | None = None,
    seed: int = 0,
    dtype: str | torch.dtype | None = None,
    device: str = "cpu",
    num_layers: int | None = None,
    num_threads: int | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Merge state dicts with a named method.

    Example:
        ``merge_state_dicts("ties", [sd_a, sd_b], base=sd_0, weights=[0.7, 0.3],
        parameters={"lambda": 1.0}, model_parameters=[{"density": 0.5}] * 2)``

    Args:
        method: a ``merge_method`` name (``linear``, ``task_arithmetic``, ``ties``,
            ``dare_linear``, ``dare_ties``, ``slerp``, ``model_stock``).
        models: the fine-tuned state dicts (for ``linear``: all inputs).
        base: the base state dict (required by every method but ``linear``; for ``linear`` a
            given base is an extra input, as in MergeKit).
        weights: one weight per model (shorthand for ``model_parameters[i]["weight"]``).
        parameters: top-level parameters (``lambda``, ``t``, ``normalize``, ...).
        model_parameters: per-model parameters (``weight``, ``density``, ``drop_rate``).
        seed: DARE seed.
        dtype: output dtype of floating tensors (default: as the inputs).
        device: ``cpu``, ``cuda`` or ``auto``.
        num_layers: layer count for gradient parameters.
        num_threads: torch CPU threads during the merge (None: leave the caller's setting).
        progress: show a progress bar.

    Returns:
        The merged state dict.
    """
    n = len(models)
    per_model = [dict(p) for p in (model_parameters or [{} for _ in range(n)])]
    if len(per_model) != n or (weights is not None and len(weights) != n):
        raise ValueError(
            f"{n} models but {len(per_model)} model_parameters / "
            f"{None if weights is None else len(weights)} weights"
        )
    if weights is not None:
        for p, w in zip(per_model, weights):
            p["weight"] = float(w)
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    names = [f"model_{i}" for i in range(n)]
    cfg = MergeConfig(
        merge_method=method,
        base_model="base" if base is not None else None,
        models=[ModelEntry(model=name, parameters=p or None) for name, p in zip(names, per_model)],
        parameters=dict(parameters) if parameters else None,
        dtype=dtype,
        seed=seed,
        device=device,
        num_threads=num_threads,
    )
    dicts = dict(zip(names, models))
    if base is not None:
        dicts["base"] = base
    return merge_with_config(cfg, dicts, num_layers=num_layers, progress=progress)
