"""The merge methods by name: their parameters, input rules, per-tensor parameter resolution and
dispatch to the pure functions in `guardray.merge.methods`.

Importing this module does not import torch (the config loader uses it to validate names).

Parameters follow MergeKit's schema. A value is a scalar, a *gradient* (a list of numbers,
interpolated over the layer index ``t = layer / (num_layers - 1)``; tensors outside the layer
stack use ``t = 0``), or a list of ``{filter, value}`` conditions whose first ``filter`` that is
a substring of the tensor name (or ``"*"`` / missing) applies. A per-model value wins over the
top-level ``parameters``, which win over the default.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REQUIRED = object()


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a merge method.

    Attributes:
        name: key in YAML.
        kind: ``"float"``, ``"bool"`` or ``"choice"``.
        default: value when unset (``REQUIRED`` if it must be given).
        per_model: may be set per input model (else only at the top level).
        low / high: inclusive float range; ``low_open`` / ``high_open`` make an end exclusive.
        choices: valid values of a ``"choice"`` parameter.
        help: one line for error messages and docs.
    """

    name: str
    kind: str = "float"
    default: Any = REQUIRED
    per_model: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    help: str = ""

    def check(self, value: Any) -> Any:
        """Validate one scalar value; return it normalised, or raise ValueError."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                opts = ", ".join(repr(c) for c in self.choices)
                raise ValueError(f"{self.name} must be one of {opts}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name} must be a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{self.name} must be finite, got {value}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            bound = f"> {self.low}" if self.low_open else f">= {self.low}"
            raise ValueError(f"{self.name} must be {bound}, got {value}")
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            bound = f"< {self.high}" if self.high_open else f"<= {self.high}"
            raise ValueError(f"{self.name} must be {bound}, got {value}")
        return value


@dataclass(frozen=True)
class MethodSpec:
    """A merge method: how many inputs it takes and which parameters.

    Attributes:
        name: ``merge_method`` value.
        summary: one line.
        base: ``"required"`` or ``"optional"``.
        min_models / max_models: bounds on the number of merged (non-base) inputs; for methods
            whose base is optional (linear) the base counts as an input when given.
        params: every parameter (top-level and per-model).
        base_is_input: the base model takes part like any other input (linear).
    """

    name: str
    summary: str
    base: str
    min_models: int
    max_models: int | None
    params: tuple[ParamSpec, ...]
    base_is_input: bool = False
    aliases: tuple[str, ...] = field(default=())

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def model_param_names(self) -> list[str]:
        return [p.name for p in self.params if p.per_model]


_WEIGHT = ParamSpec("weight", default=1.0, per_model=True, help="mixing weight of the model")
# density 0 keeps no entry of a task vector: the model silently drops out of the merge (TIES),
# or DARE divides by 1 - p = 0. Both are refused when the config is read, gradients and
# filtered values included.
_DENSITY = ParamSpec(
    "density",
    default=1.0,
    per_model=True,
    low=0.0,
    low_open=True,
    high=1.0,
    help="TIES: fraction of task-vector entries kept (top-k% by magnitude, k = 100*density)",
)
_DARE_DENSITY = ParamSpec(
    "density",
    default=None,
    per_model=True,
    low=0.0,
    low_open=True,
    high=1.0,
    help="DARE: keep probability 1 - p (MergeKit's name); give density or drop_rate",
)
_DROP = ParamSpec(
    "drop_rate",
    default=None,
    per_model=True,
    low=0.0,
    high=1.0,
    high_open=True,
    help="DARE: drop rate p of eq. 5",
)
_LAMBDA = ParamSpec("lambda", default=1.0, help="scale of the merged task vector (eq. 1, 6)")
_SIGN_VOTE = ParamSpec(
    "sign_vote",
    kind="choice",
    default="unweighted",
    choices=("unweighted", "weighted"),
    help="TIES sign election on unweighted task vectors (paper eq. 2) or weighted (MergeKit)",
)
_INT8 = ParamSpec("int8_mask", kind="bool", default=False, help="accepted for MergeKit; no effect")


def _normalize(default: bool) -> ParamSpec:
    return ParamSpec("normalize", kind="bool", default=default, help="divide by the summed weights")


def _rescale(default: Any) -> ParamSpec:
    return ParamSpec(
        "rescale",
        kind="choice",
        default=default,
        choices=(True, False, "l1"),
        help="DARE: true = divide by 1-p (eq. 5), 'l1' = match the L1 norm (MergeKit)",
    )


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "linear",
            "weighted average / model soup (uniguard eq. 4, safeguard eq. 3)",
            base="optional",
            min_models=1,
            max_models=None,
            base_is_input=True,
            params=(_WEIGHT, _normalize(True)),
            aliases=("model_soup", "soup"),
        ),
        MethodSpec(
            "task_arithmetic",
            "base + lambda * sum_t w_t (theta_t - base)",
            base="required",
            min_models=1,
            max_models=None,
            params=(_WEIGHT, _LAMBDA, _normalize(False)),
        ),
        MethodSpec(
            "ties",
            "TIES: trim, elect sign, disjoint mean, scale (uniguard eq. 1-3)",
            base="required",
            min_models=1,
            max_models=None,
            params=(
                _WEIGHT,
                _DENSITY,
                _LAMBDA,
                _normalize(True),
                _SIGN_VOTE,
                _INT8,
                ParamSpec(
                    "rescale",
                    kind="choice",
                    default=False,
                    choices=(True, False, "l1"),
                    help="L1-rescale trimmed task vectors (MergeKit option)",
                ),
            ),
        ),
        MethodSpec(
            "dare_linear",
            "DARE drop and rescale, then task arithmetic (uniguard eq. 5-6)",
            base="required",
            min_models=1,
            max_models=None,
            params=(_WEIGHT, _DARE_DENSITY, _DROP, _LAMBDA, _normalize(False), _rescale(True)),
            aliases=("dare",),
        ),
        MethodSpec(
            "dare_ties",
            "DARE drop and rescale, then TIES sign election and disjoint merge",
            base="required",
            min_models=1,
            max_models=None,
            params=(
                _WEIGHT,
                _DARE_DENSITY,
                _DROP,
                _LAMBDA,
                _normalize(False),
                _rescale(True),
                _SIGN_VOTE,
                _INT8,
            ),
        ),
        MethodSpec(
            "slerp",
            "spherical interpolation of base (t=0) and one model (t=1) (uniguard eq. 7)",
            base="required",
            min_models=1,
            max_models=1,
            params=(
                ParamSpec("t", low=0.0, high=1.0, help="interpolation parameter"),
                ParamSpec(
                    "dot_threshold",
                    default=0.9995,
                    low=0.0,
                    high=1.0,
                    help="|cos| above which linear interpolation is used",
                ),
                ParamSpec("eps", default=1e-8, low=0.0, help="smallest norm treated as nonzero"),
            ),
        ),
        MethodSpec(
            "model_stock",
            "Model Stock: t from the mean pairwise cosine of task vectors",
            base="required",
            min_models=2,
            max_models=None,
            params=(
                ParamSpec(
                    "filter_wise",
                    kind="bool",
                    default=False,
                    help="one t per row instead of per tensor",
                ),
            ),
        ),
    )
}
ALIASES = {alias: spec.name for spec in METHODS.values() for alias in spec.aliases}


def method_names() -> list[str]:
    """Valid ``merge_method`` values, canonical names first, then aliases."""
    return sorted(METHODS) + sorted(ALIASES)


def get_method(name: str) -> MethodSpec:
    """The spec of ``name`` (an alias is accepted); KeyError lists the valid names."""
    spec = METHODS.get(ALIASES.get(name, name))
    if spec is None:
        raise KeyError(f"unknown merge_method {name!r}; valid: {', '.join(method_names())}")
    return spec


# --------------------------------------------------------------------------- settings


def validate_setting(spec: ParamSpec, setting: Any) -> None:
    """Check a YAML setting (scalar, gradient or filter list) against ``spec``; ValueError."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, list):
        if not setting:
            raise ValueError(f"{spec.name}: empty list")
        if all(isinstance(item, dict) for item in setting):
            for item in setting:
                unknown = set(item) - {"filter", "value"}
                if unknown or "value" not in item:
                    raise ValueError(
                        f"{spec.name}: each condition needs 'value' and an optional 'filter' "
                        f"(got keys {sorted(item)})"
                    )
                if item.get("filter") is not None and not isinstance(item["filter"], str):
                    raise ValueError(
                        f"{spec.name}: filter must be a string, got {item['filter']!r}"
                    )
                validate_setting(spec, item["value"])
            return
        if any(isinstance(item, dict | list) for item in setting):
            raise ValueError(f"{spec.name}: a list must be all numbers or all {{filter, value}}")
        for item in setting:
            spec.check(item)
        if spec.kind == "float" and len(setting) < 2:
            raise ValueError(f"{spec.name}: a gradient needs at least 2 values")
        return
    spec.check(setting)


