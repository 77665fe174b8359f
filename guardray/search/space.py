"""The merge search space Ω of UniGuard (appendix A.5, A.5.1, A.5.2), as pure numpy.

A point of Ω is ``(members, w, method, params, instruction)``:

- ``members``: which of the top-k candidates take part (indices into the pool ranked by
  validation F1, best first), at least ``min_models`` and at most ``max_models`` of them;
- ``w``: their weights on the simplex (``w_j >= 0``, ``sum_j w_j = 1``; eq. 4's alpha);
- ``method``: a merge method of `guardray.merge` and its parameters: ``linear`` (Model Soup,
  eq. 4), ``task_arithmetic`` (lambda), ``ties`` (density, lambda; eq. 1-3), ``dare_linear`` /
  ``dare_ties`` (drop rate p, lambda; eq. 5-6), ``slerp`` (eq. 7; exactly two members, the
  interpolation parameter is the second member's weight, ``t = w_2``);
- ``instruction``: which instruction an instruction-input model sees at inference (A.5.1),
  an index into the options the pool offers (0 when the models take plain text).

The T = 1 seed point (appendix A.5, "Model Soup Averaging") is the soup of the top-k models
with weights proportional to their validation F1.

Nothing here imports Ray, torch or reads files: randomness comes in as a
``numpy.random.Generator``; points convert to and from JSON-able dicts (Tune configs, searcher
state) without pickling.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Merge methods the search may pick, and the parameters each one takes from the point.
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "linear": (),
    "task_arithmetic": ("lambda",),
    "ties": ("density", "lambda"),
    "dare_linear": ("drop_rate", "lambda"),
    "dare_ties": ("drop_rate", "lambda"),
    "slerp": (),
}
METHODS: tuple[str, ...] = tuple(METHOD_PARAMS)
PARAMS: tuple[str, ...] = ("density", "lambda", "drop_rate")
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "density": (0.1, 1.0),  # TIES: fraction of each task vector kept (k% = 100 * density)
    "lambda": (0.5, 1.5),  # scale of the merged task vector (eq. 1, 6)
    "drop_rate": (0.0, 0.9),  # DARE: p of eq. 5
}
# The value a merge without the parameter behaves as if it had: a soup of weights on the
# simplex is task arithmetic at lambda = 1, which keeps every entry (TIES density 1) and drops
# none (DARE p = 0). `SearchSpace.features` encodes a missing parameter with it.
NEUTRAL_PARAMS: dict[str, float] = {"density": 1.0, "lambda": 1.0, "drop_rate": 0.0}


class SpaceError(ValueError):
    """A search space or point that cannot exist; the message names the value and the options."""


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of Ω.

    Attributes:
        members: sorted indices of the merged candidates (0 = best validation F1).
        weights: one weight per member, on the simplex.
        method: a key of `METHOD_PARAMS`.
        params: the method's parameters (names from `METHOD_PARAMS[method]`).
        instruction: index of the instruction option (0 for plain-text models).
    """

    members: tuple[int, ...]
    weights: tuple[float, ...]
    method: str
    params: tuple[tuple[str, float], ...] = ()
    instruction: int = 0

    @property
    def param_dict(self) -> dict[str, float]:
        return dict(self.params)

    def key(self, digits: int = 3) -> tuple:
        """A hashable identity, rounded, to recognise (near-)repeats of a point."""
        return (self.members, tuple(round(w, digits) for w in self.weights), self.method,
                tuple((k, round(v, digits)) for k, v in self.params), self.instruction)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (`from_dict` inverts it exactly)."""
        return {"members": list(self.members), "weights": list(self.weights),
                "method": self.method, "params": dict(self.params),
                "instruction": self.instruction}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Point:
        return cls(tuple(int(m) for m in data["members"]),
                   tuple(float(w) for w in data["weights"]), str(data["method"]),
                   tuple(sorted((str(k), float(v)) for k, v in dict(data["params"]).items())),
                   int(data.get("instruction", 0)))


class SearchSpace:
    """Ω over ``k`` ranked candidates.

    Args:
        f1: (k,) validation F1 of the candidates, best first (the seed point's weights).
        methods: merge methods to search over (keys of `METHOD_PARAMS`).
        n_instructions: instruction options (1: the models take plain text, or one option).
        min_models / max_models: bounds on the number of members (clipped to k).
        ranges: ``{param: (low, high)}`` for ``density``, ``lambda``, ``drop_rate``.

    Raises:
        SpaceError: unknown method, bad bounds or ranges, or no valid point at all.
    """

    def __init__(self, f1: Sequence[float], methods: Sequence[str] = ("linear", "ties"),
                 n_instructions: int = 1, min_models: int = 2, max_models: int | None = None,
                 ranges: Mapping[str, Sequence[float]] | None = None):
        self.f1 = np.asarray(f1, dtype=np.float64)
        self.k = int(self.f1.size)
        if self.k < 1:
            raise SpaceError("the search needs at least one candidate model")
        unknown = [m for m in methods if m not in METHOD_PARAMS]
        if unknown or not methods:
            raise SpaceError(f"unknown merge method(s) {unknown or list(methods)}; valid: "
                             f"{', '.join(METHODS)}")
        self.methods = tuple(dict.fromkeys(methods))
        if n_instructions < 1:
            raise SpaceError(f"n_instructions must be >= 1, got {n_instructions}")
        self.n_instructions = int(n_instructions)
        self.max_models = min(self.k, max_models or self.k)
        self.min_models = max(1, min(min_models, self.max_models))
        self.ranges = {**DEFAULT_RANGES, **{k: tuple(map(float, v))
                                            for k, v in (ranges or {}).items()}}
        for name, (lo, hi) in self.ranges.items():
            if name not in PARAMS:
                raise SpaceError(f"unknown parameter range {name!r}; valid: {', '.join(PARAMS)}")
            if not lo <= hi:
                raise SpaceError(f"range of {name}: low {lo} > high {hi}")
        self.subsets = [s for n in range(self.min_models, self.max_models + 1)
                        for s in itertools.combinations(range(self.k), n)]
        if not any(self.valid_methods(len(s)) for s in self.subsets):
            raise SpaceError(f"no subset of {self.k} candidate(s) fits methods "
                             f"{list(self.methods)} (slerp merges exactly two models)")
        self.subsets = [s for s in self.subsets if self.valid_methods(len(s))]

    # ----------------------------------------------------------------------- description

    def describe(self) -> dict[str, Any]:
        """JSON-able arguments that rebuild this space (`from_description`)."""
        return {"f1": self.f1.tolist(), "methods": list(self.methods),
                "n_instructions": self.n_instructions, "min_models": self.min_models,
                "max_models": self.max_models,
                "ranges": {k: list(v) for k, v in self.ranges.items()}}

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> SearchSpace:
        return cls(**data)

    def valid_methods(self, n_members: int) -> tuple[str, ...]:
        """Methods that can merge ``n_members`` models (slerp: exactly two)."""
        return tuple(m for m in self.methods if m != "slerp" or n_members == 2)

    def default_params(self, method: str) -> tuple[tuple[str, float], ...]:
        """Mid-range values of the method's parameters."""
        return tuple(sorted((p, sum(self.ranges[p]) / 2) for p in METHOD_PARAMS[method]))

    # ----------------------------------------------------------------------- sampling

    def seed_point(self) -> Point:
        """The T = 1 point: Model Soup of the top ``max_models`` with weights ∝ F1 (A.5)."""
        members = tuple(range(self.max_models))
        f1 = np.clip(self.f1[list(members)], 1e-6, None)
        method = next((m for m in ("linear", "task_arithmetic", "ties")
                       if m in self.valid_methods(len(members))),
                      self.valid_methods(len(members))[0] if self.valid_methods(len(members))
                      else None)
        if method is None:  # e.g. only slerp allowed and max_models > 2
            members = (0, 1)
            f1 = np.clip(self.f1[[0, 1]], 1e-6, None)
            method = self.valid_methods(2)[0]
        return Point(members, tuple((f1 / f1.sum()).tolist()), method,
                     self.default_params(method), 0)

    def sample(self, rng: np.random.Generator) -> Point:
        """A uniform draw from Ω (eq. 8).

        The subset is uniform over the allowed subsets, ``w ~ Dirichlet(1, ..., 1)`` (uniform
        on the simplex), the method uniform over those valid for the subset size, each
        parameter uniform in its range, the instruction uniform over the options.
        """
        members = self.subsets[int(rng.integers(len(self.subsets)))]
        weights = _simplex(rng.dirichlet(np.ones(len(members))))
        methods = self.valid_methods(len(members))
        method = methods[int(rng.integers(len(methods)))]
        params = tuple(sorted((p, float(rng.uniform(*self.ranges[p])))
                              for p in METHOD_PARAMS[method]))
        return Point(tuple(members), tuple(weights.tolist()), method, params,
                     int(rng.integers(self.n_instructions)))

    def perturb(self, point: Point, rng: np.random.Generator, scale: float = 0.1) -> Point:
        """A point near ``point`` (the local moves of epsilon-greedy and Thompson sampling).

        Weights move by a Dirichlet draw centred on them (concentration ``1/scale`` per unit
        of weight: smaller ``scale``, smaller steps); with probability ``scale`` a member is
        added or dropped, the method or the instruction changes; parameters get Gaussian
        noise of ``scale`` times their range, clipped to it.
        """
        full = self.full_weights(point)
        members = set(point.members)
        if rng.random() < scale:
            others = [j for j in range(self.k) if j not in members]
            can_add = others and len(members) < self.max_models
            can_drop = len(members) > self.min_models
            if can_add and (not can_drop or rng.random() < 0.5):
                j = others[int(rng.integers(len(others)))]
                members.add(j)
                full[j] = 1.0 / (len(members) + 1)
            elif can_drop:
                j = sorted(members)[int(rng.integers(len(members)))]
                members.discard(j)
                full[j] = 0.0
        idx = sorted(members)
        w = full[idx] / max(full[idx].sum(), 1e-12)
        w = _simplex(rng.dirichlet(np.maximum(w / max(scale, 1e-3), 1e-2) + 1e-2))
        method = point.method
        valid = self.valid_methods(len(idx))
        if method not in valid or rng.random() < scale:
            method = valid[int(rng.integers(len(valid)))]
        old = point.param_dict
        params = []
        for p in METHOD_PARAMS[method]:
            lo, hi = self.ranges[p]
            v = old.get(p, float(rng.uniform(lo, hi)))
            params.append((p, float(np.clip(v + rng.normal(0, scale * (hi - lo)), lo, hi))))
        instruction = point.instruction
        if self.n_instructions > 1 and rng.random() < scale:
            instruction = int(rng.integers(self.n_instructions))
        return Point(tuple(idx), tuple(w.tolist()), method, tuple(sorted(params)), instruction)

    def neighbours(self, point: Point) -> list[Point]:
        """The discrete one-step neighbours of ``point``: the moves a weight perturbation
        cannot make (the local candidates of Thompson sampling).

        - one member added (weight ``1 / (n + 1)``, the others scaled by ``n / (n + 1)``),
          dropped (the rest renormalised) or swapped for a non-member (which takes its weight);
        - the same members and weights under each other valid merge method (shared parameters
          kept, the others mid-range).

        Every neighbour is a valid point of Ω (member bounds, slerp on two members); a method
        that no longer fits the new member count is replaced by the first valid one.
        """
        members = list(point.members)
        full = self.full_weights(point)
        n = len(members)
        others = [j for j in range(self.k) if j not in members]
        added: list[tuple[list[int], np.ndarray]] = []
        if n < self.max_models:
            for j in others:
                w = full * n / (n + 1)
                w[j] = 1.0 / (n + 1)
                added.append((sorted([*members, j]), w))
        swapped: list[tuple[list[int], np.ndarray]] = []
        for i in members:
            for j in others:
                w = full.copy()
                w[j], w[i] = w[i], 0.0
                swapped.append((sorted([m for m in members if m != i] + [j]), w))
        out = (self._subsets_of(point, added) + self.drop_one(point)[::-1]
               + self._subsets_of(point, swapped))
        for method in self.valid_methods(n):
            if method != point.method:
                out.append(self._with_method(point, point.members, full[members], method))
        return out

    def drop_one(self, point: Point) -> list[Point]:
        """``point`` without one of its members (the rest renormalised, the same method where
        it still fits), for each member from the last (weakest) to the first; empty when
        ``point`` has ``min_models`` members."""
        if len(point.members) <= self.min_models:
            return []
        full = self.full_weights(point)
        return self._subsets_of(point, [([m for m in point.members if m != i], full)
                                        for i in reversed(point.members)])

    def scale_ends(self, point: Point) -> list[Point]:
        """``point``'s members and weights with the merged task vector scaled by the ends of the
        ``lambda`` range (eq. 1, 6: ``theta = theta_0 + lambda * tau_m``), the high end first.

        A method with ``lambda`` keeps its other parameters; a ``linear`` soup becomes
        ``task_arithmetic`` (the soup of weights on the simplex is task arithmetic at
        ``lambda = 1``, so these two points vary the soup's one missing factor, its scale).
        An end equal to the point's own lambda (1 for the soup) is left out; empty when
        neither applies (``slerp``, or ``linear`` without ``task_arithmetic`` in the space)
        or the range is a single value.
        """
        lo, hi = self.ranges["lambda"]
        if "lambda" in METHOD_PARAMS[point.method]:
            method = point.method
        elif point.method == "linear" and "task_arithmetic" in self.valid_methods(
                len(point.members)):
            method = "task_arithmetic"
        else:
            return []
        if hi <= lo:
            return []
        own = point.param_dict.get("lambda", NEUTRAL_PARAMS["lambda"])
        out = []
        for value in (v for v in (hi, lo) if not math.isclose(v, own)):
            scaled = dataclasses.replace(
                point, params=tuple(sorted({**point.param_dict, "lambda": float(value)}.items())))
            out.append(self._with_method(scaled, point.members, np.asarray(point.weights),
                                         method))
        return out

    def _subsets_of(self, point: Point, subsets: Sequence[tuple[Sequence[int], np.ndarray]]
                    ) -> list[Point]:
        """``point`` on each ``(members, full (k,) weights)`` of ``subsets``, with its method
        where the member count allows it, else the first valid one; a member count no method
        takes is skipped."""
        out = []
        for idx, w in subsets:
            idx = tuple(idx)
            valid = self.valid_methods(len(idx))
            if valid:
                method = point.method if point.method in valid else valid[0]
                out.append(self._with_method(point, idx, w[list(idx)], method))
        return out

    def _with_method(self, point: Point, members: tuple[int, ...], weights: np.ndarray,
                     method: str) -> Point:
        """``point`` with other members / weights / method; its parameters kept where the
        method has them, mid-range otherwise."""
        old = point.param_dict
        params = tuple(sorted((p, float(old.get(p, sum(self.ranges[p]) / 2)))
                              for p in METHOD_PARAMS[method]))
        w = _simplex(np.asarray(weights, dtype=np.float64))
        return Point(tuple(members), tuple(w.tolist()), method, params, point.instruction)

    # ----------------------------------------------------------------------- encodings

    def full_weights(self, point: Point) -> np.ndarray:
        """(k,) weights with zeros for the candidates that do not take part."""
        full = np.zeros(self.k)
        full[list(point.members)] = point.weights
        return full

    @property
    def n_features(self) -> int:
        return self.k + len(self.methods) + len(PARAMS) + self.n_instructions

    def features(self, point: Point) -> np.ndarray:
        """(d,) featurisation for surrogate models, every entry in [0, 1].

        ``[w_1..w_k (0 when not a member) | method one-hot | density, lambda, drop_rate scaled
        to [0, 1] within their ranges | instruction one-hot]`` with
        ``d = k + |methods| + 3 + n_instructions``.

        Equal merges get equal features: a ``linear`` soup takes ``task_arithmetic``'s
        one-hot entry when the space has that method (the soup is task arithmetic at
        lambda = 1), and a parameter the method lacks takes its `NEUTRAL_PARAMS` value
        (clipped into the range), so the soup sits at lambda = 1 between task arithmetic's
        lambda_min and lambda_max, not at lambda_min. With the scale screening this is what
        lets the surrogate see the scale's trend (docs/BENCHMARKS.md, "Scale screening").
        """
        z = np.zeros(self.n_features)
        z[: self.k] = self.full_weights(point)
        method = point.method
        if method == "linear" and "task_arithmetic" in self.methods:
            method = "task_arithmetic"
        z[self.k + self.methods.index(method)] = 1.0
        base = self.k + len(self.methods)
        own = point.param_dict
        for i, name in enumerate(PARAMS):
            lo, hi = self.ranges[name]
            value = own.get(name, NEUTRAL_PARAMS[name])
            z[base + i] = float(np.clip((value - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else 0.5
        z[base + len(PARAMS) + point.instruction] = 1.0
        return z

    def to_config(self, point: Point) -> dict[str, Any]:
        """The flat Tune config of a point: ``method``, ``w_0..w_{k-1}`` (0: not a member),
        ``density``, ``lambda``, ``drop_rate`` (mid-range when unused) and ``instruction``."""
        config: dict[str, Any] = {"method": point.method}
        full = self.full_weights(point)
        for j in range(self.k):
            config[f"w_{j}"] = float(full[j])
        params = point.param_dict
        for p in PARAMS:
            config[p] = float(params.get(p, sum(self.ranges[p]) / 2))
        config["instruction"] = int(point.instruction)
        return config

    def from_config(self, config: Mapping[str, Any]) -> Point:
        """The point a flat config stands for, repaired into Ω.

        Any searcher's config maps here (this searcher's, Optuna's, a grid's): a candidate is a
        member when ``w_j > 0`` (and ``use_j`` is true, when given); too few members adds the
        best-ranked others, too many keeps the heaviest; slerp keeps the two heaviest; weights
        are normalised to the simplex; parameters are clipped to their ranges.

        Raises:
            SpaceError: an unknown method or instruction option.
        """
        method = str(config.get("method", "linear"))
        if method not in self.methods:
            raise SpaceError(f"method {method!r} is not in this search space; valid: "
                             f"{', '.join(self.methods)}")
        raw = np.array([max(0.0, float(config.get(f"w_{j}", 0.0) or 0.0))
                        for j in range(self.k)])
        for j in range(self.k):
            if not bool(config.get(f"use_{j}", True)):
                raw[j] = 0.0
        if not np.all(np.isfinite(raw)):
            raise SpaceError(f"weights must be finite, got {raw.tolist()}")
        order = sorted(range(self.k), key=lambda j: (-raw[j], j))
        n = int(np.sum(raw > 0))
        want = 2 if method == "slerp" else min(max(n, self.min_models), self.max_models)
        members = sorted(order[:want])
        w = raw[members]
        w = np.where(w > 0, w, 1e-3)
        params = {}
        for p in METHOD_PARAMS[method]:
            lo, hi = self.ranges[p]
            value = config.get(p)
            value = sum(self.ranges[p]) / 2 if value is None else float(value)
            params[p] = float(np.clip(value, lo, hi))
        instruction = int(config.get("instruction", 0) or 0)
        if not 0 <= instruction < self.n_instructions:
            raise SpaceError(f"instruction {instruction} is not an option; valid: 0.."
                             f"{self.n_instructions - 1}")
        return Point(tuple(members), tuple((w / w.sum()).tolist()), method,
                     tuple(sorted(params.items())), instruction)


def _simplex(w: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """``w`` with every entry at least ``floor``, renormalised: a Dirichlet draw with small
    concentrations can underflow to exact zeros, and a member with weight 0 would drop out of
    the point in its flat config (`SearchSpace.from_config`)."""
    w = np.maximum(np.asarray(w, dtype=np.float64), floor)
    return w / w.sum()


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (None, NaN, inf, strings: no)."""
    if isinstance(value, bool) or value is None:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
