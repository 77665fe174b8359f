"""The Tune searcher adapter driven directly (no Tune run): NaN / None / errored results,
the budget, and JSON save / restore."""

from __future__ import annotations

import json
import math

import pytest
from ray.tune.search import Searcher

from guardray.search.searcher import MergeSearcher, tune_param_space
from guardray.search.space import SearchSpace

SPACE = SearchSpace([0.9, 0.8, 0.7], methods=["linear", "ties", "slerp"], n_instructions=2)


def _searcher(**kw) -> MergeSearcher:
    args = {"space": SPACE, "policy": "thompson", "budget": 6, "seed": 0,
            "policy_options": {"n_initial": 2, "n_features": 32}}
    return MergeSearcher(**{**args, **kw})


def test_results_none_nan_and_errors_are_failures_that_use_budget(tmp_path):
    s = _searcher(state_path=str(tmp_path / "state.json"))
    assert s.set_search_properties("other", "min", {}) is True and s.metric == "objective"
    configs = [s.suggest(f"t{i}") for i in range(3)]
    assert configs[0]["method"] == "linear" and SPACE.from_config(configs[0]).key() == SPACE.seed_point().key()
    assert set(configs[1]) >= {"method", "w_0", "w_1", "w_2", "density", "lambda", "instruction"}
    s.on_trial_complete("t0", {"objective": 0.8})
    s.on_trial_complete("t1", {"objective": math.nan})
    s.on_trial_complete("t2", None, error=True)
    s.on_trial_complete("nope", {"objective": 1.0})  # unknown trial: ignored
    for i in (3, 4):
        s.suggest(f"t{i}")
    s.on_trial_complete("t3", {"objective": None})
    s.on_trial_complete("t4", {"something_else": 1.0})
    assert [h["value"] for h in s.history] == [0.8, None, None, None, None]
    assert [v for v in s.policy.values()] == [0.8, None, None, None, None]
    assert s.history[2]["error"] is True
    assert isinstance(s.suggest("t5"), dict)  # the 6th and last trial of the budget
    assert s.suggest("t6") == Searcher.FINISHED
    saved = json.loads((tmp_path / "state.json").read_text())
    assert list(saved["live"]) == ["t5"] and len(saved["history"]) == 5


def test_mode_min_and_state_round_trip(tmp_path):
    s = _searcher(mode="min", budget=8)
    for i in range(4):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", {"objective": 0.1 * i})
    assert s.policy.best[1] == pytest.approx(0.0)  # minimised: observed as -value
    s.suggest("t4")
    path = tmp_path / "ckpt.json"
    s.save(str(path))
    text = path.read_text()
    assert text.startswith("{")  # JSON, never pickle
    r = _searcher(budget=1)
    r.restore(str(path))
    assert r.budget == 8 and r.mode == "min" and list(r.live) == ["t4"]
    assert r.live["t4"] == s.live["t4"]
    assert r.suggest("t5") == s.suggest("t5")  # continues exactly
    assert r.requeue_live() == 2 and r.used == 4
    again = r.suggest("t9")
    assert again == SPACE.to_config(s.live["t4"])  # running trials are handed out first
    with pytest.raises(ValueError, match="budget must be >= 1"):
        _searcher(budget=0)


def test_ray_param_space_maps_into_omega():
    space = tune_param_space(SPACE)
    assert {"method", "w_0", "use_0", "lambda", "density", "drop_rate", "instruction"} <= set(space)
    sample = {k: (v.sample() if hasattr(v, "sample") else v) for k, v in space.items()}
    point = SPACE.from_config(sample)
    assert 2 <= len(point.members) <= 3 and abs(sum(point.weights) - 1) < 1e-9