def evaluate_setting(setting: Any, tensor_name: str, t: float) -> Any:
    """The value of a (validated) setting for one tensor; None if no condition matches."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, list):
        if all(isinstance(item, dict) for item in setting):
            for item in setting:
                flt = item.get("filter")
                if flt is None or flt == "*" or flt in tensor_name:
                    return evaluate_setting(item["value"], tensor_name, t)
            return None
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in setting):
            scaled = t * (len(setting) - 1)
            i0 = min(int(scaled), len(setting) - 1)
            i1 = min(len(setting) - 1, i0 + 1)
            frac = scaled - i0
            return (1 - frac) * setting[i0] + frac * setting[i1]
        return setting[int(t * (len(setting) - 1))]
    return setting


_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")


def layer_index(tensor_name: str) -> int | None:
    """The transformer layer a tensor belongs to (``model.layers.3.mlp...`` -> 3), if any."""
    match = _LAYER_RE.search(tensor_name)
    return int(match.group(1)) if match else None


def layer_t(tensor_name: str, num_layers: int) -> float:
    """Gradient position of a tensor, as MergeKit computes it: ``layer / (num_layers - 1)``."""
    index = layer_index(tensor_name)
    if index is None:
        return 0.0
    return index / (num_layers - 1) if num_layers > 1 else 1.0


def resolve(
    spec: MethodSpec,
    tensor_name: str,
    t: float,
    global_settings: Mapping[str, Any],
    model_settings: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Resolve every parameter for one tensor.

    Returns:
        ``(shared, per_model)``: top-level parameters, and one dict of per-model parameters
        for each entry of ``model_settings`` (the merged inputs, in order).
    """

    def pick(p: ParamSpec, scopes: Sequence[Mapping[str, Any]], where: str) -> Any:
        for scope in scopes:
            if p.name in scope:
                value = evaluate_setting(scope[p.name], tensor_name, t)
                if value is not None:
                    return p.check(value)
        if p.default is REQUIRED:
            raise ValueError(f"missing required parameter {p.name!r} for {where}{tensor_name}")
        return p.default

    shared = {p.name: pick(p, [global_settings], "") for p in spec.params if not p.per_model}
    per_model = [
        {p.name: pick(p, [ms, global_settings], f"model {i}: ") for p in spec.params if p.per_model}
        for i, ms in enumerate(model_settings)
    ]
    return shared, per_model


