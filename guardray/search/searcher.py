"""A thin ``ray.tune.search.Searcher`` over the pure search policies.

`MergeSearcher` turns a policy (`thompson`, `egreedy`, `random`) into a Tune searcher:

- ``suggest(trial_id)``: the policy's next point as a flat config (`SearchSpace.to_config`);
  ``Searcher.FINISHED`` once ``budget`` trials were handed out; points of trials that were
  running when a search was interrupted are handed out again first (after a JSON resume).
- ``on_trial_complete(trial_id, result, error)``: the trial's objective to the policy; an
  errored trial, a missing result or a None / NaN / inf objective counts as a failed
  evaluation (the policy sees ``None``), and still uses up budget.
- ``save`` / ``restore``: the whole state as JSON (space, policy with its random generator,
  trials in flight, history): no pickle, so a state file cannot run code. Tune calls them when
  it checkpoints the experiment and in ``Tuner.restore``.
- ``state_path``: if set, the same JSON is also written (atomically) after every suggestion
  and completion: the ledger a JSON resume starts from (`guardray.search.run`).

Also here: `tune_param_space`, the same flat config as a Tune search space, so Ray's own
searchers (``OptunaSearch``, ``BasicVariantGenerator``) drive the same trainable.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ray.tune.search import Searcher

from guardray.search.policy_registry import make_policy, policy_from_state
from guardray.search.space import PARAMS, Point, SearchSpace, is_number

log = logging.getLogger(__name__)

STATE_VERSION = 1


class MergeSearcher(Searcher):
    """Tune searcher of the merge search.

    Args:
        space: the search space Ω.
        policy: ``thompson``, ``egreedy`` or ``random``.
        budget: number of trials to hand out in all (errored ones included).
        metric / mode: the objective Tune reports and whether it is maximised.
        seed: the policy's seed.
        policy_options: keyword options of the policy (e.g. ``epsilon``).
        state_path: local path or URI where the JSON state is written after every change.
        storage_options: S3 settings for ``state_path``.
    """

    CKPT_FILE_TMPL = "merge-searcher-state-{}.json"

    def __init__(self, space: SearchSpace, policy: str = "thompson", budget: int = 16,
                 metric: str | None = "objective", mode: str | None = "max", seed: int = 0,
                 policy_options: dict[str, Any] | None = None, state_path: str | None = None,
                 storage_options: dict[str, Any] | None = None):
        super().__init__(metric=metric, mode=mode)
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        self.space = space
        self.policy = make_policy(policy, space, seed=seed, **(policy_options or {}))
        self.budget = int(budget)
        self.live: dict[str, Point] = {}
        self.retry: list[Point] = []
        self.history: list[dict[str, Any]] = []
        self.state_path = state_path
        self.storage_options = storage_options

    # ----------------------------------------------------------------------- Tune API

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec) -> bool:
        """Take Tune's metric and mode when none were given here (the space is our own)."""
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode
        return True

    @property
    def used(self) -> int:
        """Trials handed out that count against the budget (finished or running)."""
        return len(self.history) + len(self.live)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.used >= self.budget:
            return Searcher.FINISHED
        point = self.retry.pop(0) if self.retry else self.policy.suggest()
        self.live[trial_id] = point
        log.info("merge search: trial %d/%d (%s) -> %s", self.used, self.budget, trial_id,
                 describe(point))
        self._write()
        return self.space.to_config(point)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        point = self.live.pop(trial_id, None)
        if point is None:
            log.warning("merge search: completion of unknown trial %s ignored", trial_id)
            return
        value = None
        if not error and result is not None:
            value = result.get(self._metric) if self._metric else None
        if not is_number(value):
            log.warning("merge search: trial %s gave no usable %s (%s); counted as failed",
                        trial_id, self._metric, "error" if error else repr(value))
            value = None
        else:
            value = float(value)
        sign = -1.0 if self._mode == "min" else 1.0
        self.policy.observe(point, None if value is None else sign * value)
        extra = {k: v for k, v in (result or {}).items()
                 if isinstance(k, str) and k.startswith(("objective", "val/"))
                 and is_number(v)}
        self.history.append({"trial_id": trial_id, "point": point.to_dict(), "value": value,
                             "error": bool(error), "metrics": extra})
        self._write()

    # ----------------------------------------------------------------------- state

    def get_state(self) -> dict[str, Any]:
        """Everything as JSON-able values."""
        return {"version": STATE_VERSION, "space": self.space.describe(),
                "policy": self.policy.state(), "budget": self.budget,
                "metric": self._metric, "mode": self._mode,
                "live": {t: p.to_dict() for t, p in self.live.items()},
                "retry": [p.to_dict() for p in self.retry], "history": self.history}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"merge searcher state version {state.get('version')!r}; this "
                             f"guardray reads version {STATE_VERSION}")
        self.space = SearchSpace.from_description(state["space"])
        self.policy = policy_from_state(self.space, state["policy"])
        self.budget = int(state["budget"])
        self._metric, self._mode = state["metric"], state["mode"]
        self.live = {t: Point.from_dict(p) for t, p in state["live"].items()}
        self.retry = [Point.from_dict(p) for p in state["retry"]]
        self.history = list(state["history"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w", encoding="utf-8") as fh:
            json.dump(self.get_state(), fh, allow_nan=False)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as fh:
            self.set_state(json.load(fh))

    def requeue_live(self) -> int:
        """Hand out again the points of trials that were running when the search stopped
        (a JSON resume starts new trials for them). Returns how many."""
        n = len(self.live)
        self.retry = list(self.live.values()) + self.retry
        self.live = {}
        return n

    def _write(self) -> None:
        if not self.state_path:
            return
        from guardray.io import uris

        uris.write_json_atomic(self.state_path, self.get_state(), self.storage_options)


def describe(point: Point) -> str:
    """One line: method, parameters, members with weights, instruction."""
    params = ", ".join(f"{k}={v:.2f}" for k, v in point.params)
    weights = " ".join(f"#{m}:{w:.2f}" for m, w in zip(point.members, point.weights))
    text = f"{point.method}({params}) [{weights}]"
    return text + (f" instruction {point.instruction}" if point.instruction else "")


def tune_param_space(space: SearchSpace) -> dict[str, Any]:
    """The flat config of `SearchSpace.to_config` as a Tune search space, for Ray's searchers.

    ``w_j ~ U(0, 1)`` and ``use_j`` in {True, False} (a candidate takes part when both hold;
    `SearchSpace.from_config` repairs too few or too many), ``method`` and ``instruction``
    categorical, parameters uniform in their ranges.
    """
    from ray import tune

    config: dict[str, Any] = {"method": tune.choice(list(space.methods))}
    for j in range(space.k):
        config[f"w_{j}"] = tune.uniform(0.0, 1.0)
        config[f"use_{j}"] = tune.choice([True, False])
    for p in PARAMS:
        lo, hi = space.ranges[p]
        config[p] = tune.uniform(lo, hi) if hi > lo else lo
    config["instruction"] = (tune.choice(list(range(space.n_instructions)))
                             if space.n_instructions > 1 else 0)
    return config

