"""Real Ray Tune runs of the merge search over tiny TaskGuards: 2 concurrent trials, an
interruption (Tune's own stop signal) and a resume that repeats no finished trial and loads
no pickle; Tuner.restore and Ray's own searchers (slow)."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import signal
from pathlib import Path

import pytest
from ray.tune import Callback
from search_testlib import search_config

from guardray.errors import RunError
from guardray.search import Point, SearchSpace, run_search


class InterruptAfter(Callback):
    """Stops the run the way Ctrl+C does (Tune's SIGUSR1 handler: stop, save state) once ``n``
    trials finished. Only once per flag file: ``Tuner.restore`` brings callbacks back."""

    def __init__(self, n: int, flag: Path):
        self.n, self.flag, self.done = n, str(flag), 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        if self.done >= self.n and not os.path.exists(self.flag):
            Path(self.flag).touch()
            signal.raise_signal(signal.SIGUSR1)


class Payload:
    """A pickle that creates a file when unpickled (what an attacker would plant)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _state(out: Path) -> dict:
    return json.loads((out / "search_state.json").read_text())


def test_search_runs_trials_on_tune_two_at_a_time(ray_session, ipool, tmp_path):
    from jobs.search import main

    out = tmp_path / "out"
    main(search_config(ipool, out, "search.budget=4"))  # the job: prepare, then Ray, then Tune
    summary = json.loads((out / "summary.json").read_text())
    state = _state(out)
    history = state["history"]
    assert len(history) == 4 and len({h["trial_id"] for h in history}) == 4
    seed_point = SearchSpace.from_description(state["space"]).seed_point()  # T = 1, first
    assert seed_point.key() in {Point.from_dict(h["point"]).key() for h in history}
    # Tune's output: every trial reports the objective per policy, weights, method, instruction
    spans = []
    for result in (out / "tune").rglob("result.json"):
        rec = json.loads(result.read_text().strip().splitlines()[-1])
        assert {"objective", "objective_worst", "val/tax/macro_f1", "val/finance/macro_f1",
                "w/multi/seed0", "method", "instruction"} <= set(rec)
        spans.append((rec["timestamp"] - rec["time_total_s"], rec["timestamp"], rec["pid"]))
    assert len(spans) == 4 and len({pid for *_, pid in spans}) >= 2
    spans.sort()
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))  # two trials at once
    assert list((out / "tune").rglob("events.out.tfevents*"))  # TensorBoard
    best = max(h["value"] for h in history if h["value"] is not None)
    assert summary["trials"] == 4 and summary["objective"] == best
    assert summary["objective_mean"] == pytest.approx(best)  # re-merged in the driver: same
    card = json.loads((out / "uniguard" / "guardray_model.json").read_text())
    assert card["method"] == "uniguard" and 0 <= card["threshold"]["threshold"] <= 1
    assert "| tax |" in (out / "report.md").read_text()
    # a finished search reruns as an export only
    again = run_search(search_config(ipool, out, "search.budget=4"))
    assert again["trials"] == 4
    assert len(json.loads((out / "search_plan.json").read_text())["experiments"]) == 1


@pytest.mark.slow
def test_search_resumes_after_an_interruption_without_repeats(ray_session, ipool, tmp_path):
    out = tmp_path / "out"
    cfg = search_config(ipool, out, "search.budget=5")
    with pytest.raises(RunError, match="stopped after [234] of 5 trial.*run the same command"):
        run_search(cfg, callbacks=[InterruptAfter(2, tmp_path / "flag")])
    first = _state(out)["history"]
    assert 2 <= len(first) < 5
    # Tune's pickles could carry code: the JSON resume must never load them.
    planted = tmp_path / "payload-ran"
    pickles = list((out / "tune").rglob("*.pkl"))
    assert pickles
    for f in pickles:
        f.write_bytes(pickle.dumps(Payload(planted)))
    summary = run_search(cfg)
    assert not planted.exists()
    history = _state(out)["history"]
    assert len(history) == 5 and history[:len(first)] == first
    assert len({h["trial_id"] for h in history}) == 5
    done_keys = [json.dumps(h["point"], sort_keys=True) for h in first]
    later = [json.dumps(h["point"], sort_keys=True) for h in history[len(first):]]
    assert not set(done_keys) & set(later)  # no finished trial ran again
    assert len(json.loads((out / "search_plan.json").read_text())["experiments"]) == 2
    assert summary["trials"] == 5


@pytest.mark.slow
def test_tuner_restore_continues_the_experiment(ray_session, ipool, tmp_path):
    out = tmp_path / "out"
    cfg = search_config(ipool, out, "search.budget=5", "resume=tune")
    with pytest.raises(RunError, match="stopped after [234] of 5 trial.*run the same command"):
        run_search(cfg, callbacks=[InterruptAfter(2, tmp_path / "flag")])
    first = _state(out)["history"]
    assert 2 <= len(first) < 5
    summary = run_search(cfg)
    history = _state(out)["history"]
    assert len(history) == 5 and history[:len(first)] == first
    assert len({h["trial_id"] for h in history}) == 5
    plan = json.loads((out / "search_plan.json").read_text())
    assert len(plan["experiments"]) == 1  # the same experiment, restored
    assert summary["trials"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("searcher", ["basic", "optuna", "egreedy", "random"])
def test_other_searchers_drive_the_same_trainable(ray_session, ipool, tmp_path, searcher):
    if searcher == "optuna":
        pytest.importorskip("optuna")
    cfg = search_config(ipool, tmp_path / "out", f"search.searcher={searcher}",
                        "search.budget=3")
    summary = run_search(cfg)
    assert summary["trials"] == 3 and summary["searcher"] == searcher
    assert (tmp_path / "out" / "uniguard" / "guardray_model.json").is_file()