# --------------------------------------------------------------------------- dispatch


def tensor_seed(seed: int, tensor_name: str, model_index: int) -> int:
    """Seed of the DARE mask of one model's tensor: a hash of (seed, name, model index).

    Masks therefore do not depend on the order tensors are processed in, nor on which other
    tensors exist, so the streaming executor and the in-memory API give identical results.
    """
    digest = hashlib.blake2b(f"{seed}\0{tensor_name}\0{model_index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


def _drop_rate(params: Mapping[str, Any], model_index: int) -> float:
    density, drop = params.get("density"), params.get("drop_rate")
    if density is not None and drop is not None:
        raise ValueError(f"model {model_index}: give density or drop_rate, not both")
    if drop is not None:
        return drop
    if density is None:
        return 0.0
    if density <= 0:
        raise ValueError(f"model {model_index}: DARE density must be > 0 (p = 1 - density < 1)")
    return 1.0 - density


@dataclass(frozen=True)
class MergeCall:
    """One tensor's merge: the arguments `apply_method` passes to a method's implementation."""

    base: Any
    tensors: Sequence[Any]
    weights: list[float]
    shared: Mapping[str, Any]
    per_model: Sequence[Mapping[str, Any]]
    tensor_name: str
    seed: int
    consume: bool


def _m():
    from guardray.merge import methods  # torch: imported when a tensor is merged

    return methods


def _linear(c: MergeCall) -> Any:
    return _m().linear(c.tensors, c.weights, normalize=c.shared["normalize"], consume=c.consume)


def _task_arithmetic(c: MergeCall) -> Any:
    return _m().task_arithmetic(c.base, c.tensors, c.weights, lam=c.shared["lambda"],
                                normalize=c.shared["normalize"], consume=c.consume)


def _ties(c: MergeCall) -> Any:
    return _m().ties(c.base, c.tensors, c.weights, [p["density"] for p in c.per_model],
                     lam=c.shared["lambda"], normalize=c.shared["normalize"],
                     sign_vote=c.shared["sign_vote"], rescale=c.shared["rescale"],
                     consume=c.consume)


def _dare_args(c: MergeCall) -> tuple[list[float], list[Any], dict[str, Any]]:
    """Drop rates, one seeded generator per input (eq. 5's masks), and the shared keywords."""
    import torch

    drops = [_drop_rate(p, i) for i, p in enumerate(c.per_model)]
    gens = []
    for i, t in enumerate(c.tensors):
        g = torch.Generator(device=t.device)
        g.manual_seed(tensor_seed(c.seed, c.tensor_name, i))
        gens.append(g)
    common = dict(lam=c.shared["lambda"], normalize=c.shared["normalize"],
                  rescale=c.shared["rescale"], consume=c.consume)
    return drops, gens, common


def _dare_linear(c: MergeCall) -> Any:
    drops, gens, common = _dare_args(c)
    return _m().dare_linear(c.base, c.tensors, c.weights, drops, gens, **common)


def _dare_ties(c: MergeCall) -> Any:
    drops, gens, common = _dare_args(c)
    return _m().dare_ties(c.base, c.tensors, c.weights, drops, gens,
                          sign_vote=c.shared["sign_vote"], **common)


def _slerp(c: MergeCall) -> Any:
    return _m().slerp(c.base, c.tensors[0], c.shared["t"],
                      dot_threshold=c.shared["dot_threshold"], eps=c.shared["eps"])


def _model_stock(c: MergeCall) -> Any:
    return _m().model_stock(c.base, c.tensors, filter_wise=c.shared["filter_wise"])


# merge_method -> its implementation (every `METHODS` entry has one; a test checks it)
IMPLEMENTATIONS: dict[str, Callable[[MergeCall], Any]] = {
    "linear": _linear,
    "task_arithmetic": _task_arithmetic,
    "ties": _ties,
    "dare_linear": _dare_linear,
    "dare_ties": _dare_ties,
    "slerp": _slerp,
    "model_stock": _model_stock,
}


def apply_method(
    spec: MethodSpec,
    base: Any,
    tensors: Sequence[Any],
    shared: Mapping[str, Any],
    per_model: Sequence[Mapping[str, Any]],
    *,
    tensor_name: str = "",
    seed: int = 0,
    consume: bool = False,
) -> Any:
    """Merge one tensor with ``spec``'s method (looked up in `IMPLEMENTATIONS`).

    Args:
        spec: the method.
        base: base tensor (None for linear without a base input).
        tensors: the merged inputs (for linear: every input, base included if it is one).
        shared / per_model: output of `resolve`.
        tensor_name: used to seed DARE.
        seed: global seed for DARE.
        consume: the function may overwrite ``tensors``.
    """
    weights = [p["weight"] for p in per_model] if per_model and "weight" in per_model[0] else []
    call = MergeCall(base, tensors, weights, shared, per_model, tensor_name, seed, consume)
    return IMPLEMENTATIONS[spec.name](call)
