"""Weights of the pool: read once in the driver, carried to trials through the object store,
merged in memory.

The driver reads every candidate's safetensors and the base's weights once (`load_weights`)
and turns them into numpy arrays (`WeightsPayload`): Ray stores numpy arrays out of band, so
every trial on a node maps the same bytes read-only instead of unpickling a copy. A trial
rebuilds torch views (`WeightsPayload.torch_state_dicts`, no copy) and merges them with
`guardray.merge.merge_state_dicts`, which never writes into its inputs.

The object store holds the base and the fine-tuned weights rather than the task vectors
``tau_i = theta_i - theta_0``: the merge library takes models and a base (and computes the
task vectors tensor by tensor), and storing ``tau_i`` would add a rounding step that the
exported ``guardray merge`` recipe could not reproduce bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from guardray.search.pool import Pool, PoolError
from guardray.search.recipe import BASE, merge_plan
from guardray.search.space import Point

log = logging.getLogger(__name__)


@dataclasses.dataclass
class WeightsPayload:
    """Numpy weights of the base and the ranked candidates (what goes into ``ray.put``).

    Attributes:
        names: tensor names, in file order.
        base: ``{name: array}`` of the base (zeros where the base lacks the tensor).
        models: one ``{name: array}`` per candidate, ranked.
        dtypes: torch dtype names per tensor (bfloat16 is carried as its uint16 bits).
        config: the reference ``config.json`` (to build the model skeleton in a trial).
        zero_base: tensors the base lacks, which took a zero base.
    """

    names: list[str]
    base: dict[str, np.ndarray]
    models: list[dict[str, np.ndarray]]
    dtypes: dict[str, str]
    config: dict[str, Any]
    zero_base: list[str]

    def torch_state_dicts(self) -> tuple[dict, list[dict]]:
        """``(base, [candidate])`` as torch tensors sharing the arrays' memory."""
        return (_to_torch(self.base, self.dtypes),
                [_to_torch(m, self.dtypes) for m in self.models])

    def nbytes(self) -> int:
        return sum(a.nbytes for sd in [self.base, *self.models] for a in sd.values())


def read_safetensors(folder: str) -> dict[str, Any]:
    """Every tensor of a checkpoint folder (``model.safetensors`` or a sharded index)."""
    from safetensors.torch import load_file

    path = Path(folder)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise PoolError(f"{folder}: no model.safetensors (guardray reads safetensors only)")
    out: dict[str, Any] = {}
    for f in files:
        out.update(load_file(str(path / f)))
    return out


def load_base(pool: Pool, names: list[str], shapes: dict[str, tuple]) -> tuple[dict, list[str]]:
    """The base's tensors under the candidates' names.

    The base folder is loaded as the candidates' classifier class, so a plain encoder maps onto
    the classifier's names; tensors it does not have (a head created at fine-tuning) are zeros.

    Raises:
        PoolError: shapes that differ from the candidates'.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(**{k: v for k, v in pool.config.items()
                                     if k not in ("transformers_version",)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = AutoModelForSequenceClassification.from_pretrained(
            pool.base_path, config=config, use_safetensors=True, ignore_mismatched_sizes=True,
            output_loading_info=True)
    fresh = set(info.get("missing_keys") or []) | {k[0] if isinstance(k, tuple) else k
                                                   for k in info.get("mismatched_keys") or []}
    state = model.state_dict()
    base, zero = {}, []
    for name in names:
        if name not in state or name in fresh:
            base[name] = torch.zeros(shapes[name], dtype=torch.float32)
            zero.append(name)
            continue
        tensor = state[name].detach().clone()
        if tuple(tensor.shape) != tuple(shapes[name]):
            raise PoolError(f"base {pool.base_ref}: tensor {name!r} has shape "
                            f"{list(tensor.shape)} but the candidates have {list(shapes[name])}")
        base[name] = tensor
    if zero:
        log.info("base %s lacks %d tensor(s) of the candidates (e.g. %s): zero base for them",
                 pool.base_ref, len(zero), zero[:3])
    return base, zero


def load_weights(pool: Pool) -> WeightsPayload:
    """Read the pool's weights once (driver side).

    Raises:
        PoolError: candidates with different tensor names or shapes.
    """
    models = [read_safetensors(c.path) for c in pool.candidates]
    names = list(models[0])
    ref = pool.candidates[0]
    for c, sd in zip(pool.candidates[1:], models[1:]):
        if set(sd) != set(names):
            diff = sorted(set(sd) ^ set(names))[:5]
            raise PoolError(f"{c.name} and {ref.name} have different tensors, e.g. {diff}")
        for n in names:
            if tuple(sd[n].shape) != tuple(models[0][n].shape):
                raise PoolError(f"tensor {n!r}: shape {list(sd[n].shape)} in {c.name} but "
                                f"{list(models[0][n].shape)} in {ref.name}")
    shapes = {n: tuple(models[0][n].shape) for n in names}
    base, zero = load_base(pool, names, shapes)
    dtypes = {n: str(models[0][n].dtype).removeprefix("torch.") for n in names}
    base = {n: base[n].to(models[0][n].dtype) for n in names}
    return WeightsPayload(names, _to_numpy(base), [_to_numpy(sd) for sd in models], dtypes,
                          dict(pool.config), zero)


def _to_numpy(sd: dict) -> dict[str, np.ndarray]:
    import torch

    out = {}
    for name, t in sd.items():
        t = t.detach().contiguous()
        out[name] = (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy()
    return out


def _to_torch(arrays: dict[str, np.ndarray], dtypes: dict[str, str]) -> dict:
    import torch

    out = {}
    with warnings.catch_warnings():
        # Arrays from the object store are read-only; the merge never writes into its inputs.
        warnings.simplefilter("ignore", UserWarning)
        for name, a in arrays.items():
            t = torch.from_numpy(a)
            out[name] = t.view(torch.bfloat16) if dtypes[name] == "bfloat16" else t
    return out


def merge_point(point: Point, base: dict, models: list[dict], *, merge_seed: int = 0,
                num_threads: int | None = 1) -> dict:
    """Merge the candidates as ``point`` says, in memory (`guardray.merge.merge_state_dicts`).

    Args:
        point: a point of Ω.
        base: the base state dict (torch).
        models: the ranked candidates' state dicts (torch).
        merge_seed: DARE seed.
        num_threads: torch threads for the merge math (1, as `guardray merge`'s default: the
            merge is memory-bound, and on a busy 2-core machine more threads spin-wait; TIES
            took 16 s with 2 threads vs 1 s with one, measured).

    Returns:
        The merged state dict.
    """
    from guardray.merge import merge_state_dicts

    plan = merge_plan(point)
    plan_base = plan["base"]
    base_sd = base if plan_base == BASE else (None if plan_base is None else models[plan_base])
    return merge_state_dicts(
        plan["method"], [models[i] for i in plan["models"]], base=base_sd,
        weights=plan["weights"], parameters=plan["parameters"],
        model_parameters=plan["model_parameters"], seed=merge_seed, num_threads=num_threads)


def build_model(config: dict[str, Any], state_dict: dict):
    """A sequence classifier from a ``config.json`` dict, holding ``state_dict``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model(**{k: v for k, v in config.items()
                                  if k not in ("transformers_version",)})
    model = AutoModelForSequenceClassification.from_config(cfg)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if unexpected or missing:
        raise PoolError(f"merged weights do not fit {cfg.model_type}: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}")
    return model.eval()
