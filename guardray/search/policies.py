"""Search policies over Ω (UniGuard appendix A.5.2): random (eq. 8) and epsilon-greedy (eq. 9);
Thompson sampling lives in `guardray.search.thompson`. Pure, seeded numpy.

Every policy has the same small interface, which the Ray Tune adapter
(`guardray.search.searcher.MergeSearcher`) drives and the tests drive directly:

- ``suggest() -> Point``: the next point to evaluate (it stays *pending* until observed);
- ``observe(point, value)``: the objective of a point (higher is better), or ``None`` for a
  failed evaluation (an error, NaN);
- ``state() -> dict`` / ``load_state(dict)``: everything, as JSON-able values (the random
  generator's state included), so a restored policy continues exactly where it stopped.

The first suggestion of every policy is the T = 1 seed point (weights proportional to the
top-k F1, A.5) unless ``seed_point=False``, so all policies start from the same point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from guardray.search.space import Point, SearchSpace, is_number


class SearchPolicy:
    """Base class: bookkeeping of observations, pending points and state.

    Args:
        space: the search space Ω.
        seed: seed of the policy's random generator.
        seed_point: start with the T = 1 seed point.

    Attributes:
        observations: ``[(point, value or None)]`` in the order observed.
        pending: points suggested and not yet observed.
    """

    name = "base"

    def __init__(self, space: SearchSpace, seed: int = 0, seed_point: bool = True):
        self.space = space
        self.seed = int(seed)
        self.seed_point = seed_point
        self.rng = np.random.default_rng(self.seed)
        self.observations: list[tuple[Point, float | None]] = []
        self.pending: list[Point] = []
        self.issued = 0

    # ----------------------------------------------------------------------- interface

    def suggest(self) -> Point:
        """The next point to evaluate (recorded as pending)."""
        if self.issued == 0 and self.seed_point:
            point = self.space.seed_point()
        else:
            point = self._propose()
        self.issued += 1
        self.pending.append(point)
        return point

    def observe(self, point: Point, value: float | None) -> None:
        """Record the objective of ``point`` (None, NaN or inf: a failed evaluation)."""
        key = point.key()
        for i, p in enumerate(self.pending):
            if p.key() == key:
                del self.pending[i]
                break
        self.observations.append((point, float(value) if is_number(value) else None))

    @property
    def best(self) -> tuple[Point | None, float]:
        """The best observed point and its value (``(None, -inf)`` before any success)."""
        ok = [(p, v) for p, v in self.observations if v is not None]
        if not ok:
            return None, -math.inf
        return max(ok, key=lambda pv: pv[1])

    def values(self) -> list[float | None]:
        return [v for _, v in self.observations]

    def _propose(self) -> Point:  # pragma: no cover - abstract
        raise NotImplementedError

    def _seen(self) -> set:
        return {p.key() for p, _ in self.observations} | {p.key() for p in self.pending}

    # ----------------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        """JSON-able state (`load_state` restores it exactly)."""
        return {"policy": self.name, "seed": self.seed, "seed_point": self.seed_point,
                "rng": self.rng.bit_generator.state, "issued": self.issued,
                "observations": [[p.to_dict(), v] for p, v in self.observations],
                "pending": [p.to_dict() for p in self.pending], **self._options()}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("policy") != self.name:
            raise ValueError(f"state of policy {state.get('policy')!r} given to {self.name!r}")
        self.seed = int(state["seed"])
        self.seed_point = bool(state["seed_point"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.issued = int(state["issued"])
        self.observations = [(Point.from_dict(p), None if v is None else float(v))
                             for p, v in state["observations"]]
        self.pending = [Point.from_dict(p) for p in state["pending"]]

    def _options(self) -> dict[str, Any]:
        return {}


class RandomPolicy(SearchPolicy):
    """Random search (eq. 8): ``(w_t, tau_t) ~ Uniform(Omega)``, w from a Dirichlet.

    Each draw is independent of the observations (`SearchSpace.sample`).
    """

    name = "random"

    def _propose(self) -> Point:
        return self.space.sample(self.rng)


class EpsilonGreedyPolicy(SearchPolicy):
    """Epsilon-greedy (eq. 9).

    ``(w_t, tau_t) = argmax_{(w, tau) in Omega_t} f(w, tau)`` with probability ``1 - epsilon``,
    a uniform draw from Ω (eq. 8) with probability ``epsilon``; ``Omega_t`` is the set of points
    explored so far.

    Eq. 9 taken literally proposes the best explored point again; the merge and the
    validation score are deterministic, so that would re-measure a known value. The exploit
    step therefore takes a small local move from the argmax (`SearchSpace.perturb` with
    ``exploit_scale``), which is how epsilon-greedy is used on continuous spaces. Before any
    successful observation it explores.

    Args:
        epsilon: exploration probability in [0, 1].
        exploit_scale: size of the local move around the best point.
    """

    name = "egreedy"

    def __init__(self, space: SearchSpace, seed: int = 0, seed_point: bool = True,
                 epsilon: float = 0.3, exploit_scale: float = 0.1):
        super().__init__(space, seed, seed_point)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)
        self.exploit_scale = float(exploit_scale)

    def _propose(self) -> Point:
        best, _ = self.best
        if best is None or self.rng.random() < self.epsilon:
            return self.space.sample(self.rng)
        seen = self._seen()
        for _ in range(20):  # a local move that is not an exact repeat
            point = self.space.perturb(best, self.rng, self.exploit_scale)
            if point.key() not in seen:
                return point
        return point

    def _options(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "exploit_scale": self.exploit_scale}
